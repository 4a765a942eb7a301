"""Load, save and fabricate HyenaDNA checkpoints in the released Hugging Face layout, running none of their code.

A folder holds ``config.json`` and ``model.safetensors`` (preferred) or ``pytorch_model.bin``,
the latter read with ``torch.load(weights_only=True)``, which refuses pickles that would run code.
The Hub's ``modeling_hyena.py`` is never imported.

Nobody here has seen the released weight file, so matching is strict: the file must hold every
tensor of the model (each tied group at least once: the shared sine frequency
``implicit_filter.{1,3,5}.freq``) and nothing else, with the model's shapes. Otherwise
:class:`~caduceus_vep.model.checkpoint_io.CheckpointError` lists the missing, unexpected and mismatched
keys, and the counts of expected and found keys.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ..checkpoint_io import (
    BIN_NAME,
    CONFIG_NAME,
    SAFETENSORS_NAME,
    check_save_options,
    checkpoint_provenance,
    match_released_layout,
    read_checkpoint_config,
    read_weights,
    tensors_to_store,
    tie_groups,
    weights_file,
    write_checkpoint,
)
from .config import HyenaDNAConfig
from .filter import HyenaExponentialModulation, HyenaPositionalEmbedding, HyenaSin
from .model import HyenaDNA

# The file names and the shared readers stay importable from here, as before the shared module.
__all__ = [
    "BIN_NAME", "CAUSAL_LM_PREFIX", "CONFIG_NAME", "SAFETENSORS_NAME", "build_hyenadna", "load_hyenadna",
    "match_state_dict", "read_weights", "save_hyenadna", "tie_groups", "tiny_config", "write_tiny_checkpoint",
]

#: Prefix of the base model inside ``HyenaDNAForCausalLM`` (the released class).
CAUSAL_LM_PREFIX = "hyena."


def match_state_dict(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """Full state dict for ``model`` from a file that may store each tied tensor under one name.

    Raises CheckpointError listing every disagreement (missing groups, unexpected names, shapes).
    """
    full, _ = match_released_layout(model, state, source, "HyenaDNA")
    return full


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
    config = read_checkpoint_config(folder, HyenaDNAConfig.from_dict)  # errors name the file
    weights = weights_file(folder)
    state = read_weights(weights)
    if not any(k.startswith(CAUSAL_LM_PREFIX) for k in state) and any(k.startswith("backbone.") for k in state):
        # Saved from the bare HyenaDNAModel: same names without the causal-LM wrapper's prefix.
        state = {(CAUSAL_LM_PREFIX + k if k.startswith("backbone.") else k): v for k, v in state.items()}
    has_lm_head = "lm_head.weight" in state or (config.tie_word_embeddings and "HyenaDNAForCausalLM" in config.extra.get("architectures", []))
    model = HyenaDNA(config, lm_head=has_lm_head)
    model.load_state_dict(match_state_dict(model, state, source=str(weights)), strict=True)
    model.provenance = checkpoint_provenance(folder, folder, weights, config.to_dict(), keys_in_file=len(state))
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
    check_save_options(weights_format, tied)
    tensors = tensors_to_store(model, tied)
    config_dict = model.config.to_dict()
    config_dict["architectures"] = ["HyenaDNAForCausalLM"] if model.has_lm_head else ["HyenaDNAModel"]
    config_dict.setdefault("tie_word_embeddings", model.config.tie_word_embeddings)
    config_dict["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    return write_checkpoint(Path(folder), config_dict, tensors, weights_format)


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
