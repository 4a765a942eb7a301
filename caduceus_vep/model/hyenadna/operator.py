"""The Hyena operator (order 2): input projection, short causal conv, gate, long implicit conv, gate.

For u [B, L, D]: ``x0, x1, v = short_conv(in_proj(u))``; ``y = x0 * fftconv(x1 * v, k, bias)``;
output ``out_proj(y)``. The short filter is a depthwise ``Conv1d`` with padding 2 on both sides cut
back to the first L positions, which for the released kernel size 3 is a causal convolution.
"""

from __future__ import annotations

from torch import Tensor, nn

from .config import HyenaDNAConfig
from .filter import HyenaFilter, fftconv


class HyenaOperator(nn.Module):
    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.d_model = config.d_model
        self.l_max = config.max_seq_len
        inner_width = config.d_model * (config.hyena_order + 1)
        self.in_proj = nn.Linear(config.d_model, inner_width)
        self.out_proj = nn.Linear(config.d_model, config.d_model)
        self.short_filter = nn.Conv1d(inner_width, inner_width, config.short_filter_order, padding=2, groups=inner_width)
        self.filter_fn = HyenaFilter(config)

    def forward(self, u: Tensor) -> Tensor:
        length = u.size(-2)
        if length > self.l_max:
            # The port would cut the filter at l_max and then fail on the residual add.
            raise ValueError(f"sequence of {length} tokens is longer than max_seq_len={self.l_max} of this checkpoint")
        u = self.in_proj(u).transpose(1, 2)
        uc = self.short_filter(u)[..., :length]
        x0, x1, v = uc.split(self.d_model, dim=1)
        k = self.filter_fn.filter(length)[0].transpose(0, 1)  # [D, L]
        v = fftconv(v * x1, k, self.filter_fn.bias)
        return self.out_proj((v * x0).transpose(1, 2))
