"""The HyenaDNA model in the released ``HyenaDNAForCausalLM`` layout.

Module names reproduce the released state dict exactly (``hyena.backbone.embeddings...``,
``hyena.backbone.layers.{i}.mixer...``, ``hyena.backbone.ln_f.*``, ``lm_head.weight``), so loading
is a plain key-for-key copy. ``forward`` returns the last hidden state (after ``ln_f``), which is
what the paper's embedding script pools; ``lm_logits`` adds the LM head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .block import HyenaBlock
from .config import HyenaDNAConfig


class HyenaEmbeddings(nn.Module):
    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.d_model)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.word_embeddings(input_ids)


class HyenaBackbone(nn.Module):
    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.embeddings = HyenaEmbeddings(config)
        self.layers = nn.ModuleList(HyenaBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)

    def forward(self, input_ids: Tensor) -> Tensor:
        hidden = self.embeddings(input_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.ln_f(hidden.to(self.ln_f.weight.dtype))


class HyenaDNAModel(nn.Module):
    """The port's ``HyenaDNAModel``: only a ``backbone`` (kept as a level for the key names)."""

    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        self.backbone = HyenaBackbone(config)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.backbone(input_ids)


class HyenaDNA(nn.Module):
    """HyenaDNA with an optional LM head; ``model(input_ids)`` -> last hidden state [B, L, d_model]."""

    def __init__(self, config: HyenaDNAConfig, lm_head: bool = True) -> None:
        super().__init__()
        self.config = config
        self.hyena = HyenaDNAModel(config)
        self.has_lm_head = lm_head
        if lm_head:
            self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
            if config.tie_word_embeddings:
                self.lm_head.weight = self.hyena.backbone.embeddings.word_embeddings.weight
        self.provenance: dict[str, Any] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.hyena.backbone.ln_f.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.config.d_model

    def forward(self, input_ids: Tensor) -> Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
        return self.hyena(input_ids)

    def lm_logits(self, input_ids: Tensor) -> Tensor:
        """Next-token logits [B, L, padded_vocab] (causal model: position i predicts token i+1)."""
        if not self.has_lm_head:
            raise RuntimeError("this model was built without an LM head")
        return self.lm_head(self(input_ids)).float()
