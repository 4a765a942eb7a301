"""Bidirectional Mamba with the "add" strategy and weight tying used by every released checkpoint.

    out = mamba_fwd(h) + flip_L(mamba_rev(flip_L(h)))

``mamba_rev`` shares ``in_proj`` and ``out_proj`` (most of the parameters) with ``mamba_fwd``;
its convolution, x_proj, dt_proj, A_log and D are its own.
"""

from __future__ import annotations

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

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden [B, L, d_model] -> [B, L, d_model]."""
        # The projections are shared and act per position, so in_proj(flip(h)) = flip(in_proj(h))
        # and out_proj(a) + out_proj(b) = out_proj(a + b) (+ one extra bias): each projection
        # runs once instead of twice, the same function as fwd(h) + flip(rev(flip(h))).
        xz = self.mamba_fwd.in_proj(hidden)
        mixed = self.mamba_fwd.mix(xz) + self.mamba_rev.mix(xz.flip(1)).flip(1)
        out = self.mamba_fwd.out_proj(mixed)
        if self.mamba_fwd.out_proj.bias is not None:
            out = out + self.mamba_fwd.out_proj.bias
        return out
