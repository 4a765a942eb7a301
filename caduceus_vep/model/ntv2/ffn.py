"""NT-v2's feed-forward: bias-free SwiGLU, ``dense_out(silu(a) * b)`` with ``[a | b] = dense_in(x)``.

``intermediate.dense.weight`` is [2 * intermediate_size, hidden]: the first half of its rows
gives the gate ``a`` (through SiLU), the second half the value ``b``, as in the port
(``x1, x2 = h.split(...); silu(x1) * x2``). ``add_bias_fnn`` is false in NT-v2 (no biases).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import NTv2Config


class EsmIntermediate(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.add_bias_fnn)

    def forward(self, hidden: Tensor) -> Tensor:
        gate, value = self.dense(hidden).chunk(2, dim=-1)
        return F.silu(gate) * value


class EsmOutput(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.add_bias_fnn)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        return self.dense(hidden) + residual
