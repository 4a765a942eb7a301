"""Bidirectional Mamba with the "add" strategy and weight tying used by every released checkpoint.

    out = mamba_fwd(h) + flip_L(mamba_rev(flip_L(h)))

``mamba_rev`` shares ``in_proj`` and ``out_proj`` (most of the parameters) with ``mamba_fwd``;
its convolution, x_proj, dt_proj, A_log and D are its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import kernels_for
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
        return self._by_rows(hidden, self._forward)

    def forward_rc(self, hidden: Tensor) -> Tensor:
        """``rc_flip(self(rc_flip(hidden)))`` (rc_flip reverses length and channels), for RCPSWrapper.

        On the CPU path no flip is materialised: flipping the channels of in_proj's input and of
        out_proj's output is the same as flipping in_proj's weight columns and out_proj's weight rows
        (small [2*d_inner, d_model] copies), and flip_L(BiMamba(flip_L(u))) = mamba_rev(u) +
        flip_L(mamba_fwd(flip_L(u))): the reverse module runs left-to-right and the forward module
        right-to-left on the sequence as it is.
        """
        if kernels_for(hidden) is not None:
            return self(hidden.flip(dims=(-2, -1))).flip(dims=(-2, -1))
        return self._by_rows(hidden, self._forward_rc_lean)

    def _by_rows(self, hidden: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        batch, length = hidden.shape[:2]
        if hidden.device.type == "cpu":
            if batch > 1 and batch * length > self.max_tokens_per_call:
                return torch.cat([fn(row) for row in hidden.split(1)], dim=0)
        elif batch > 1 and batch * length > self.max_tokens_per_call_gpu:
            rows = max(1, self.max_tokens_per_call_gpu // length)
            return torch.cat([fn(part) for part in hidden.split(rows)], dim=0)
        return fn(hidden)

    def _forward(self, hidden: Tensor) -> Tensor:
        if kernels_for(hidden) is None:
            return self._forward_lean(hidden, rc=False)
        # Kernels' path (GPU). The projections are shared and act per position, so
        # in_proj(flip(h)) = flip(in_proj(h)) and out_proj(a) + out_proj(b) = out_proj(a + b)
        # (+ one extra bias): each projection runs once instead of twice, the same function as
        # fwd(h) + flip(rev(flip(h))). Intermediates are dropped as soon as possible to keep peak
        # memory low at long L.
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

    def _forward_rc_lean(self, hidden: Tensor) -> Tensor:
        return self._forward_lean(hidden, rc=True)

    def _forward_lean(self, hidden: Tensor, rc: bool) -> Tensor:
        """The CPU path, no flips: each direction reads in_proj's output as it is (mix(reverse=...)).

        ``rc``: computes ``rc_flip(BiMamba(rc_flip(hidden)))`` (see forward_rc).
        """
        in_proj, out_proj = self.mamba_fwd.in_proj, self.mamba_fwd.out_proj
        w_in, w_out, b_out = in_proj.weight, out_proj.weight, out_proj.bias
        if rc:
            w_in, w_out = w_in.flip(1), w_out.flip(0)
            b_out = None if b_out is None else b_out.flip(0)
        xz = F.linear(hidden, w_in, in_proj.bias)  # [B, L, 2 * d_inner]
        # Left-to-right direction first; on the RC strand that is the reverse module.
        first, second = (self.mamba_rev, self.mamba_fwd) if rc else (self.mamba_fwd, self.mamba_rev)
        mixed = first.mix(xz, reverse=False)
        other = second.mix(xz, reverse=True)
        del xz
        mixed = mixed + other if torch.is_grad_enabled() else mixed.add_(other)
        del other
        out = F.linear(mixed, w_out, b_out)
        if b_out is not None:  # one bias per direction, as out_proj(fwd) + out_proj(rev)
            out = out + b_out
        return out
