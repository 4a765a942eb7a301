"""NT-v2 in the released ``EsmForMaskedLM`` layout: ``esm`` (embeddings, encoder) and ``lm_head``.

Module names reproduce the released state dict (``esm.embeddings.word_embeddings.weight``,
``esm.encoder.layer.{i}.attention.self.query.weight``, ..., ``esm.encoder.emb_layer_norm_after.*``,
``lm_head.{dense,layer_norm,decoder}.*``, ``lm_head.bias``), so loading is a key-for-key copy.
``forward`` returns the encoder's last hidden state (after ``emb_layer_norm_after``): the script
takes ``EsmForMaskedLM(...).esm`` and pools its ``last_hidden_state``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .config import NTv2Config
from .layer import EsmEncoder


class EsmEmbeddings(nn.Module):
    """Token embeddings only: rotary models add no absolute positions (a stored, unused
    ``position_embeddings.weight`` is accepted and ignored by the loader)."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.emb_layer_norm_before else None

    def forward(self, input_ids: Tensor) -> Tensor:
        hidden = self.word_embeddings(input_ids)
        return self.layer_norm(hidden) if self.layer_norm is not None else hidden


class EsmModel(nn.Module):
    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.embeddings = EsmEmbeddings(config)
        self.encoder = EsmEncoder(config)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.encoder(self.embeddings(input_ids))


class EsmLMHead(nn.Module):
    """``decoder(LayerNorm(gelu(dense(h)))) + bias`` with ESM's exact (erf) GELU."""

    def __init__(self, config: NTv2Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor) -> Tensor:
        x = self.dense(hidden)
        x = x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
        return self.decoder(self.layer_norm(x)) + self.bias


class NucleotideTransformerV2(nn.Module):
    """NT-v2 with an optional MLM head; ``model(input_ids)`` -> last hidden state [B, T, hidden]."""

    def __init__(self, config: NTv2Config, lm_head: bool = True) -> None:
        super().__init__()
        self.config = config
        self.esm = EsmModel(config)
        self.has_lm_head = lm_head
        if lm_head:
            self.lm_head = EsmLMHead(config)
            if config.tie_word_embeddings:
                self.lm_head.decoder.weight = self.esm.embeddings.word_embeddings.weight
        self.provenance: dict[str, Any] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.esm.encoder.emb_layer_norm_after.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, input_ids: Tensor) -> Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, tokens], got shape {tuple(input_ids.shape)}")
        return self.esm(input_ids)

    def mlm_logits(self, input_ids: Tensor) -> Tensor:
        """Masked-LM logits [B, T, vocab] in fp32."""
        if not self.has_lm_head:
            raise RuntimeError("this model was built without an LM head")
        return self.lm_head(self(input_ids)).float()
