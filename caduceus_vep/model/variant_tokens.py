"""Where the SNP and its pooling window fall in a tokenized context: the rule of the paper's
embedding script (kuleshov-group/caduceus ``vep_embeddings.py``), shared by HyenaDNA and NT-v2."""

from __future__ import annotations

import torch
from torch import Tensor


def variant_token_index(ref_ids: Tensor, alt_ids: Tensor) -> int:
    """The embedding script's SNP token for one ref/alt pair of 1-D token sequences.

    ``len//2`` unless ref and alt agree there; then the last position where they differ (-1 when
    none does, which the script then uses as is).
    """
    if ref_ids.shape != alt_ids.shape or ref_ids.dim() != 1:
        raise ValueError(f"ref and alt token sequences must be 1-D and equally long, got {tuple(ref_ids.shape)} and {tuple(alt_ids.shape)}")
    idx = ref_ids.numel() // 2
    if ref_ids.numel() and ref_ids[idx] != alt_ids[idx]:
        return idx
    differ = torch.nonzero(ref_ids != alt_ids).flatten()
    return int(differ[-1]) if differ.numel() else -1


def clamped_window(snp_index: int, n_tokens: int, half_window: int) -> Tensor:
    """``clamp(snp + arange(-h, h + 1), 0, n - 1)``: edge tokens repeat where the window runs off the context."""
    return (snp_index + torch.arange(-half_window, half_window + 1)).clamp(0, n_tokens - 1)
