"""One HyenaDNA layer: pre-LayerNorm residual block, Hyena mixer then a GELU(tanh) MLP.

``r = h + mixer(norm1(h)); out = r + mlp(norm2(r))`` with the residual stream kept in fp32 (as the
port does). The port builds ``norm1``/``norm2`` with LayerNorm's default eps (1e-5) whatever
``layer_norm_epsilon`` says (only ``ln_f`` reads it); that is reproduced here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import HyenaDNAConfig
from .operator import HyenaOperator


class HyenaMlp(nn.Module):
    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_inner)
        self.fc2 = nn.Linear(config.d_inner, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class HyenaBlock(nn.Module):
    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.mixer = HyenaOperator(config)
        self.norm1 = nn.LayerNorm(config.d_model)
        self.mlp = HyenaMlp(config)
        self.norm2 = nn.LayerNorm(config.d_model)

    def forward(self, hidden: Tensor) -> Tensor:
        residual = hidden.to(torch.promote_types(hidden.dtype, torch.float32))
        hidden = self.mixer(self.norm1(residual.to(self.norm1.weight.dtype)))
        residual = hidden + residual
        hidden = self.mlp(self.norm2(residual.to(self.norm2.weight.dtype)))
        return hidden + residual
