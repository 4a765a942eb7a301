"""The Caduceus model: embedding, n_layer blocks, final norm, optional (tied) LM head.

Module and parameter names reproduce the released state dicts with the ``caduceus.`` prefix of the
MaskedLM checkpoints removed, so a checkpoint loads with a plain key mapping.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .block import CaduceusBlock, add_norm_lean, add_residual, fused_add_norm
from .config import CaduceusConfig
from .kernels import kernels_for
from .norm import RMSNorm
from .rcps import RCPSEmbedding, RCPSLMHead, rcps_add_norm


class CaduceusEmbeddings(nn.Module):
    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        vocab = config.padded_vocab_size
        if config.rcps:
            self.word_embeddings: nn.Module = RCPSEmbedding(vocab, config.d_model, config.complement_list)
        else:
            self.word_embeddings = nn.Embedding(vocab, config.d_model)

    @property
    def weight(self) -> nn.Parameter:
        """The [vocab, d_model] embedding matrix (the tensor the LM head is tied to)."""
        emb = self.word_embeddings
        return emb.embedding.weight if isinstance(emb, RCPSEmbedding) else emb.weight

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.word_embeddings(input_ids)


class CaduceusBackbone(nn.Module):
    def __init__(self, config: CaduceusConfig) -> None:
        super().__init__()
        self.is_rcps = config.rcps
        self.residual_in_fp32 = config.residual_in_fp32
        self.fused_add_norm = config.fused_add_norm
        self.embeddings = CaduceusEmbeddings(config)
        self.layers = nn.ModuleList(CaduceusBlock(config) for _ in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, eps=config.norm_epsilon)

    def forward(self, input_ids: Tensor) -> Tensor:
        hidden = self.embeddings(input_ids)
        residual = None
        for layer in self.layers:
            # The tensors passed on are this loop's own: a block may reuse their memory.
            hidden, residual = layer(hidden, residual, reuse_inputs=True)
        kernels = kernels_for(hidden)
        if self.fused_add_norm and kernels is not None and kernels.rms_norm_fn is not None:
            return fused_add_norm(kernels.rms_norm_fn, hidden, residual, self.norm_f,
                                  residual_in_fp32=self.residual_in_fp32, rcps=self.is_rcps, prenorm=False)
        if kernels is None and not torch.is_grad_enabled():
            out, _ = add_norm_lean(hidden, residual, self.norm_f, rcps=self.is_rcps, swap_halves=False,
                                   residual_in_fp32=self.residual_in_fp32, reuse_inputs=True)
            return out
        summed = add_residual(hidden, residual, self.residual_in_fp32)
        if self.is_rcps:
            # Final norm: same rule as inside the blocks but without the half swap.
            out, _ = rcps_add_norm(summed, self.norm_f, swap_halves=False)
        else:
            out = self.norm_f(summed)
        return out.to(hidden.dtype)


class Caduceus(nn.Module):
    """Caduceus backbone (+ tied LM head). ``forward`` returns the last hidden state [B, L, H].

    H = d_model for Ph, 2 * d_model for PS ([forward half | RC half]).
    """

    def __init__(self, config: CaduceusConfig, lm_head: bool = True) -> None:
        super().__init__()
        self.config = config
        self.is_rcps: bool = config.rcps
        self.hidden_size: int = 2 * config.d_model if config.rcps else config.d_model
        self.has_lm_head: bool = lm_head
        self.provenance: dict[str, Any] = {}
        self.backbone = CaduceusBackbone(config)
        if lm_head:
            vocab = config.padded_vocab_size
            if config.rcps:
                self.lm_head: nn.Module = RCPSLMHead(config.d_model, vocab, config.complement_list)
                self.lm_head.lm_head.weight = self.backbone.embeddings.weight
            else:
                self.lm_head = nn.Linear(config.d_model, vocab, bias=False)
                self.lm_head.weight = self.backbone.embeddings.weight

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, L] (int64) -> last hidden state after the final norm [B, L, hidden_size]."""
        return self.backbone(input_ids)

    def mlm_logits(self, input_ids: Tensor) -> Tensor:
        """Masked-LM logits [B, L, vocab] from the tied head (RC-equivariant for PS)."""
        if not self.has_lm_head:
            raise RuntimeError("this model was built or loaded without an LM head")
        return self.lm_head(self.backbone(input_ids))

    @property
    def device(self) -> torch.device:
        return self.backbone.norm_f.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.norm_f.weight.dtype
