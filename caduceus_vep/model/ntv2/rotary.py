"""Rotary position embeddings as in ESM / the NT-v2 port: half-split rotation, positions 0..L-1.

``inv_freq[j] = 10000^(-2j/head_size)``; for position p the angles ``p * inv_freq`` are used twice
(``cat(freqs, freqs)``) and ``x' = x cos + rotate_half(x) sin`` with ``rotate_half(x) = cat(-x2, x1)``.
``inv_freq`` is a persistent buffer under the port's per-layer name
(``attention.self.rotary_embeddings.inv_freq``): when the file stores it, the stored values are used
(transformers notes they may have been saved in float16), otherwise the formula's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_size: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_size, 2).float() / head_size)))

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q and k [B, heads, L, head_size]; the rotation is computed in fp32 (at least)."""
        length = q.shape[-2]
        ct = torch.promote_types(q.dtype, torch.float32)
        positions = torch.arange(length, device=q.device, dtype=ct)
        freqs = torch.outer(positions, self.inv_freq.to(ct))
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q_rot = q.to(ct) * cos + rotate_half(q.to(ct)) * sin
        k_rot = k.to(ct) * cos + rotate_half(k.to(ct)) * sin
        return q_rot.to(q.dtype), k_rot.to(k.dtype)
