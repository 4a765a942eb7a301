"""Load and save Caduceus checkpoints in the Hugging Face layout, without running any of their code.

A checkpoint folder holds ``config.json`` and ``model.safetensors`` (preferred) or
``pytorch_model.bin``. The remote-code ``.py`` files of the Hub repositories are never imported, and
``.bin`` files are read with ``torch.load(weights_only=True)``, which refuses pickles that would
execute code.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..atomic import atomic_path
from ..provenance import sha256_file
from .caduceus import Caduceus
from .config import CaduceusConfig

MASKED_LM_PREFIX = "caduceus."
SAFETENSORS_NAME = "model.safetensors"
BIN_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
HUB_ALLOW_PATTERNS = [
    CONFIG_NAME, "*.safetensors", "*.bin",
    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "vocab.txt",
]


class CheckpointError(ValueError):
    """A checkpoint that does not match the model (missing/unexpected keys, shapes, unsafe file)."""


def _tie_groups(model: Caduceus) -> list[list[str]]:
    """State-dict names grouped by the tensor they share, in state-dict order."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def _read_weights(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refusing to load {path}: it is not a plain tensor pickle ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return state


def _strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``caduceus.`` prefix of MaskedLM checkpoints (the LM head keys have none)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = key[len(MASKED_LM_PREFIX):] if key.startswith(MASKED_LM_PREFIX) else key
        if name in out:
            raise CheckpointError(f"checkpoint holds {name!r} both with and without the {MASKED_LM_PREFIX!r} prefix")
        out[name] = value
    return out


def _match_state_dict(model: Caduceus, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Full state dict for ``model`` from a file that may store each tied tensor under one name."""
    expected = model.state_dict()
    missing, mismatched, full = [], [], {}
    for group in _tie_groups(model):
        present = [name for name in group if name in state]
        if not present:
            missing.append(" / ".join(group))
            continue
        value = state[present[0]]
        for other in present[1:]:
            if not torch.equal(state[other], value):
                raise CheckpointError(f"tied tensors {present} differ in the checkpoint")
        if tuple(value.shape) != tuple(expected[group[0]].shape):
            mismatched.append(f"{present[0]}: file {tuple(value.shape)} vs model {tuple(expected[group[0]].shape)}")
        for name in group:
            full[name] = value
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if problems:
        raise CheckpointError("checkpoint does not match the model config; " + "; ".join(problems))
    return full


def _resolve_folder(name_or_path: str | os.PathLike[str], revision: str | None) -> tuple[Path, str | None]:
    """Local folder as is, anything shaped like ``owner/name`` from the Hub (cache, HF_HUB_OFFLINE)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} only applies to Hub repo ids, not the folder {path}")
        return path.resolve(), None
    text = str(name_or_path)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"{text!r} is neither a checkpoint folder nor a Hub repo id of the form owner/name")
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id=text, revision=revision, allow_patterns=HUB_ALLOW_PATTERNS))
    # Snapshot folders are named by commit hash: record the exact commit, not a moving branch name.
    return folder, folder.name


def load_caduceus(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Caduceus:
    """Load a released-layout checkpoint (local folder or Hub repo id) into an eval-mode model."""
    folder, resolved_revision = _resolve_folder(name_or_path, revision)
    config_dict = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    config = CaduceusConfig.from_dict(config_dict)
    weights = next((folder / n for n in (SAFETENSORS_NAME, BIN_NAME) if (folder / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {BIN_NAME} in {folder}")
    state = _strip_prefix(_read_weights(weights))
    has_lm_head = any(k.startswith("lm_head.") for k in state) or "CaduceusForMaskedLM" in (config.architectures or [])
    model = Caduceus(config, lm_head=has_lm_head)
    model.load_state_dict(_match_state_dict(model, state), strict=True)
    for name, buf in model.named_buffers():
        if name.endswith("complement_map") and buf.tolist() != config.complement_list:
            raise CheckpointError(f"{name} in the weights disagrees with complement_map in {CONFIG_NAME}")
    model.provenance = {
        "name_or_path": str(name_or_path),
        "revision": resolved_revision,
        "resolved_path": str(folder),
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "config": config.to_dict(),
    }
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
    if weights_format not in ("safetensors", "bin"):
        raise ValueError(f"weights_format must be 'safetensors' or 'bin', got {weights_format!r}")
    if tied not in ("once", "both"):
        raise ValueError(f"tied must be 'once' or 'both', got {tied!r}")
    if masked_lm and not model.has_lm_head:
        raise ValueError("masked_lm=True needs a model with an LM head")
    folder = Path(folder)
    state = model.state_dict()
    tensors: dict[str, Tensor] = {}
    for group in _tie_groups(model):
        names = [n for n in group if masked_lm or not n.startswith("lm_head.")]
        for name in names if tied == "both" else names[:1]:
            key = MASKED_LM_PREFIX + name if masked_lm and not name.startswith("lm_head.") else name
            # Own contiguous CPU storage per name: safetensors refuses shared storage.
            tensors[key] = state[name].detach().to("cpu").contiguous().clone()

    config_dict = model.config.to_dict()
    config_dict["architectures"] = ["CaduceusForMaskedLM"] if masked_lm else ["Caduceus"]
    config_dict["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    name, stale = (SAFETENSORS_NAME, BIN_NAME) if weights_format == "safetensors" else (BIN_NAME, SAFETENSORS_NAME)
    dest = folder / name
    with atomic_path(dest) as tmp:
        if weights_format == "safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata={"format": "pt"})
        else:
            torch.save(tensors, tmp)
    (folder / stale).unlink(missing_ok=True)
    return dest
