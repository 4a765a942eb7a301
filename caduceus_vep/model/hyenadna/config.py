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


def _require(ok: bool, key: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"config key {key!r} has unsupported value {value!r}")


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
        for key in ("vocab_size", "d_model", "d_inner", "max_seq_len", "emb_dim", "n_layer", "filter_order",
                    "short_filter_order", "pad_vocab_size_multiple"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config key {key!r} has unsupported value {value!r}")
        if isinstance(self.num_inner_mlps, bool) or not isinstance(self.num_inner_mlps, int) or self.num_inner_mlps < 0:
            raise ValueError(f"config key 'num_inner_mlps' has unsupported value {self.num_inner_mlps!r}")
        if self.hyena_order != 2:
            raise ValueError(f"config key 'hyena_order' has unsupported value {self.hyena_order!r} (the released port supports 2)")
        if self.emb_dim % 2 == 0 or self.emb_dim < 3:
            raise ValueError(f"config key 'emb_dim' has unsupported value {self.emb_dim!r} (odd and >= 3: time, cosines, sines)")
        for key in ("use_bias", "train_freq"):
            _require(isinstance(getattr(self, key), bool), key, getattr(self, key))

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and LM head: vocab_size rounded up to pad_vocab_size_multiple (12 -> 16)."""
        m = self.pad_vocab_size_multiple
        return ((self.vocab_size + m - 1) // m) * m

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether the LM head shares the embedding matrix. Absent means True (the transformers
        default the port inherits); the released medium-160k config says false."""
        value = self.extra.get("tie_word_embeddings", True)
        _require(isinstance(value, bool), "tie_word_embeddings", value)
        return value

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HyenaDNAConfig:
        """Config from a released config.json; keys the port does not read are kept in ``extra``."""
        d = dict(d)
        if d.get("model_type", "hyenadna") != "hyenadna":
            raise ValueError(f"config key 'model_type' has unsupported value {d['model_type']!r} (expected 'hyenadna')")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: d.pop(k) for k in list(d) if k not in names}
        config = cls(**d, extra=extra)
        config.tie_word_embeddings  # noqa: B018  (validates the value now, not at first use)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The config.json form: the port's keys plus the bookkeeping keys read in."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        out["model_type"] = "hyenadna"
        return out
