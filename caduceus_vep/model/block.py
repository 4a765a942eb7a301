"""One Caduceus layer: pre-norm residual block with the fused add-norm ordering of mamba_ssm.

    summed   = h + residual           (first layer: h)
    h_next   = mixer(norm(summed))
    residual = summed                 (PS: the swapped [s2, s1], see rcps.rcps_add_norm)

Ph: mixer = BiMamba on d channels. PS: mixer = RCPSWrapper(BiMamba) on 2d channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .bimamba import BiMamba
from .config import CaduceusConfig
from .norm import RMSNorm
from .rcps import RCPSWrapper, rcps_add_norm


def add_residual(hidden: Tensor, residual: Tensor | None, residual_in_fp32: bool) -> Tensor:
    """``hidden + residual``, kept in at least fp32 when the config asks for it."""
    summed = hidden if residual is None else hidden.to(residual.dtype) + residual
    if residual_in_fp32 and summed.dtype in (torch.float16, torch.bfloat16):
        summed = summed.float()
    return summed


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

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        summed = add_residual(hidden, residual, self.residual_in_fp32)
        if self.is_rcps:
            normed, residual = rcps_add_norm(summed, self.norm, self.swap_halves)
        else:
            normed, residual = self.norm(summed), summed
        return self.mixer(normed.to(hidden.dtype)), residual
