"""Load, save and fabricate NT-v2 checkpoints in the released (HF ``EsmForMaskedLM`` port) layout, running none of their code.

A folder holds ``config.json`` and ``model.safetensors`` (preferred) or ``pytorch_model.bin``, or
a sharded ``*.index.json`` of either; ``.bin`` files are read with ``torch.load(weights_only=True)``.
The Hub's ``modeling_esm.py``/``esm_config.py`` are never imported.

Nobody here has seen the released files, so matching is strict. Every tensor of the model must be
in the file (the MLM decoder may be absent when tied to the word embeddings), with the model's
shape. Three kinds of key the port may store but the computation never reads are accepted with
their shapes checked, and listed in ``model.provenance["ignored_keys"]``: the absolute
``esm.embeddings.position_embeddings.weight`` (unused with rotary), ``esm.embeddings.position_ids``
and ``esm.contact_head.regression.*``. The per-layer rotary ``inv_freq`` is loaded when stored and
computed by the formula when not (``provenance["inv_freq_from_file"]``). Anything else is a
:class:`~caduceus_vep.model.checkpoint_io.CheckpointError` listing missing, unexpected and mismatched keys.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ..checkpoint_io import (
    BIN_NAME,
    CONFIG_NAME,
    SAFETENSORS_NAME,
    CheckpointError,
    check_save_options,
    checkpoint_provenance,
    match_released_layout,
    read_checkpoint_config,
    tensors_to_store,
    tie_groups,
    write_checkpoint,
)
from ..checkpoint_io import read_weights as read_one_file
from .config import NTv2Config
from .model import NucleotideTransformerV2

# The file names and tie_groups stay importable from here, as before the shared module.
__all__ = [
    "BIN_NAME", "CONFIG_NAME", "ENCODER_PREFIX", "SAFETENSORS_NAME", "build_ntv2", "load_ntv2", "match_state_dict",
    "read_weights", "save_ntv2", "tie_groups", "tiny_config", "unused_key_shapes", "weights_files", "write_tiny_checkpoint",
]

ENCODER_PREFIX = "esm."
_INV_FREQ = re.compile(r"esm\.encoder\.layer\.\d+\.attention\.self\.rotary_embeddings\.inv_freq")


def unused_key_shapes(config: NTv2Config) -> dict[str, tuple[int, ...]]:
    """Keys the port may store that the computation never reads, with their shapes."""
    return {
        "esm.embeddings.position_embeddings.weight": (config.max_position_embeddings, config.hidden_size),
        "esm.embeddings.position_ids": (1, config.max_position_embeddings),
        "esm.contact_head.regression.weight": (1, config.num_hidden_layers * config.num_attention_heads),
        "esm.contact_head.regression.bias": (1,),
    }


def weights_files(folder: Path) -> list[Path]:
    """The weight files of a folder: one file, or the shards named by an index (safetensors first)."""
    for name in (SAFETENSORS_NAME, BIN_NAME):
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            return [folder / shard for shard in sorted(set(weight_map.values()))]
    raise FileNotFoundError(f"no {SAFETENSORS_NAME} or {BIN_NAME} (or a sharded index of one) in {folder}")


def read_weights(paths: list[Path]) -> dict[str, Tensor]:
    """One name -> tensor dict from all the weight files (each key in one file only)."""
    state: dict[str, Tensor] = {}
    for path in paths:
        for key, value in read_one_file(path).items():
            if key in state:
                raise CheckpointError(f"{key!r} is stored in more than one shard")
            state[key] = value
    return state


def match_state_dict(model: NucleotideTransformerV2, state: dict[str, Tensor], source: str = "checkpoint") -> tuple[dict[str, Tensor], list[str], bool]:
    """(full state dict for ``model``, ignored keys, whether inv_freq came from the file).

    Raises CheckpointError listing every disagreement.
    """
    expected = model.state_dict()
    inv_from_file = [k for k in expected if _INV_FREQ.fullmatch(k) and k in state]
    inv_missing = [k for k in expected if _INV_FREQ.fullmatch(k) and k not in state]
    if inv_from_file and inv_missing:
        raise CheckpointError(f"{source}: rotary inv_freq stored for some layers only (missing: {inv_missing})")
    formula_values = {k: expected[k] for k in inv_missing}
    full, ignored = match_released_layout(model, state, source, "NT-v2", unused_key_shapes(model.config), formula_values)
    return full, ignored, bool(inv_from_file)


def load_ntv2(
    folder: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> NucleotideTransformerV2:
    """Load a released-layout NT-v2 folder into an eval-mode model (MLM head if the file has one)."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder")
    config = read_checkpoint_config(folder, NTv2Config.from_dict)  # errors name the file
    files = weights_files(folder)
    state = read_weights(files)
    if not any(k.startswith(ENCODER_PREFIX) for k in state) and any(k.startswith(("embeddings.", "encoder.")) for k in state):
        # Saved from the bare EsmModel: the same names without the masked-LM wrapper's prefix.
        state = {(k if k.startswith("lm_head.") else ENCODER_PREFIX + k): v for k, v in state.items()}
    model = NucleotideTransformerV2(config, lm_head=any(k.startswith("lm_head.") for k in state))
    full, ignored, inv_from_file = match_state_dict(model, state, source=", ".join(str(p) for p in files))
    model.load_state_dict(full, strict=True)
    model.provenance = checkpoint_provenance(folder, folder, files, config.to_dict(), keys_in_file=len(state), ignored_keys=ignored,
                                             inv_freq_from_file=inv_from_file,
                                             licence="NT-v2 weights: CC BY-NC-SA 4.0 (non-commercial)")
    return model.to(device=device, dtype=dtype).eval()


def save_ntv2(
    model: NucleotideTransformerV2,
    folder: str | os.PathLike[str],
    *,
    weights_format: Literal["safetensors", "bin"] = "safetensors",
    tied: Literal["once", "both"] = "once",
    unused_keys: bool = False,
    inv_freq: bool = True,
) -> Path:
    """Write ``config.json`` and the weights under the released key names; returns the weights path.

    ``tied="once"`` stores the tied MLM decoder only as the word embeddings (as HF safetensors files
    do); ``unused_keys=True`` also writes the unused tensors the port may carry (random values:
    nothing reads them); ``inv_freq=False`` leaves the rotary frequencies out.
    """
    check_save_options(weights_format, tied)
    tensors = tensors_to_store(model, tied, keep=lambda name: inv_freq or not _INV_FREQ.fullmatch(name))
    if unused_keys:
        gen = torch.Generator().manual_seed(0)
        for key, shape in unused_key_shapes(model.config).items():
            tensors[key] = torch.arange(shape[1]).view(shape) if key.endswith("position_ids") else torch.randn(shape, generator=gen)
    config_dict = model.config.to_dict()
    config_dict["architectures"] = ["EsmForMaskedLM"] if model.has_lm_head else ["EsmModel"]
    config_dict.setdefault("tie_word_embeddings", model.config.tie_word_embeddings)
    config_dict["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    return write_checkpoint(Path(folder), config_dict, tensors, weights_format)


@torch.no_grad()
def build_ntv2(config: NTv2Config, seed: int = 0, lm_head: bool = True) -> NucleotideTransformerV2:
    """A seeded random-weight model (tests, demo): O(1/sqrt(fan_in)) weights, LayerNorms near identity."""
    model = NucleotideTransformerV2(config, lm_head=lm_head)
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for module in model.modules():
        for name, tensor in module.named_parameters(recurse=False):
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if isinstance(module, nn.LayerNorm):
                tensor.copy_((1.0 if name == "weight" else 0.0) + 0.1 * torch.randn(tensor.shape, generator=gen))
            elif isinstance(module, nn.Embedding):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            else:
                fan_in = tensor.shape[1] if tensor.dim() > 1 else tensor.shape[0]
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / math.sqrt(fan_in))
    return model.eval()


def tiny_config() -> NTv2Config:
    """A tiny configuration with NT-v2's structure and its real vocabulary (the 6-mer tokenizer's ids)."""
    return NTv2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                      extra={"tie_word_embeddings": True})


def write_tiny_checkpoint(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny random-weight NT-v2 (NOT PRETRAINED) in the released layout; returns the weights path.

    config.json + model.safetensors (about 0.5 MB, mostly the 4,107-row embedding and the unused
    2,050-row absolute position table the port may carry): MLM head with the decoder tied to the
    embeddings (stored once), per-layer rotary ``inv_freq`` included.
    """
    model = build_ntv2(tiny_config(), seed=seed, lm_head=True)
    model.config.extra["_comment"] = "tiny random-weight NT-v2 in the released layout: NOT PRETRAINED (weights licence of the real model: CC BY-NC-SA 4.0)"
    return save_ntv2(model, folder, tied="once", unused_keys=True)
