"""RMSNorm as in mamba_ssm's Triton kernel: ``x / sqrt(mean(x^2) + eps) * w``, no bias."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Statistics in at least fp32 (like the kernel), result in the input's dtype.
        ct = torch.float64 if x.dtype == torch.float64 else torch.float32
        xc = x.to(ct)
        normed = xc * torch.rsqrt(xc.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.to(ct)).to(x.dtype)
