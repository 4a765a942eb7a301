"""Load, save and fabricate HyenaDNA checkpoints in the released Hugging Face layout, running none of their code.

A folder holds ``config.json`` and ``model.safetensors`` (preferred) or ``pytorch_model.bin``,
the latter read with ``torch.load(weights_only=True)``, which refuses pickles that would run code.
The Hub's ``modeling_hyena.py`` is never imported.

Nobody here has seen the released weight file, so matching is strict: the file must hold every
tensor of the model (each tied group at least once: the shared sine frequency
``implicit_filter.{1,3,5}.freq``) and nothing else, with the model's shapes. Otherwise
:class:`~caduceus_vep.model.loading.CheckpointError` lists the missing, unexpected and mismatched
keys, and the counts of expected and found keys.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ...atomic import atomic_path
from ...provenance import sha256_file
from ..loading import CheckpointError
from .config import HyenaDNAConfig
from .filter import HyenaExponentialModulation, HyenaPositionalEmbedding, HyenaSin
from .model import HyenaDNA

SAFETENSORS_NAME = "model.safetensors"
BIN_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
#: Prefix of the base model inside ``HyenaDNAForCausalLM`` (the released class).
CAUSAL_LM_PREFIX = "hyena."


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

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refusing to load {path}: it is not a plain tensor pickle ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return state


def match_state_dict(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """Full state dict for ``model`` from a file that may store each tied tensor under one name.

    Raises CheckpointError listing every disagreement (missing groups, unexpected names, shapes).
    """
    expected = model.state_dict()
    missing, mismatched, full = [], [], {}
    for group in tie_groups(model):
        present = [name for name in group if name in state]
        if not present:
            missing.append(" / ".join(group))
            continue
        value = state[present[0]]
        for other in present[1:]:
            if state[other].shape != value.shape or not torch.equal(state[other], value):
                raise CheckpointError(f"{source}: tied tensors {present} differ")
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
        n_expected = len(tie_groups(model))
        raise CheckpointError(
            f"{source} does not match the HyenaDNA layout of its config ({n_expected} tensors expected, "
            f"{len(state)} found); " + "; ".join(problems))
    return full


def _weights_file(folder: Path) -> Path:
    for name in (SAFETENSORS_NAME, BIN_NAME):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {BIN_NAME} in {folder}")


def load_hyenadna(
    folder: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> HyenaDNA:
    """Load a released-layout HyenaDNA folder into an eval-mode model (LM head if the file has one).

    Every stored tensor is used as is, including the positional buffers ``pos_emb.z``/``t`` and
    ``modulation.deltas``; the shared sine frequency is tied across its three positions.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder")
    config = HyenaDNAConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))
    weights = _weights_file(folder)
    state = read_weights(weights)
    if not any(k.startswith(CAUSAL_LM_PREFIX) for k in state) and any(k.startswith("backbone.") for k in state):
        # Saved from the bare HyenaDNAModel: same names without the causal-LM wrapper's prefix.
        state = {(CAUSAL_LM_PREFIX + k if k.startswith("backbone.") else k): v for k, v in state.items()}
    has_lm_head = "lm_head.weight" in state or (config.tie_word_embeddings and "HyenaDNAForCausalLM" in config.extra.get("architectures", []))
    model = HyenaDNA(config, lm_head=has_lm_head)
    model.load_state_dict(match_state_dict(model, state, source=str(weights)), strict=True)
    model.provenance = {
        "name_or_path": str(folder),
        "resolved_path": str(folder),
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "config": config.to_dict(),
        "keys_in_file": len(state),
    }
    return model.to(device=device, dtype=dtype).eval()


def save_hyenadna(
    model: HyenaDNA,
    folder: str | os.PathLike[str],
    *,
    weights_format: Literal["safetensors", "bin"] = "safetensors",
    tied: Literal["once", "both"] = "once",
) -> Path:
    """Write ``config.json`` and the weights under the released key names; returns the weights path.

    ``tied="once"`` stores each tied tensor under its first name only (as the released safetensors
    file does with the sine frequency); ``"both"`` stores a copy under every name.
    """
    if weights_format not in ("safetensors", "bin"):
        raise ValueError(f"weights_format must be 'safetensors' or 'bin', got {weights_format!r}")
    if tied not in ("once", "both"):
        raise ValueError(f"tied must be 'once' or 'both', got {tied!r}")
    folder = Path(folder)
    state = model.state_dict()
    tensors: dict[str, Tensor] = {}
    for group in tie_groups(model):
        for name in group if tied == "both" else group[:1]:
            tensors[name] = state[name].detach().to("cpu").contiguous().clone()
    config_dict = model.config.to_dict()
    config_dict["architectures"] = ["HyenaDNAForCausalLM"] if model.has_lm_head else ["HyenaDNAModel"]
    config_dict.setdefault("tie_word_embeddings", model.config.tie_word_embeddings)
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


@torch.no_grad()
def build_hyenadna(config: HyenaDNAConfig, seed: int = 0, lm_head: bool = True, random_buffers: bool = False) -> HyenaDNA:
    """A seeded random-weight model (tests, demo). Weights are O(1/sqrt(fan_in)) so every block matters.

    ``random_buffers=True`` also replaces ``z``, ``t`` and ``deltas`` by random values: a test that
    loads such a file proves the loader uses the stored tensors instead of recomputing them.
    """
    model = HyenaDNA(config, lm_head=lm_head)
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for module in model.modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if isinstance(module, nn.LayerNorm):
                base = 1.0 if name == "weight" else 0.0
                tensor.copy_(base + 0.1 * torch.randn(tensor.shape, generator=gen))
            elif isinstance(module, HyenaSin):
                tensor.copy_(config.activation_freq * (1 + 0.2 * torch.randn(tensor.shape, generator=gen)))
            elif isinstance(module, (HyenaPositionalEmbedding, HyenaExponentialModulation)):
                if random_buffers:
                    scale = -3.0 if name == "deltas" else 1.0
                    tensor.copy_(scale * torch.rand(tensor.shape, generator=gen))
            elif isinstance(module, nn.Embedding):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            else:
                fan_in = tensor.shape[1] * (tensor.shape[2] if tensor.dim() > 2 else 1) if tensor.dim() > 1 else tensor.shape[0]
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / math.sqrt(fan_in))
    return model.eval()


def tiny_config(max_seq_len: int = 4_098) -> HyenaDNAConfig:
    """A tiny configuration with the released medium-160k model's structure (emb_dim 5, order 2, 3 MLP layers)."""
    return HyenaDNAConfig(
        vocab_size=12, d_model=16, d_inner=32, n_layer=2, emb_dim=5, filter_order=8, short_filter_order=3,
        activation_freq=10.0, max_seq_len=max_seq_len, num_inner_mlps=2, pad_vocab_size_multiple=8,
        extra={"tie_word_embeddings": False},
    )


def write_tiny_checkpoint(folder: str | os.PathLike[str], seed: int = 0, max_seq_len: int = 4_098) -> Path:
    """Write a tiny random-weight HyenaDNA (NOT PRETRAINED) in the released layout; returns the weights path.

    config.json + model.safetensors (about 0.23 MB for the default ``max_seq_len``, which sizes the
    stored positional tensors and caps the context: 4,098 covers contexts up to 4,096 bp plus two).
    The sine frequency is stored once, as in the released file.
    """
    model = build_hyenadna(tiny_config(max_seq_len), seed=seed, lm_head=True)
    model.config.extra["_comment"] = "tiny random-weight HyenaDNA in the released layout: NOT PRETRAINED"
    return save_hyenadna(model, folder, tied="once")
