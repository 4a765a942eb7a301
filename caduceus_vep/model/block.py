"""One Caduceus layer: pre-norm residual block with the fused add-norm ordering of mamba_ssm.

    summed   = h + residual           (first layer: h)
    h_next   = mixer(norm(summed))
    residual = summed                 (PS: the swapped [s2, s1], see rcps.rcps_add_norm)

Ph: mixer = BiMamba on d channels. PS: mixer = RCPSWrapper(BiMamba) on 2d channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .bimamba import BiMamba
from .config import CaduceusConfig
from .kernels import kernels_for
from .norm import RMSNorm
from .rcps import RCPSWrapper, rc_flip, rcps_add_norm, rcps_add_norm_lean, rms_norm_into


def add_residual(hidden: Tensor, residual: Tensor | None, residual_in_fp32: bool) -> Tensor:
    """``hidden + residual``, kept in at least fp32 when the config asks for it."""
    summed = hidden if residual is None else hidden.to(residual.dtype) + residual
    if residual_in_fp32 and summed.dtype in (torch.float16, torch.bfloat16):
        summed = summed.float()
    return summed


def fused_add_norm(
    rms_norm_fn: Callable[..., Any], hidden: Tensor, residual: Tensor | None, norm: RMSNorm, *,
    residual_in_fp32: bool, rcps: bool, prenorm: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """The GPU path's add + RMSNorm through mamba-ssm's fused kernel, exactly as upstream Caduceus calls it.

    ``rms_norm_fn(x, weight, bias, residual=..., prenorm=..., residual_in_fp32=..., eps=...)``
    adds ``x + residual`` in fp32, normalises it and returns ``y`` in x's dtype (and, with
    ``prenorm=True``, the sum in the residual's dtype: fp32 when ``residual_in_fp32`` and there is
    no residual yet). Ph: one call. PS (``rcps``): one call per half on d channels, the RC half in RC
    orientation; inside the blocks (``prenorm=True``) with the half swap of the checkpoints
    (modeling_rcps.RCPSMambaBlock: the second half goes to the forward slot, see
    ``rcps.rcps_add_norm``), for the final norm (``prenorm=False``) without it
    (modeling_caduceus.CaduceusMixerModel).
    """
    kwargs = {"prenorm": prenorm, "residual_in_fp32": residual_in_fp32, "eps": norm.eps}
    if not rcps:
        return rms_norm_fn(hidden, norm.weight, None, residual=residual, **kwargs)
    h1, h2 = hidden.chunk(2, dim=-1)
    r1, r2 = (None, None) if residual is None else residual.chunk(2, dim=-1)
    # Blocks: forward slot <- second half, RC slot <- first half (the swap); final norm: in place.
    (hf, rf), (hr, rr) = ((h2, r2), (h1, r1)) if prenorm else ((h1, r1), (h2, r2))
    out_fwd = rms_norm_fn(hf, norm.weight, None, residual=rf, **kwargs)
    out_rc = rms_norm_fn(rc_flip(hr), norm.weight, None, residual=None if rr is None else rc_flip(rr), **kwargs)
    if not prenorm:
        return torch.cat([out_fwd, rc_flip(out_rc)], dim=-1)
    (normed_fwd, residual_fwd), (normed_rc, residual_rc) = out_fwd, out_rc
    return (torch.cat([normed_fwd, rc_flip(normed_rc)], dim=-1),
            torch.cat([residual_fwd, rc_flip(residual_rc)], dim=-1))


def add_norm_lean(
    hidden: Tensor, residual: Tensor | None, norm: RMSNorm, *, rcps: bool, swap_halves: bool,
    residual_in_fp32: bool, reuse_inputs: bool,
) -> tuple[Tensor, Tensor]:
    """The CPU inference path of ``add_residual`` + norm (+ PS half swap): (normalised in hidden's dtype, residual).

    The same values as the general code, with fewer passes over memory: the sum goes in place into
    the residual (Ph) or straight into the halves of the new residual (PS), the normalised tensor
    into hidden's memory, when ``reuse_inputs`` says the caller no longer needs them.
    """
    residual_dtype = hidden.dtype if residual is None else residual.dtype
    if residual_in_fp32 and residual_dtype in (torch.float16, torch.bfloat16):
        residual_dtype = torch.float32
    if rcps:
        return rcps_add_norm_lean(hidden, residual, norm, swap_halves, residual_dtype,
                                  reuse_hidden=reuse_inputs)
    if residual is None:
        summed = hidden.to(residual_dtype)
    elif reuse_inputs and residual.dtype == residual_dtype:
        summed = residual.add_(hidden.to(residual.dtype))
    else:
        summed = add_residual(hidden, residual, residual_in_fp32)
    # hidden's memory is free once it is in the sum (unless the sum is hidden itself: the first block).
    reuse = reuse_inputs and summed.data_ptr() != hidden.data_ptr()
    normed = hidden if reuse else torch.empty_like(hidden)
    return rms_norm_into(summed, norm.weight, norm.eps, normed), summed


class CaduceusBlock(nn.Module):
    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        ssm = config.ssm_cfg
        bimamba = BiMamba(
            config.d_model, d_state=ssm.d_state, d_conv=ssm.d_conv, expand=ssm.expand,
            dt_rank=config.dt_rank, conv_bias=ssm.conv_bias, bias=ssm.bias,
        )
        self.is_rcps = config.rcps
        self.mixer = RCPSWrapper(bimamba) if config.rcps else bimamba
        self.norm = RMSNorm(config.d_model, eps=config.norm_epsilon)  # d channels even for PS
        self.residual_in_fp32 = config.residual_in_fp32
        # The half swap exists only in the fused add-norm path (see rcps_add_norm).
        self.swap_halves = config.fused_add_norm

    def forward(self, hidden: Tensor, residual: Tensor | None, reuse_inputs: bool = False) -> tuple[Tensor, Tensor]:
        """(mixer output, new residual). ``reuse_inputs``: the caller hands over both tensors, whose
        memory the CPU path then reuses for the sum and the normalised input (inference only)."""
        kernels = kernels_for(hidden)
        if self.swap_halves and kernels is not None and kernels.rms_norm_fn is not None:
            # GPU path: mamba-ssm's fused add + RMSNorm (the path the checkpoints were trained with).
            normed, residual = fused_add_norm(kernels.rms_norm_fn, hidden, residual, self.norm,
                                              residual_in_fp32=self.residual_in_fp32, rcps=self.is_rcps, prenorm=True)
            return self.mixer(normed), residual
        if kernels is None and not torch.is_grad_enabled():
            normed, residual = add_norm_lean(hidden, residual, self.norm, rcps=self.is_rcps, swap_halves=self.swap_halves,
                                             residual_in_fp32=self.residual_in_fp32, reuse_inputs=reuse_inputs)
            return self.mixer(normed), residual
        summed = add_residual(hidden, residual, self.residual_in_fp32)
        if self.is_rcps:
            normed, residual = rcps_add_norm(summed, self.norm, self.swap_halves)
        else:
            normed, residual = self.norm(summed), summed
        return self.mixer(normed.to(hidden.dtype)), residual
