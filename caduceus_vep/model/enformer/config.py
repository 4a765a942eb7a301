"""Enformer settings, read from and written back to the released ``config.json`` (``model_type: enformer``).

The keys are those of enformer-pytorch's ``EnformerConfig`` (the released
``EleutherAI/enformer-official-rough`` folder: ``dim 1536``, ``depth 11``, ``heads 8``,
``target_length 896``, output heads human 5,313 / mouse 1,643, no ``use_tf_gamma`` key). Every
setting is checked here, before any tensor is built, so a mistyped or hostile ``config.json``
fails in microseconds naming the key:

- structure that enformer-pytorch would only reject deep inside a forward pass (or compute with
  silently wrong shapes) is refused: ``dim`` must be a multiple of ``heads`` and of
  ``dim_divisible_by`` (else the conv tower's last width is not ``dim``), ``dim // heads`` a
  multiple of 6 (the relative-position basis has 6 families), ``num_downsamples >= 3`` (the tower's
  width schedule divides by ``num_downsamples - 2``);
- ``use_tf_gamma`` must be false or absent: the paper's script passes ``use_tf_gamma=False`` (the
  TF gamma table only exists for 1,536 bins and would change the maths), and so do we;
  ``use_convnext`` must be false (enformer-pytorch ignores it: a true value claims a model it does
  not build);
- sizes are bounded: each at most :data:`SIZE_FACTOR` times the released value, the parameter count
  at most :data:`PARAMETER_FACTOR` times the released model's.

Dropout rates and ``use_checkpointing`` do not change inference maths (eval mode; activation
checkpointing only recomputes the forward pass during backward): they are kept for the round trip.
HF bookkeeping keys (``architectures``, ``torch_dtype``, ``transformers_version``...) go to
``extra`` and are written back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..config_checks import require, require_positive_ints

# Released EleutherAI/enformer-official-rough values (baselines.md), and how far beyond them a config may go.
RELEASED = {"dim": 1536, "depth": 11, "heads": 8, "attn_dim_key": 64, "target_length": 896, "output_head": 5313}
RELEASED_PARAMETERS = 251_221_292  # Enformer(EnformerConfig()) with the released heads: our own count
SIZE_FACTOR = 4
PARAMETER_FACTOR = 4
#: Relative-position basis families (exponential, central mask, gamma) times two (the signed copy).
POSITION_FEATURE_FAMILIES = 6


def _exponential_widths(start: int, end: int, num: int, divisible_by: int) -> list[int]:
    """The conv tower's channel schedule, computed as enformer-pytorch's ``exponential_linspace_int`` does."""
    base = math.exp(math.log(end / start) / (num - 1))
    return [int(round(start * base**i / divisible_by) * divisible_by) for i in range(num)]


@dataclasses.dataclass
class EnformerSettings:
    """Field names and defaults of enformer-pytorch's ``EnformerConfig`` (the released values)."""

    dim: int = 1536
    depth: int = 11
    heads: int = 8
    output_heads: dict[str, int] = dataclasses.field(default_factory=lambda: {"human": 5313, "mouse": 1643})
    target_length: int = 896
    attn_dim_key: int = 64
    dropout_rate: float = 0.4
    attn_dropout: float = 0.05
    pos_dropout: float = 0.01
    use_checkpointing: bool = False
    use_convnext: bool = False
    num_downsamples: int = 7
    dim_divisible_by: int = 128
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require_positive_ints(self, ("dim", "depth", "heads", "attn_dim_key", "num_downsamples", "dim_divisible_by"))
        for key in ("dim", "depth", "heads", "attn_dim_key"):
            limit = RELEASED[key] * SIZE_FACTOR
            require(getattr(self, key) <= limit, key, getattr(self, key), f"more than {SIZE_FACTOR}x the released {RELEASED[key]}")
        t = self.target_length
        require(isinstance(t, int) and not isinstance(t, bool) and (t == -1 or 1 <= t <= RELEASED["target_length"] * SIZE_FACTOR),
                "target_length", t, "-1 (no crop) or a bin count >= 1")
        require(3 <= self.num_downsamples <= 10, "num_downsamples", self.num_downsamples,
                "3..10: the tower's width schedule needs >= 2 conv blocks; 7 (128 bp bins) is released")
        require(self.dim % self.heads == 0, "heads", self.heads, f"must divide dim {self.dim}")
        require((self.dim // self.heads) % POSITION_FEATURE_FAMILIES == 0, "heads", self.heads,
                f"dim // heads = {self.dim // self.heads} must be a multiple of {POSITION_FEATURE_FAMILIES} (relative-position basis)")
        require(self.dim % 2 == 0, "dim", self.dim, "even: the stem is dim // 2 wide")
        require(self.dim % self.dim_divisible_by == 0, "dim_divisible_by", self.dim_divisible_by,
                f"must divide dim {self.dim}, else the conv tower does not end at dim channels")
        require(min(self.tower_widths) >= 1, "dim_divisible_by", self.dim_divisible_by, f"rounds a tower width to 0: {self.tower_widths}")
        heads = self.output_heads
        require(isinstance(heads, dict) and len(heads) >= 1 and all(isinstance(k, str) for k in heads), "output_heads", heads)
        for name, size in heads.items():
            require(isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= RELEASED["output_head"] * SIZE_FACTOR,
                    "output_heads", heads, f"head {name!r} size")
        for key in ("dropout_rate", "attn_dropout", "pos_dropout"):
            value = getattr(self, key)
            require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0, key, value)
        require(isinstance(self.use_checkpointing, bool), "use_checkpointing", self.use_checkpointing)
        require(self.use_convnext is False, "use_convnext", self.use_convnext, "enformer-pytorch does not build a ConvNeXt tower")
        gamma = self.extra.get("use_tf_gamma", False)
        require(gamma is False, "use_tf_gamma", gamma, "the paper's script runs use_tf_gamma=False, and only that is supported")
        model_type = self.extra.get("model_type", "enformer")
        require(model_type == "enformer", "model_type", model_type, "expected 'enformer'")
        limit = RELEASED_PARAMETERS * PARAMETER_FACTOR
        require(self.parameter_count() <= limit, "dim", self.dim,
                f"with depth {self.depth} and heads {self.heads}: about {self.parameter_count():,} parameters, "
                f"more than {PARAMETER_FACTOR}x the released model's {RELEASED_PARAMETERS:,}")

    @property
    def tower_widths(self) -> list[int]:
        """Channels after the stem and after each conv-tower block: ``[dim // 2, ...]`` (7 entries when released)."""
        return [self.dim // 2, *_exponential_widths(self.dim // 2, self.dim, self.num_downsamples - 1, self.dim_divisible_by)]

    @property
    def bin_bp(self) -> int:
        """Base pairs per output bin: every downsampling halves the length (2**7 = 128 released)."""
        return 2**self.num_downsamples

    @property
    def embedding_dim(self) -> int:
        """Width of the trunk output (after the final pointwise block): 2 * dim = 3,072 released."""
        return 2 * self.dim

    def parameter_count(self) -> int:
        """Trainable parameters of enformer-pytorch's Enformer with these settings (BatchNorm statistics excluded)."""
        half, widths, d = self.dim // 2, self.tower_widths, self.dim
        count = 4 * half * 15 + half  # stem conv (kernel 15)
        count += 2 * half + half * half + half + half * half  # stem residual ConvBlock(1) + attention pool
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            count += 2 * w_in + w_in * w_out * 5 + w_out  # BatchNorm + conv 5
            count += 2 * w_out + w_out * w_out + w_out  # residual BatchNorm + conv 1
            count += w_out * w_out  # attention pool logits
        key, value, rel = self.attn_dim_key * self.heads, d, d // self.heads
        per_layer = 2 * d + 2 * d * key + d * value + value * d + d + rel * key + 2 * key  # attention half
        per_layer += 2 * d + d * 2 * d + 2 * d + 2 * d * d + d  # feed-forward half
        count += self.depth * per_layer
        count += 2 * d + d * 2 * d + 2 * d  # final pointwise BatchNorm + conv 1
        count += sum(2 * d * n + n for n in self.output_heads.values())
        return count

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnformerSettings:
        """Settings from a released config.json; keys the model does not read are kept in ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        """The config.json form: the model's keys, then the bookkeeping keys read in (``model_type`` enformer)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["output_heads"] = dict(self.output_heads)
        out.update(self.extra)
        out.setdefault("model_type", "enformer")
        return out

    def package_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``enformer_pytorch.EnformerConfig``: ours, with ``use_tf_gamma=False`` and no checkpointing.

        Activation checkpointing is turned off whatever the file says: under ``no_grad`` it computes
        the same values, and ``checkpoint_sequential`` warns on every call in recent torch.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        fields["output_heads"] = dict(self.output_heads)
        fields.update(use_tf_gamma=False, use_checkpointing=False)
        return fields
