"""Load and save Caduceus checkpoints in the Hugging Face layout, without running any of their code.

A checkpoint folder holds ``config.json`` and ``model.safetensors`` (preferred) or
``pytorch_model.bin``. The remote-code ``.py`` files of the Hub repositories are never imported, and
``.bin`` files are read with ``torch.load(weights_only=True)``, which refuses pickles that would
execute code.

What is refused, naming the file (:class:`CheckpointError`): a ``config.json`` that cannot be read
or is not a JSON object (with the line and column of a syntax error), a config with unsupported or
out-of-bounds settings (``caduceus_vep.model.config``: checked before any tensor is built), weights
that cannot be read, and weights holding NaN or infinite values (naming the tensors).

Hub repositories: :func:`fetch_checkpoint` downloads (or validates) a checkpoint once, on a machine
with internet access, and returns a record whose ``local_path`` compute jobs load from, so jobs on
nodes without internet never talk to the Hub. A Hub id that is neither cached nor reachable
(``HF_HUB_OFFLINE=1``, no network) raises one :class:`ModelUnavailableError` saying how to
pre-download it, not a chain of tracebacks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..provenance import sha256_file
from .caduceus import Caduceus
from .checkpoint_io import (
    BIN_NAME,
    CONFIG_NAME,
    SAFETENSORS_NAME,
    CheckpointError,
    check_finite,
    check_save_options,
    checkpoint_provenance,
    gather_tied,
    raise_layout_problems,
    read_checkpoint_config,
    read_weights,
    tensors_to_store,
    weights_file,
    write_checkpoint,
)
from .config import CaduceusConfig

MASKED_LM_PREFIX = "caduceus."
HUB_ALLOW_PATTERNS = [
    CONFIG_NAME, "*.safetensors", "*.bin",
    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "vocab.txt",
]


# What fetch_checkpoint downloads: the files the loader reads, the safetensors file first.
FETCH_CANDIDATES = ([CONFIG_NAME, SAFETENSORS_NAME], [CONFIG_NAME, BIN_NAME])
_COMMIT = re.compile(r"[0-9a-f]{40}")


class ModelUnavailableError(RuntimeError):
    """A Hub model that is neither in the local cache nor downloadable here (offline, unreachable, not found)."""


def read_config(folder: str | os.PathLike[str]) -> CaduceusConfig:
    """The validated config of a checkpoint folder; every failure names ``<folder>/config.json``."""
    return read_checkpoint_config(folder, CaduceusConfig.from_dict)


def _strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``caduceus.`` prefix of MaskedLM checkpoints (the LM head keys have none)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix(MASKED_LM_PREFIX)
        if name in out:
            raise CheckpointError(f"checkpoint holds {name!r} both with and without the {MASKED_LM_PREFIX!r} prefix")
        out[name] = value
    return out


def _match_state_dict(model: Caduceus, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Full state dict for ``model`` from a file that may store each tied tensor under one name."""
    full, missing, mismatched = gather_tied(model, state, lambda names: f"tied tensors {names} differ in the checkpoint")
    unexpected = sorted(set(state) - set(model.state_dict()))
    raise_layout_problems("checkpoint does not match the model config", missing, unexpected, mismatched)
    return full


def _snapshot_commit(folder: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot folder (``.../snapshots/<commit>``), else None."""
    return folder.name if folder.parent.name == "snapshots" and _COMMIT.fullmatch(folder.name) else None


def _hub_id(name_or_path: str | os.PathLike[str]) -> str:
    """``name_or_path`` if it is shaped like a Hub repo id (``owner/name``) and is no local path."""
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"{text!r} is neither a checkpoint folder nor a Hub repo id of the form owner/name")
    return text


def _hub_snapshot(repo: str, revision: str | None, allow_patterns: list[str], cache_dir: str | None = None) -> Path:
    """``snapshot_download``, with every way of not getting the files turned into one ModelUnavailableError."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    kwargs: dict[str, Any] = {"cache_dir": cache_dir} if cache_dir is not None else {}
    not_here = tuple(getattr(errors, n) for n in ("LocalEntryNotFoundError", "IncompleteSnapshotError", "OfflineModeIsEnabled")
                     if hasattr(errors, n))
    not_found = tuple(getattr(errors, n) for n in ("RepositoryNotFoundError", "RevisionNotFoundError") if hasattr(errors, n))
    rev = revision or "main"
    try:
        return Path(huggingface_hub.snapshot_download(repo_id=repo, revision=revision, allow_patterns=allow_patterns, **kwargs))
    except not_found as exc:
        raise ModelUnavailableError(
            f"Hugging Face model {repo} (revision {rev}) was not found on the Hub ({type(exc).__name__}). "
            "Check models[].path and models[].revision; a private or gated repository needs HF_TOKEN.") from None
    except not_here as exc:
        offline = bool(getattr(constants, "HF_HUB_OFFLINE", False))
        cause = exc.__cause__ or exc
        short = (str(cause).strip().splitlines() or [""])[0][:200]
        why = ("HF_HUB_OFFLINE is set" if offline else f"the Hub cannot be reached ({type(cause).__name__}: {short})")
        if type(exc).__name__ == "IncompleteSnapshotError":
            why += "; the cached copy lacks some of the files"
        cache = cache_dir or constants.HF_HUB_CACHE
        raise ModelUnavailableError(
            f"Hugging Face model {repo} (revision {rev}) is not in the local cache ({cache}) and cannot be downloaded "
            f"here: {why}.\n"
            f"  Either, on a machine with internet access and the same HF_HOME/HF_HUB_CACHE, run\n"
            f"      huggingface-cli download {repo} --revision {rev}      (or: hf download {repo} --revision {rev})\n"
            f"  and then run here with HF_HUB_OFFLINE=1;\n"
            f"  or download the checkpoint folder (config.json and model.safetensors) anywhere and point "
            f"models[].path at that local folder.") from None


def _resolve_folder(name_or_path: str | os.PathLike[str], revision: str | None) -> tuple[Path, str | None]:
    """Local folder as is, anything shaped like ``owner/name`` from the Hub (cache, HF_HUB_OFFLINE)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} only applies to Hub repo ids, not the folder {path}")
        folder = path.resolve()
        # A snapshot folder of the Hugging Face cache (what fetch_checkpoint returns) still names its commit.
        return folder, _snapshot_commit(folder)
    folder = _hub_snapshot(_hub_id(name_or_path), revision, HUB_ALLOW_PATTERNS)
    # Snapshot folders are named by commit hash: record the exact commit, not a moving branch name.
    return folder, folder.name


def fetch_checkpoint(path_or_repo: str, revision: str | None = None, cache_dir: str | None = None,
                     check_config: Callable[[Path], object] | None = None) -> dict[str, Any]:
    """Download (Hub id) or validate (local folder) a checkpoint; a JSON-able record of what it is and where.

    For a Hub id only ``config.json`` and the weights are fetched (``model.safetensors``, else
    ``pytorch_model.bin``), into the Hugging Face cache (``cache_dir``, default ``HF_HUB_CACHE``).
    The config is parsed and bounded (``check_config``, default the Caduceus config; the workflow passes
    the model family's check) and the weights hashed, so a broken checkpoint fails here, on
    the submitting machine, not in a compute job. Returns ``{"source", "revision", "resolved_commit",
    "local_path", "weights_file", "weights_sha256"}``; load with ``load_caduceus(record["local_path"])``.
    Raises :class:`ModelUnavailableError` (not cached, not reachable, not found), :class:`CheckpointError`
    or ``FileNotFoundError``.
    """
    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} only applies to Hub repo ids, not the folder {path}")
        folder = path.resolve()
        commit = _snapshot_commit(folder)
    else:
        repo = _hub_id(path_or_repo)
        folder = None
        first_error: ModelUnavailableError | None = None
        for patterns in FETCH_CANDIDATES:
            try:
                candidate = _hub_snapshot(repo, revision, patterns, cache_dir)
            except ModelUnavailableError as exc:
                first_error = first_error or exc
                continue
            if (candidate / patterns[-1]).is_file():
                folder = candidate
                break
        if folder is None:
            if first_error is not None:
                raise first_error
            raise FileNotFoundError(f"Hugging Face model {repo} (revision {revision or 'main'}) has no "
                                    f"{SAFETENSORS_NAME} or {BIN_NAME}")
        commit = folder.name
    (check_config or read_config)(folder)
    weights = weights_file(folder)
    return {
        "source": str(path_or_repo), "revision": revision, "resolved_commit": commit, "local_path": str(folder),
        "weights_file": weights.name, "weights_sha256": sha256_file(weights),
    }


def load_caduceus(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Caduceus:
    """Load a released-layout checkpoint (local folder or Hub repo id) into an eval-mode model."""
    folder, resolved_revision = _resolve_folder(name_or_path, revision)
    config = read_config(folder)  # bounded before any tensor exists
    weights = weights_file(folder)
    raw_state = read_weights(weights)
    check_finite(raw_state, weights)  # before renaming: the message names the tensor as the file stores it
    state = _strip_prefix(raw_state)
    has_lm_head = any(k.startswith("lm_head.") for k in state) or "CaduceusForMaskedLM" in (config.architectures or [])
    model = Caduceus(config, lm_head=has_lm_head)
    model.load_state_dict(_match_state_dict(model, state), strict=True)
    for name, buf in model.named_buffers():
        if name.endswith("complement_map") and buf.tolist() != config.complement_list:
            raise CheckpointError(f"{name} in the weights disagrees with complement_map in {CONFIG_NAME}")
    model.provenance = checkpoint_provenance(name_or_path, folder, weights, config.to_dict(), revision=resolved_revision)
    return model.to(device=device, dtype=dtype).eval()


def save_caduceus(
    model: Caduceus,
    folder: str | os.PathLike[str],
    *,
    weights_format: Literal["safetensors", "bin"] = "safetensors",
    tied: Literal["once", "both"] = "once",
    masked_lm: bool = True,
) -> Path:
    """Write ``config.json`` and the weights under the released key names; returns the weights path.

    ``tied="once"`` stores every tied tensor under its first name only (as the released
    safetensors files do); ``"both"`` stores a copy under every name. A weights file of the other
    format in ``folder`` is removed, since the loader would prefer it.
    """
    check_save_options(weights_format, tied)
    if masked_lm and not model.has_lm_head:
        raise ValueError("masked_lm=True needs a model with an LM head")
    tensors = tensors_to_store(
        model, tied, keep=lambda name: masked_lm or not name.startswith("lm_head."),
        key=lambda name: MASKED_LM_PREFIX + name if masked_lm and not name.startswith("lm_head.") else name)
    config_dict = model.config.to_dict()
    config_dict["architectures"] = ["CaduceusForMaskedLM"] if masked_lm else ["Caduceus"]
    config_dict["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    return write_checkpoint(Path(folder), config_dict, tensors, weights_format)
