"""Load, save and fabricate Enformer checkpoints in the released enformer-pytorch layout, running none of their code.

The model is enformer-pytorch's own ``Enformer`` class (the implementation the paper's script ran),
built from our bounded settings with ``use_tf_gamma=False``. It is never built with
``Enformer.from_pretrained`` or ``enformer_pytorch.from_pretrained``: those go through
transformers' loader (which may contact the Hub and initialises missing weights at random with only
a warning) and, for the Hub id ``EleutherAI/enformer-official-rough``, switch ``use_tf_gamma`` on
unless told otherwise. Instead a folder holding ``config.json`` and ``model.safetensors``
(preferred) or ``pytorch_model.bin`` is read here: ``.bin`` with ``torch.load(weights_only=True)``,
which refuses pickles that would run code; no ``.py`` of a checkpoint is ever imported. A Hub id is
resolved through the local Hugging Face cache exactly as for Caduceus
(``caduceus_vep.model.loading``: ``HF_HUB_OFFLINE=1`` on compute nodes).

Nobody here has seen the released weight file, so matching is strict: every tensor of the model
(the trunk, both output heads, BatchNorm running statistics and ``num_batches_tracked``) and nothing
else, with the model's shapes; otherwise :class:`~caduceus_vep.model.checkpoint_io.CheckpointError`
lists the missing, unexpected and mismatched keys. enformer-pytorch registers the stem, conv tower,
transformer and final pointwise block twice (``stem.*`` and ``_trunk.1.*``, ``conv_tower.*`` and
``_trunk.2.*``, ``transformer.*`` and ``_trunk.4.*``, ``final_pointwise.*`` and ``_trunk.6.*``):
its ``state_dict()`` (what ``torch.save``/``save_pretrained`` to ``.bin`` wrote) holds both names
of each tensor, a safetensors conversion may hold one. Either is accepted; two stored copies of one
tensor must be equal. Non-finite weights are refused, naming the tensors.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..checkpoint_io import (
    check_finite,
    check_save_options,
    checkpoint_provenance,
    match_released_layout,
    read_checkpoint_config,
    read_weights,
    tensors_to_store,
    weights_file,
    write_checkpoint,
)
from .config import EnformerSettings

#: The pinned release (pyproject extra ``enformer``): model file identical to 0.8.12's, which adds only a transformers pin.
ENFORMER_PYTORCH_VERSION = "0.8.11"
INSTALL_HINT = f"pip install -c constraints.txt 'enformer-pytorch=={ENFORMER_PYTORCH_VERSION}'  (or: pip install -e '.[enformer]')"
#: What the tiny checkpoint's config says about itself.
NOT_PRETRAINED = "tiny random-weight Enformer in the released enformer-pytorch layout: NOT PRETRAINED"


def enformer_pytorch() -> Any:
    """The ``enformer_pytorch`` module, or ImportError saying how to install it (it imports transformers: slow, so lazy)."""
    try:
        import enformer_pytorch as module
    except ImportError as exc:
        raise ImportError(f"the Enformer baseline needs the enformer-pytorch package ({exc}); install it with {INSTALL_HINT}") from exc
    return module


def build_enformer(settings: EnformerSettings) -> nn.Module:
    """enformer-pytorch's ``Enformer`` for these settings (its own init), in eval mode, ``use_tf_gamma=False``."""
    package = enformer_pytorch()
    model = package.Enformer(package.EnformerConfig(**settings.package_config_kwargs()))
    model.settings = settings
    return model.eval()


def read_settings(folder: str | os.PathLike[str]) -> EnformerSettings:
    """The bounded settings of a checkpoint folder; every failure names ``<folder>/config.json``."""
    return read_checkpoint_config(folder, EnformerSettings.from_dict)


def load_enformer(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Load a released-layout Enformer (local folder, or Hub id from the local cache) into an eval-mode model.

    The settings are checked before any tensor is built, the weights before they are copied in.
    ``model.provenance`` records the folder, weights file and its sha256, and the settings.
    """
    from ..loading import _resolve_folder  # the Caduceus loader's folder/Hub-cache resolution, shared

    folder, resolved_revision = _resolve_folder(name_or_path, revision)
    settings = read_settings(folder)
    weights = weights_file(folder)
    state = read_weights(weights)
    check_finite(state, weights)
    model = build_enformer(settings)
    full, _ = match_released_layout(model, state, str(weights), "enformer-pytorch Enformer")
    model.load_state_dict(full, strict=True)
    model.provenance = checkpoint_provenance(name_or_path, folder, weights, settings.to_dict(), revision=resolved_revision,
                                             keys_in_file=len(state), enformer_pytorch=_package_version())
    return model.to(device=device, dtype=dtype).eval()


def _package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("enformer-pytorch")
    except metadata.PackageNotFoundError:
        return None


def save_enformer(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    weights_format: Literal["safetensors", "bin"] = "safetensors",
    tied: Literal["once", "both"] = "both",
) -> Path:
    """Write ``config.json`` and the weights under enformer-pytorch's state-dict names; returns the weights path.

    ``tied="both"`` (default) stores every name ``Enformer.state_dict()`` has, aliases included (as
    a ``.bin`` written from the state dict holds them); ``"once"`` stores each shared tensor under
    its first name only (``stem.*``, ``conv_tower.*``, ``transformer.*``, ``final_pointwise.*``).
    """
    check_save_options(weights_format, tied)
    settings: EnformerSettings = model.settings
    config_dict = settings.to_dict()
    config_dict["architectures"] = ["Enformer"]
    config_dict["torch_dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return write_checkpoint(Path(folder), config_dict, tensors_to_store(model, tied), weights_format)


@torch.no_grad()
def build_random_enformer(settings: EnformerSettings, seed: int = 0) -> nn.Module:
    """A seeded random-weight Enformer (tests, demo, benchmarks): NOT PRETRAINED.

    Every tensor is drawn, including the ones enformer-pytorch initialises to constants (the
    attention output projection is zero and the attention-pool logits a scaled identity there), so
    that every block changes the output; weights are O(1/sqrt(fan_in)), LayerNorm/BatchNorm affine
    near identity, BatchNorm running statistics random (mean ~0.1, variance 0.5..1.5) so that the
    eval-mode normalisation is exercised.
    """
    model = build_enformer(settings)
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for module in model.modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if id(tensor) in seen or not tensor.is_floating_point():
                continue  # shared modules appear twice; num_batches_tracked stays 0
            seen.add(id(tensor))
            noise = torch.randn(tensor.shape, generator=gen)
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
                if name == "running_var":
                    tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
                else:
                    tensor.copy_((1.0 if name == "weight" else 0.0) + 0.1 * noise)
            elif tensor.dim() == 1 or name in ("rel_content_bias", "rel_pos_bias"):
                tensor.copy_(0.1 * noise)
            else:
                fan_in = math.prod(tensor.shape[1:])
                tensor.copy_(noise / math.sqrt(fan_in))
    return model.eval()


def tiny_settings(target_length: int = 8) -> EnformerSettings:
    """A tiny Enformer with the released structure (128 bp bins, 7 downsamplings, two heads): about 91k parameters.

    ``target_length`` 8 suits the demo's 1,536 bp contexts: 12 bins, the central 8 kept (the
    released model keeps 896 of 1,536, i.e. the same even crop); any context of ``128 * n`` bp with
    ``n >= target_length`` and ``n - target_length`` even runs (smallest: 128 bp with target_length 1).
    """
    return EnformerSettings(dim=48, depth=2, heads=2, attn_dim_key=8, dim_divisible_by=8,
                            output_heads={"human": 8, "mouse": 4}, target_length=target_length,
                            extra={"_comment": NOT_PRETRAINED})


def write_tiny_checkpoint(folder: str | os.PathLike[str], seed: int = 0, target_length: int = 8,
                          weights_format: Literal["safetensors", "bin"] = "safetensors") -> Path:
    """Write a tiny random-weight Enformer (NOT PRETRAINED) in the released layout; returns the weights path (~0.8 MB, aliases included)."""
    return save_enformer(build_random_enformer(tiny_settings(target_length), seed=seed), folder, weights_format=weights_format)
