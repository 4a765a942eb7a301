"""One pre-LN encoder layer and the stack: ``a = x + attn(LN(x)); out = a + ffn(LN(a))``; final LayerNorm."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import EsmAttention
from .config import NTv2Config
from .ffn import EsmIntermediate, EsmOutput


class EsmLayer(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.attention = EsmAttention(config)
        self.intermediate = EsmIntermediate(config)
        self.output = EsmOutput(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        attended = self.attention(hidden)
        return self.output(self.intermediate(self.LayerNorm(attended)), attended)


class EsmEncoder(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(EsmLayer(config) for _ in range(config.num_hidden_layers))
        self.emb_layer_norm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        for layer in self.layer:
            hidden = layer(hidden)
        return self.emb_layer_norm_after(hidden)
