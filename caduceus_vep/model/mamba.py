"""One direction of the Caduceus mixer: a Mamba v1 block (as mamba_ssm/modules/mamba_simple.py).

    x, z  = split(in_proj(h))                    both [B, L, d_inner]
    x     = silu(causal depthwise conv1d(x))      kernel d_conv, left padding d_conv - 1
    dt, B, C = split(x_proj(x), [dt_rank, d_state, d_state])
    delta = softplus(dt_proj(dt))                 dt_proj bias included
    y     = selective_scan(x, delta, A=-exp(A_log), B, C, D) * silu(z)
    out   = out_proj(y)

Two code paths compute it. With kernels (``kernels.kernels_for``: CUDA with mamba-ssm, or a test's
``use_kernels``) the activations take the [B, D, L] views that causal_conv1d and selective_scan_fn
expect. Without (the CPU path) everything stays in the [B, L, D] layout the projections produce:
the conv is d_conv shifted multiply-adds along L (no transposing copy into [B, D, L]), the scan
reads transposed views and writes y in [B, L, D], and ``reverse=True`` runs the direction
right-to-left instead of flipping the sequence before and after (anti-causal conv, reversed scan).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import kernels_for
from .scan import selective_scan

#: Positions per piece of the shifted-add conv at inference: its K + 1 passes then run on a piece
#: that stays in cache (measured ~15 % faster non-scan forward at L = 16,384, equal at 1,536).
CONV_CHUNK = 1024


def conv_silu_shifted(x: Tensor, weight: Tensor, bias: Tensor | None, reverse: bool = False) -> Tensor:
    """silu(depthwise conv1d(x)) for x [B, L, D] (any strides along B and L), as a new [B, L, D] tensor.

    weight [D, 1, K] (nn.Conv1d's). Causal: ``out[t] = bias + sum_k weight[:, k] * x[t - (K-1) + k]``
    (zeros before t = 0), the left-padded conv of Mamba; ``reverse``: ``x[t + (K-1) - k]`` (zeros after
    the end), i.e. the causal conv of the flipped sequence, flipped back. K shifted multiply-adds in
    this layout are measured faster than nn.Conv1d, which needs [B, D, L] and copies into it. Arithmetic in
    the promoted dtype of x and weight, result in x's dtype (as causal_conv1d_fn).
    """
    batch, length, dim = x.shape
    width = weight.shape[-1]
    # Contiguous [K, D] taps and contiguous x pieces: broadcasting a strided [D] vector (a column
    # of [D, K]) or reading the strided x half of in_proj's output was measured 2-4x slower per pass.
    taps = weight.reshape(weight.shape[0], width).t().contiguous()
    if torch.is_grad_enabled():
        # Autograd cannot follow writes through out=; one piece, out-of-place silu.
        return F.silu(_shifted_taps(x.contiguous(), taps, bias, reverse, 0, length, None)).to(x.dtype)
    out = torch.empty(batch, length, dim, dtype=torch.result_type(x, taps), device=x.device)
    halo = width - 1
    for c0 in range(0, length, CONV_CHUNK):
        c1 = min(length, c0 + CONV_CHUNK)
        lo, hi = (c0, min(length, c1 + halo)) if reverse else (max(0, c0 - halo), c1)
        piece = _shifted_taps(x[:, lo:hi].contiguous(), taps, bias, reverse, c0 - lo, c1 - c0, out[:, c0:c1])
        F.silu(piece, inplace=True)
    return out.to(x.dtype)


def _shifted_taps(xs: Tensor, taps: Tensor, bias: Tensor | None, reverse: bool, first: int, count: int,
                  out: Tensor | None) -> Tensor:
    """Conv outputs for ``count`` positions from xs, a piece of x whose row ``first`` is the first
    output position (rows before it: the causal history; rows after the outputs: the reverse
    direction's). Written into ``out`` when given (inference), else into a new tensor (autograd
    follows the in-place adds on it)."""
    width, rows = taps.shape[0], xs.shape[1]
    centre, last = xs[:, first:first + count], taps[width - 1]
    if out is None:
        out = torch.addcmul(bias, centre, last) if bias is not None else centre * last
    elif bias is not None:
        torch.addcmul(bias, centre, last, out=out)
    else:
        torch.mul(centre, last, out=out)
    for k in range(width - 1):
        shift = width - 1 - k
        if reverse:  # out[i] += w_k * xs[first + i + shift], where that row exists
            n = min(count, rows - first - shift)
            if n > 0:
                out[:, :n].addcmul_(xs[:, first + shift:first + shift + n], taps[k])
        else:  # out[i] += w_k * xs[first + i - shift], where that row exists
            skip = max(0, shift - first)
            if skip < count:
                out[:, skip:].addcmul_(xs[:, first + skip - shift:first + count - shift], taps[k])
    return out


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

    def mix(self, xz: Tensor, reverse: bool = False) -> Tensor:
        """Everything between the two projections: in_proj output [B, L, 2*d_inner] -> gated y [B, L, d_inner].

        Split out so that BiMamba, whose directions share in_proj and out_proj, can apply each
        projection once for both directions. ``reverse=True``: the same layer run right-to-left,
        ``flip_L(mix(flip_L(xz)))``.
        """
        if kernels_for(xz) is None:
            return self._mix_lean(xz, reverse)
        if reverse:
            return self._mix_kernel_layout(xz.flip(1)).flip(1)
        return self._mix_kernel_layout(xz)

    def _mix_lean(self, xz: Tensor, reverse: bool) -> Tensor:
        """The CPU path: [B, L, *] layout throughout; y comes back [B, L, d_inner]-contiguous from the fused scan."""
        x, z = xz.chunk(2, dim=-1)
        x = conv_silu_shifted(x, self.conv1d.weight, self.conv1d.bias, reverse)  # [B, L, d_inner]
        x_dbl = F.linear(x, self.x_proj.weight)  # [B, L, dt_rank + 2 * d_state]
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # [B, L, d_inner]; bias inside the scan
        A = -torch.exp(self.A_log.float())
        y = selective_scan(
            x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(),
            z=z.transpose(1, 2), delta_bias=self.dt_proj.bias.float(), delta_softplus=True, reverse=reverse,
        )
        return y.transpose(1, 2)

    def _mix_kernel_layout(self, xz: Tensor) -> Tensor:
        """The kernels' path (GPU): the [B, D, L] views causal_conv1d_fn and selective_scan_fn take."""
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
