"""HyenaDNA settings, read from and written back to the released ``config.json`` (``model_type: hyenadna``).

Only what the released Hugging Face port computes is implemented. Settings that would change the
maths in a way the port does not support (``hyena_order`` other than 2: the port's implicit filter
always has ``d_model`` outputs, enough for exactly one long convolution) raise ``ValueError`` naming
the key, so an unexpected checkpoint never runs with silently different maths. Dropout settings are
kept for the round trip and have no effect (inference only). Keys the port does not read (HF
bookkeeping such as ``auto_map``) cannot change its maths either: they are kept in ``extra`` for the
round trip and otherwise ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config_checks import extra_bool, from_dict_with_extra, require, require_positive_ints, to_dict_with_extra


@dataclasses.dataclass
class HyenaDNAConfig:
    """Field names and defaults as in the port's ``HyenaConfig``; ``max_seq_len`` sizes the stored
    positional tensors (``pos_emb.z``/``t``), so it must match the checkpoint."""

    vocab_size: int = 12
    d_model: int = 256
    d_inner: int | None = None
    use_bias: bool = True
    train_freq: bool = True
    max_seq_len: int = 1024
    emb_dim: int = 3
    n_layer: int = 12
    num_inner_mlps: int = 2
    hyena_order: int = 2
    short_filter_order: int = 3
    filter_order: int = 64
    activation_freq: float = 1.0
    embed_dropout: float = 0.1
    hyena_dropout: float = 0.0
    hyena_filter_dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5
    pad_vocab_size_multiple: int = 8
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.d_inner is None:
            self.d_inner = 4 * self.d_model
        require_positive_ints(self, ("vocab_size", "d_model", "d_inner", "max_seq_len", "emb_dim", "n_layer",
                                     "filter_order", "short_filter_order", "pad_vocab_size_multiple"))
        mlps = self.num_inner_mlps
        require(isinstance(mlps, int) and not isinstance(mlps, bool) and mlps >= 0, "num_inner_mlps", mlps)
        require(self.hyena_order == 2, "hyena_order", self.hyena_order, "the released port supports 2")
        require(self.emb_dim % 2 == 1 and self.emb_dim >= 3, "emb_dim", self.emb_dim, "odd and >= 3: time, cosines, sines")
        for key in ("use_bias", "train_freq"):
            require(isinstance(getattr(self, key), bool), key, getattr(self, key))

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and LM head: vocab_size rounded up to pad_vocab_size_multiple (12 -> 16)."""
        m = self.pad_vocab_size_multiple
        return ((self.vocab_size + m - 1) // m) * m

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether the LM head shares the embedding matrix. Absent means True (the transformers
        default the port inherits); the released medium-160k config says false."""
        return extra_bool(self, "tie_word_embeddings", True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HyenaDNAConfig:
        """Config from a released config.json; keys the port does not read are kept in ``extra``."""
        model_type = d.get("model_type", "hyenadna")
        require(model_type == "hyenadna", "model_type", model_type, "expected 'hyenadna'")
        return from_dict_with_extra(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """The config.json form: the port's keys plus the bookkeeping keys read in."""
        return {**to_dict_with_extra(self), "model_type": "hyenadna"}
