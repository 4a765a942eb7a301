"""NT-v2 settings, read from and written back to the released ESM-style ``config.json``.

Only what the released multi-species checkpoints compute is implemented: rotary position
embeddings, no token dropout, not a folding model. Any other value raises ``ValueError`` naming the
key, so an unexpected checkpoint never runs with silently different maths. Keys the model code
does not read (HF bookkeeping, dropout rates, ``auto_map``) are kept in ``extra`` for the round trip.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def _require(ok: bool, key: str, value: Any, why: str = "") -> None:
    if not ok:
        raise ValueError(f"config key {key!r} has unsupported value {value!r}{' (' + why + ')' if why else ''}")


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
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "vocab_size"):
            value = getattr(self, key)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, value)
        _require(self.hidden_size % self.num_attention_heads == 0, "num_attention_heads", self.num_attention_heads,
                 f"must divide hidden_size {self.hidden_size}")
        _require(self.head_size % 2 == 0, "num_attention_heads", self.num_attention_heads, "rotary needs an even head size")
        _require(self.position_embedding_type == "rotary", "position_embedding_type", self.position_embedding_type,
                 "NT-v2 uses rotary embeddings; other types are not implemented")
        _require(self.token_dropout is False, "token_dropout", self.token_dropout, "not implemented; NT-v2 has false")
        for key in ("add_bias_fnn", "emb_layer_norm_before"):
            _require(isinstance(getattr(self, key), bool), key, getattr(self, key))
        _require(not self.extra.get("is_folding_model", False), "is_folding_model", self.extra.get("is_folding_model"))

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether the MLM decoder shares the embedding matrix; absent means True (transformers' default)."""
        value = self.extra.get("tie_word_embeddings", True)
        _require(isinstance(value, bool), "tie_word_embeddings", value)
        return value

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NTv2Config:
        """Config from a released config.json; keys the model does not read are kept in ``extra``."""
        d = dict(d)
        if d.get("emb_layer_norm_before") is None:
            d.pop("emb_layer_norm_before", None)  # ESM's config allows null for "no"
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: d.pop(k) for k in list(d) if k not in names}
        config = cls(**d, extra=extra)
        config.tie_word_embeddings  # noqa: B018  (validates the value now, not at first use)
        return config

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out
