"""NT-v2 settings, read from and written back to the released ESM-style ``config.json``.

Only what the released multi-species checkpoints compute is implemented: rotary position
embeddings, no token dropout, not a folding model. Any other value raises ``ValueError`` naming the
key, so an unexpected checkpoint never runs with silently different maths. Keys the model code
does not read (HF bookkeeping, dropout rates, ``auto_map``) are kept in ``extra`` for the round trip.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config_checks import extra_bool, from_dict_with_extra, require, require_positive_ints, to_dict_with_extra


@dataclasses.dataclass
class NTv2Config:
    """Field names as in the port's ``EsmConfig``; defaults are the 500M multi-species values."""

    hidden_size: int = 1024
    num_hidden_layers: int = 29
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 2050
    vocab_size: int = 4107
    pad_token_id: int = 1
    mask_token_id: int = 2
    token_dropout: bool = False
    position_embedding_type: str = "rotary"
    add_bias_fnn: bool = False
    emb_layer_norm_before: bool = False
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require_positive_ints(self, ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                     "max_position_embeddings", "vocab_size"))
        require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads", self.num_attention_heads,
                 f"must divide hidden_size {self.hidden_size}")
        require(self.head_size % 2 == 0, "num_attention_heads", self.num_attention_heads, "rotary needs an even head size")
        require(self.position_embedding_type == "rotary", "position_embedding_type", self.position_embedding_type,
                 "NT-v2 uses rotary embeddings; other types are not implemented")
        require(self.token_dropout is False, "token_dropout", self.token_dropout, "not implemented; NT-v2 has false")
        for key in ("add_bias_fnn", "emb_layer_norm_before"):
            require(isinstance(getattr(self, key), bool), key, getattr(self, key))
        require(not self.extra.get("is_folding_model", False), "is_folding_model", self.extra.get("is_folding_model"))

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether the MLM decoder shares the embedding matrix; absent means True (transformers' default)."""
        return extra_bool(self, "tie_word_embeddings", True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NTv2Config:
        """Config from a released config.json; keys the model does not read are kept in ``extra``."""
        d = dict(d)
        if d.get("emb_layer_norm_before") is None:
            d.pop("emb_layer_norm_before", None)  # ESM's config allows null for "no"
        return from_dict_with_extra(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """The config.json form: the port's keys plus the keys read in that the model does not use."""
        return to_dict_with_extra(self)
