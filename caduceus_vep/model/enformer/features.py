"""Enformer features as the paper's script computes them: trunk embeddings mean-pooled over 13 bins around the SNP.

``model(x, return_only_embeddings=True)`` is enformer-pytorch's trunk: stem, conv tower,
transformer, crop to ``target_length`` bins, final pointwise block + GELU -> ``[B, T, 2 * dim]``
(3,072 wide released). It is the second value of ``return_embeddings=True``, which the paper's
script used, without computing the output heads. The pooled feature is the mean over
:func:`~caduceus_vep.model.enformer.encoding.pooling_bins` (bins 442..454 of 896).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .config import EnformerSettings
from .encoding import PAPER_POOLING_WINDOW_BP, one_hot, output_bins, pooling_bins, reverse_complement_one_hot


def _settings(model: nn.Module) -> EnformerSettings:
    settings = getattr(model, "settings", None)
    if not isinstance(settings, EnformerSettings):
        raise TypeError("expected an Enformer from caduceus_vep.model.enformer (load_enformer / build_*), "
                        "which carries its checked settings as .settings")
    return settings


def trunk_embeddings(model: nn.Module, x: Tensor, strand: Literal["forward", "reverse"] = "forward") -> Tensor:
    """``[B, T, 2 * dim]`` trunk output for a one-hot batch ``x`` ``[B, L, 4]`` (T from the config's crop).

    ``strand="reverse"`` runs the reverse complement and flips the output back along the bins, so
    that bin ``T // 2`` is again the SNP's (as the paper's script does for its RC features).
    """
    settings = _settings(model)
    expected = output_bins(x.shape[-2], settings.target_length, settings.bin_bp)
    if strand == "reverse":
        x = reverse_complement_one_hot(x)
    elif strand != "forward":
        raise ValueError(f"strand must be 'forward' or 'reverse', got {strand!r}")
    out = model(x, return_only_embeddings=True)
    if out.shape[-2] != expected:  # the crop is a module attribute anyone could have changed (set_target_length)
        raise RuntimeError(f"Enformer returned {out.shape[-2]} bins, expected {expected}: its target_length was changed")
    return out.flip(dims=(-2,)) if strand == "reverse" else out


def pooled_features(
    model: nn.Module,
    sequences: Sequence[str],
    *,
    strand: Literal["forward", "reverse"] = "forward",
    batch_size: int = 1,
    pooling_window_bp: int = PAPER_POOLING_WINDOW_BP,
    autocast_fp16: bool = False,
) -> np.ndarray:
    """``[N, 2 * dim]`` float32: the paper's Enformer feature of each sequence (one SNP-centred window each).

    Each sequence is a context with the SNP at index ``len // 2`` (196,608 bp in the paper; any
    ``128 * n`` bp with ``n - target_length`` even and ``n >= target_length``); all must share one
    length. Features are the mean of the trunk output over ``pooling_bins(T, pooling_window_bp)``.
    ``autocast_fp16`` runs under fp16 autocast on CUDA, as the paper's script did (ignored on CPU).
    """
    settings = _settings(model)
    if not sequences:
        return np.zeros((0, settings.embedding_dim), dtype=np.float32)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = sorted({len(seq) for seq in sequences})
    if len(lengths) > 1:
        raise ValueError(f"sequences of lengths {lengths[:5]}: one context length per call (the pooled bins depend on it)")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    bins: list[int] | None = None
    out = []
    use_autocast = autocast_fp16 and device.type == "cuda"
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            x = one_hot(list(sequences[start:start + batch_size])).to(device=device, dtype=dtype)
            ctx = torch.autocast("cuda", dtype=torch.float16) if use_autocast else contextlib.nullcontext()
            with ctx:
                emb = trunk_embeddings(model, x, strand)
            if bins is None:
                bins = pooling_bins(emb.shape[-2], pooling_window_bp, settings.bin_bp)
            index = torch.tensor(bins, device=emb.device)
            out.append(emb.index_select(-2, index).float().mean(dim=-2).cpu().numpy())
    return np.concatenate(out, axis=0)
