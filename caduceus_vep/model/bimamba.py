"""Bidirectional Mamba with the "add" strategy and weight tying used by every released checkpoint.

    out = mamba_fwd(h) + flip_L(mamba_rev(flip_L(h)))

``mamba_rev`` shares ``in_proj`` and ``out_proj`` (most of the parameters) with ``mamba_fwd``;
its convolution, x_proj, dt_proj, A_log and D are its own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mamba import Mamba


class BiMamba(nn.Module):
    def __init__(self, d_model: int, **mamba_kwargs) -> None:
        super().__init__()
        self.mamba_fwd = Mamba(d_model, **mamba_kwargs)
        self.mamba_rev = Mamba(d_model, **mamba_kwargs)
        # Sharing the modules shares weight and bias; the state dict still lists both names,
        # exactly like the upstream parameter-level tie.
        self.mamba_rev.in_proj = self.mamba_fwd.in_proj
        self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    #: Above this many tokens per call on CPU, batch rows go through one at a time: the same
    #: result, with the [batch, L, 2 * d_inner] activations of only one row alive (long contexts).
    max_tokens_per_call = 1 << 16
    #: On a GPU, groups of rows of up to this many tokens: one 1,536-token row cannot keep a GPU
    #: busy; 2^20 tokens (8 rows of 131,072) bound the activations (about 10 GB in bf16 by the
    #: tensor sizes, an estimate: benchmarks/gpu_check.py measures the peak).
    max_tokens_per_call_gpu = 1 << 20

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden [B, L, d_model] -> [B, L, d_model]."""
        batch, length = hidden.shape[:2]
        if hidden.device.type == "cpu":
            if batch > 1 and batch * length > self.max_tokens_per_call:
                return torch.cat([self._forward(row) for row in hidden.split(1)], dim=0)
        elif batch > 1 and batch * length > self.max_tokens_per_call_gpu:
            rows = max(1, self.max_tokens_per_call_gpu // length)
            return torch.cat([self._forward(part) for part in hidden.split(rows)], dim=0)
        return self._forward(hidden)

    def _forward(self, hidden: Tensor) -> Tensor:
        # The projections are shared and act per position, so in_proj(flip(h)) = flip(in_proj(h))
        # and out_proj(a) + out_proj(b) = out_proj(a + b) (+ one extra bias): each projection
        # runs once instead of twice, the same function as fwd(h) + flip(rev(flip(h))).
        # Intermediates are dropped as soon as possible to keep peak memory low at long L.
        xz = self.mamba_fwd.in_proj(hidden)
        mixed = self.mamba_fwd.mix(xz)
        xz = xz.flip(1)  # the unflipped copy is freed here
        rev = self.mamba_rev.mix(xz).flip(1)
        del xz
        mixed = mixed + rev if torch.is_grad_enabled() else mixed.add_(rev)
        del rev
        out = self.mamba_fwd.out_proj(mixed)
        if self.mamba_fwd.out_proj.bias is not None:
            out = out + self.mamba_fwd.out_proj.bias
        return out
