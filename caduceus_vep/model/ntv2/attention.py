"""Pre-LayerNorm self-attention block of the ESM layout: ``x + dense(attn(LayerNorm(x)))``.

As in ESM, the query is scaled by ``head_size**-0.5`` before the rotary rotation (the rotation
is linear, so this is the usual scaled dot product). No attention mask: the embedding script calls
the encoder with ``input_ids`` only, and paper contexts need no padding. Dropout is inference-off.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import NTv2Config
from .rotary import RotaryEmbedding


class EsmSelfAttention(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.rotary_embeddings = RotaryEmbedding(self.head_size)

    def _heads(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, hidden: Tensor) -> Tensor:
        q = self._heads(self.query(hidden)) * self.head_size ** -0.5
        k = self._heads(self.key(hidden))
        v = self._heads(self.value(hidden))
        q, k = self.rotary_embeddings(q, k)
        context = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # q is already scaled
        b, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(b, length, self.num_heads * self.head_size)


class EsmSelfOutput(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor, residual: Tensor) -> Tensor:
        return self.dense(hidden) + residual


class EsmAttention(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.self = EsmSelfAttention(config)
        self.output = EsmSelfOutput(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.output(self.self(self.LayerNorm(hidden)), hidden)
