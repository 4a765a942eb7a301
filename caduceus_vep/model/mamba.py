"""One direction of the Caduceus mixer: a Mamba v1 block (as mamba_ssm/modules/mamba_simple.py).

    x, z  = split(in_proj(h))                    both [B, L, d_inner]
    x     = silu(causal depthwise conv1d(x))      kernel d_conv, left padding d_conv - 1
    dt, B, C = split(x_proj(x), [dt_rank, d_state, d_state])
    delta = softplus(dt_proj(dt))                 dt_proj bias included
    y     = selective_scan(x, delta, A=-exp(A_log), B, C, D) * silu(z)
    out   = out_proj(y)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import kernels_for
from .scan import selective_scan


def conv_kernel_layout(x: Tensor) -> Tensor:
    """x [B, D, L] in a layout causal_conv1d's CUDA kernel accepts, copying only when it must.

    The kernel takes x with L contiguous (stride(2) == 1) or channel-last (stride(1) == 1, then
    D, stride(0) and stride(2) must be multiples of 8, causal_conv1d.cpp). The x half of in_proj's
    output arrives channel-last ([B, L, 2*d_inner] transposed), which is used as it is when allowed.
    """
    if x.stride(2) == 1:
        return x
    if x.stride(1) == 1 and x.shape[1] % 8 == 0 and x.stride(0) % 8 == 0 and x.stride(2) % 8 == 0:
        return x
    return x.contiguous()


class Mamba(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        conv_bias: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank if dt_rank is not None else -(-d_model // 16)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        # groups=d_inner: one length-d_conv filter per channel (depthwise).
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
            padding=d_conv - 1, bias=conv_bias,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # A is stored as log(-A) so that A = -exp(A_log) stays negative: a decaying state.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _conv_silu(self, x: Tensor) -> Tensor:
        """Causal depthwise convolution + SiLU on x [B, d_inner, L]."""
        length = x.shape[-1]
        kernels = kernels_for(x)
        if kernels is not None and kernels.causal_conv1d_fn is not None:
            # causal_conv1d_fn(x, weight [D, width], bias, activation): the same causal
            # convolution (left padding width - 1) with the SiLU fused; output in x's dtype.
            weight = self.conv1d.weight.squeeze(1)
            return kernels.causal_conv1d_fn(conv_kernel_layout(x), weight, self.conv1d.bias, activation="silu")
        # Padding d_conv-1 on both sides, keep the first L outputs: output t sees inputs <= t only.
        return F.silu(self.conv1d(x)[..., :length], inplace=not torch.is_grad_enabled())

    def mix(self, xz: Tensor) -> Tensor:
        """Everything between the two projections: in_proj output [B, L, 2*d_inner] -> gated y [B, L, d_inner].

        Split out so that BiMamba, whose directions share in_proj and out_proj, can apply each
        projection once for both directions.
        """
        x, z = xz.chunk(2, dim=-1)
        x = self._conv_silu(x.transpose(1, 2))  # [B, d_inner, L]
        x_dbl = self.x_proj(x.transpose(1, 2))  # [B, L, dt_rank + 2 * d_state]
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # dt_proj's weight here, its bias inside the scan (before softplus), like the fused kernel.
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # [B, d_inner, L]
        A = -torch.exp(self.A_log.float())
        # The gate silu(z) is applied inside the scan (fused in the compiled CPU kernel and in
        # mamba_ssm's); the fused kernel returns y as a view of a [B, L, d_inner] tensor, so the
        # transpose below is free and out_proj reads contiguous rows.
        y = selective_scan(
            x, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(),
            z=z.transpose(1, 2), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return y.transpose(1, 2)

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden [B, L, d_model] -> [B, L, d_model]; causal along L."""
        return self.out_proj(self.mix(self.in_proj(hidden)))
