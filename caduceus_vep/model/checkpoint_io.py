"""Reading, checking and writing checkpoint folders in the Hugging Face layout, for every model here.

Shared by the Caduceus (``loading``), HyenaDNA and NT-v2 loaders: ``.safetensors`` files are read
with safetensors and ``.bin`` files with ``torch.load(weights_only=True)``, which refuses pickles
that would run code; no checkpoint's own ``.py`` is ever imported. The model-specific parts (key
prefixes, keys a port may carry, provenance) stay with each model.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..atomic import atomic_path
from ..provenance import sha256_file

SAFETENSORS_NAME = "model.safetensors"
BIN_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that does not match the model (missing/unexpected keys, shapes, unsafe file)."""


def read_config_json(folder: str | os.PathLike[str]) -> dict:
    """``<folder>/config.json`` as a dict; every failure names the file (and a syntax error's place)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {Path(folder)}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is not UTF-8 text (byte {exc.start}): it is not a config.json") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} holds a JSON {type(raw).__name__}, not an object of config keys")
    return raw


def read_checkpoint_config(folder: str | os.PathLike[str], parse: Callable[[dict], Any]) -> Any:
    """``parse(<folder>/config.json)`` (a family's ``from_dict``); a refused value names the file too."""
    raw = read_config_json(folder)
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{Path(folder) / CONFIG_NAME}: {exc}") from None


def checkpoint_provenance(name_or_path: str | os.PathLike[str], folder: Path, weights: Path | list[Path], config: dict,
                          **extra: Any) -> dict[str, Any]:
    """What a loaded model records of its checkpoint (``model.provenance``): what was asked for, the
    folder it resolved to, the weights file name(s) and SHA-256(s), the config, and ``extra`` (the
    family's own fields: revision, key counts, licence). A list of one file is recorded as that file."""
    files = [weights] if isinstance(weights, Path) else list(weights)
    names, digests = [p.name for p in files], [sha256_file(p) for p in files]
    single = len(files) == 1
    return {"name_or_path": str(name_or_path), "resolved_path": str(folder), "weights_file": names[0] if single else names,
            "weights_sha256": digests[0] if single else digests, "config": config, **extra}


def tie_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names grouped by the tensor they share, in state-dict order."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def read_weights(path: Path) -> dict[str, Tensor]:
    """A flat name -> tensor dict from a safetensors file or a plain-tensor ``.bin`` pickle."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, a header safetensors cannot parse
            raise CheckpointError(f"cannot read the weights file {path}: {type(exc).__name__}: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refusing to load {path}: it is not a plain tensor pickle ({exc})") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot read the weights file {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return state


def check_finite(state: dict[str, Tensor], path: Path) -> None:
    """Refuse NaN/inf weights: they load silently and turn every feature into NaN (or worse, a few)."""
    bad = []
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append(f"{name} ({count} of {tensor.numel()} values)")
    if bad:
        raise CheckpointError(f"{path} holds non-finite (NaN or inf) weights in {len(bad)} tensor(s): "
                              f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; the checkpoint is corrupt")


def weights_file(folder: Path) -> Path:
    """``model.safetensors`` if the folder has one, else ``pytorch_model.bin``."""
    for name in (SAFETENSORS_NAME, BIN_NAME):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {BIN_NAME} in {folder}")


def gather_tied(
    model: nn.Module, state: Mapping[str, Tensor], tied_differ: Callable[[list[str]], str],
    stand_ins: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """(full state dict, missing groups, shape mismatches) from a file that may store each tied tensor once.

    A group the file lacks takes ``stand_ins[first name]`` when given, else is missing. Tied names
    stored with different values raise CheckpointError with the message ``tied_differ(names)``.
    """
    expected = model.state_dict()
    missing, mismatched, full = [], [], {}
    for group in tie_groups(model):
        present = [name for name in group if name in state]
        if not present:
            if stand_ins is not None and group[0] in stand_ins:
                full[group[0]] = stand_ins[group[0]]
            else:
                missing.append(" / ".join(group))
            continue
        value = state[present[0]]
        if any(not torch.equal(state[other], value) for other in present[1:]):
            raise CheckpointError(tied_differ(present))
        if tuple(value.shape) != tuple(expected[group[0]].shape):
            mismatched.append(f"{present[0]}: file {tuple(value.shape)} vs model {tuple(expected[group[0]].shape)}")
        for name in group:
            full[name] = value
    return full, missing, mismatched


def raise_layout_problems(headline: str, missing: list[str], unexpected: list[str], mismatched: list[str]) -> None:
    """CheckpointError ``headline; missing keys: [...]; unexpected keys: [...]; shape mismatches: [...]`` if any."""
    problems = [f"{label}: {keys}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    if problems:
        raise CheckpointError(headline + "; " + "; ".join(problems))


def match_released_layout(
    model: nn.Module, state: dict[str, Tensor], source: str, layout: str,
    unused_shapes: Mapping[str, tuple[int, ...]] | None = None, stand_ins: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], list[str]]:
    """(full state dict, ignored keys): every tensor of ``model`` and nothing else, with the model's shapes.

    ``unused_shapes`` names keys a port may store that nothing reads: accepted (and returned as
    ignored) when their shape is the one given. Raises CheckpointError listing every disagreement.
    """
    unused = unused_shapes or {}
    full, missing, mismatched = gather_tied(model, state, lambda names: f"{source}: tied tensors {names} differ", stand_ins)
    expected = model.state_dict()
    ignored = sorted(k for k in state if k not in expected and k in unused)
    mismatched += [f"{k}: file {tuple(state[k].shape)} vs expected {unused[k]}" for k in ignored
                   if tuple(state[k].shape) != unused[k]]
    unexpected = sorted(set(state) - set(expected) - set(ignored))
    raise_layout_problems(f"{source} does not match the {layout} layout of its config ({len(tie_groups(model))} "
                          f"tensors expected, {len(state)} found)", missing, unexpected, mismatched)
    return full, ignored


def check_save_options(weights_format: str, tied: str) -> None:
    if weights_format not in ("safetensors", "bin"):
        raise ValueError(f"weights_format must be 'safetensors' or 'bin', got {weights_format!r}")
    if tied not in ("once", "both"):
        raise ValueError(f"tied must be 'once' or 'both', got {tied!r}")


def tensors_to_store(
    model: nn.Module, tied: Literal["once", "both"], keep: Callable[[str], bool] = lambda name: True,
    key: Callable[[str], str] = lambda name: name,
) -> dict[str, Tensor]:
    """``key(name) -> tensor`` for the kept names: each tied group's first one (``"once"``) or all (``"both"``)."""
    state = model.state_dict()
    tensors: dict[str, Tensor] = {}
    for group in tie_groups(model):
        names = [n for n in group if keep(n)]
        for name in names if tied == "both" else names[:1]:
            # Own contiguous CPU storage per name: safetensors refuses shared storage.
            tensors[key(name)] = state[name].detach().to("cpu").contiguous().clone()
    return tensors


def write_checkpoint(
    folder: Path, config_dict: dict[str, Any], tensors: dict[str, Tensor], weights_format: Literal["safetensors", "bin"],
) -> Path:
    """Write ``config.json`` and the weights file; remove a weights file of the other format (the
    loader would prefer it). Returns the weights path."""
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
