"""Model configuration, read from and written back to the released ``config.json`` layout.

Only the settings the released checkpoints use are implemented; any other value of a setting that
changes the computation raises ``ValueError`` naming the key, so an unexpected checkpoint can never
be run with silently different maths.

Sizes are bounded before any tensor is built, so a hostile or mistyped ``config.json`` (d_model
10^7, n_layer 10^5) is refused in microseconds instead of spending minutes in the allocator: each
size may exceed the largest value in the released Caduceus family (:data:`RELEASED_MAX`: the
``kuleshov-group/caduceus-{ph,ps}_seqlen-{1k,131k}_d_model-{118,256}_n_layer-{4,16}`` checkpoints)
by at most :data:`SIZE_FACTOR` (16x), and the parameter count by at most :data:`PARAMETER_FACTOR`
(64x the released 131k models' 7,725,312, about 494 M parameters or 2 GB in float32). Floats
(``norm_epsilon``, the ``dt_*`` settings) must be finite.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .tokenizer import COMPLEMENT_MAP

# Largest value of each size in the released Caduceus family, and how far beyond it a config may go.
RELEASED_MAX = {
    "d_model": 256, "n_layer": 16, "vocab_size": 16, "pad_vocab_size_multiple": 8,
    "ssm_cfg.d_state": 16, "ssm_cfg.d_conv": 4, "ssm_cfg.expand": 2, "ssm_cfg.dt_rank": 16,
}
SIZE_FACTOR = 16
RELEASED_PARAMETERS = 7_725_312  # caduceus-{ph,ps}_seqlen-131k_d_model-256_n_layer-16
PARAMETER_FACTOR = 64

_SSM_KEYS = {
    "d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale",
    "dt_init_floor", "conv_bias", "bias", "use_fast_path",
}


def _check_type(key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    # bool is an int subclass; a bool where a number belongs is a config error, not a number.
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        raise ValueError(f"config key {key!r} has unsupported value {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config key {key!r} has unsupported value {value!r} (not finite)")


def _check_size(key: str, value: int) -> None:
    """Refuse a size beyond the released family's by more than SIZE_FACTOR (see the module docstring)."""
    limit = RELEASED_MAX[key] * SIZE_FACTOR
    if value > limit:
        raise ValueError(f"config key {key!r} = {value} is more than {SIZE_FACTOR}x the largest released Caduceus "
                         f"model's ({RELEASED_MAX[key]}); refusing it before building the model (at most {limit})")


@dataclasses.dataclass
class SsmConfig:
    """Mamba v1 mixer settings (``ssm_cfg`` in config.json)."""

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init: str = "random"
    dt_scale: float = 1.0
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    use_fast_path: bool = True  # a CUDA implementation detail; recorded, has no effect on the maths

    def __post_init__(self) -> None:
        for key in ("d_state", "d_conv", "expand"):
            _check_type(f"ssm_cfg.{key}", getattr(self, key), int)
            if getattr(self, key) < 1:
                raise ValueError(f"config key 'ssm_cfg.{key}' has unsupported value {getattr(self, key)!r}")
            _check_size(f"ssm_cfg.{key}", getattr(self, key))
        if self.dt_rank != "auto":
            _check_type("ssm_cfg.dt_rank", self.dt_rank, int)
            if self.dt_rank < 1:
                raise ValueError(f"config key 'ssm_cfg.dt_rank' has unsupported value {self.dt_rank!r}")
            _check_size("ssm_cfg.dt_rank", self.dt_rank)
        for key in ("dt_min", "dt_max", "dt_scale", "dt_init_floor"):
            _check_type(f"ssm_cfg.{key}", getattr(self, key), (int, float))
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"config keys 'ssm_cfg.dt_min'/'dt_max' have unsupported values {self.dt_min!r}/{self.dt_max!r}")
        if self.dt_init not in ("random", "constant"):
            raise ValueError(f"config key 'ssm_cfg.dt_init' has unsupported value {self.dt_init!r}")
        for key in ("conv_bias", "bias", "use_fast_path"):
            _check_type(f"ssm_cfg.{key}", getattr(self, key), bool)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SsmConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - _SSM_KEYS)
        if unknown:
            raise ValueError(f"config key 'ssm_cfg' has unsupported entries {unknown} (values {[d[k] for k in unknown]!r})")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CaduceusConfig:
    """The settings of a Caduceus model; field names and defaults follow the released config.json."""

    d_model: int
    n_layer: int
    vocab_size: int
    rcps: bool = False
    pad_vocab_size_multiple: int = 8
    rms_norm: bool = True
    fused_add_norm: bool = True
    residual_in_fp32: bool = True  # upstream default when the key is absent; released files say false
    norm_epsilon: float = 1e-5
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    complement_map: dict[int, int] | None = None
    ssm_cfg: SsmConfig = dataclasses.field(default_factory=SsmConfig)
    initializer_cfg: dict[str, Any] | None = None
    model_type: str = "caduceus"
    architectures: list[str] | None = None
    torch_dtype: str | None = "float32"

    def __post_init__(self) -> None:
        for key in ("d_model", "n_layer", "vocab_size", "pad_vocab_size_multiple"):
            _check_type(key, getattr(self, key), int)
            if getattr(self, key) < 1:
                raise ValueError(f"config key {key!r} has unsupported value {getattr(self, key)!r}")
            _check_size(key, getattr(self, key))
        for key in ("rcps", "rms_norm", "fused_add_norm", "residual_in_fp32", "bidirectional",
                    "bidirectional_weight_tie"):
            _check_type(key, getattr(self, key), bool)
        _check_type("norm_epsilon", self.norm_epsilon, (int, float))
        if not self.norm_epsilon > 0:
            raise ValueError(f"config key 'norm_epsilon' has unsupported value {self.norm_epsilon!r} (must be > 0)")
        # The settings the released checkpoints use are the only ones implemented.
        if not self.rms_norm:
            raise ValueError("config key 'rms_norm' has unsupported value False (LayerNorm is not implemented)")
        if not self.bidirectional:
            raise ValueError("config key 'bidirectional' has unsupported value False")
        if self.bidirectional_strategy != "add":
            raise ValueError(f"config key 'bidirectional_strategy' has unsupported value {self.bidirectional_strategy!r}")
        if not self.bidirectional_weight_tie:
            raise ValueError("config key 'bidirectional_weight_tie' has unsupported value False")
        if self.model_type != "caduceus":
            raise ValueError(f"config key 'model_type' has unsupported value {self.model_type!r}")
        if isinstance(self.ssm_cfg, dict):
            self.ssm_cfg = SsmConfig.from_dict(self.ssm_cfg)
        self.complement_map = self._normalise_complement_map(self.complement_map)
        # Each size can be within bounds while their product is not (d_model and expand and n_layer).
        limit = RELEASED_PARAMETERS * PARAMETER_FACTOR
        if self.parameter_count > limit:
            raise ValueError(
                f"config has {self.parameter_count:,} parameters (d_model={self.d_model}, n_layer={self.n_layer}, "
                f"ssm_cfg.expand={self.ssm_cfg.expand}, ssm_cfg.d_state={self.ssm_cfg.d_state}), more than "
                f"{PARAMETER_FACTOR}x the released Caduceus models' {RELEASED_PARAMETERS:,}; refusing it before building the model")

    def _normalise_complement_map(self, raw: Any) -> dict[int, int]:
        """Int-keyed map covering the padded vocabulary; ids it does not name map to themselves."""
        if raw is None:
            raw = dict(enumerate(COMPLEMENT_MAP))
        if not isinstance(raw, dict):
            raise ValueError(f"config key 'complement_map' has unsupported value {raw!r}")  # noqa: TRY004 - config errors are ValueErrors
        try:
            mapping = {int(k): int(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise ValueError(f"config key 'complement_map' has unsupported value {raw!r}") from None
        size = self.padded_vocab_size
        if sorted(mapping) != list(range(len(mapping))) or len(mapping) > size:
            raise ValueError(f"config key 'complement_map' must have keys 0..n-1 with n <= {size}, got {raw!r}")
        for i in range(len(mapping), size):
            mapping[i] = i
        # RC equivariance needs complementing twice to be the identity.
        if any(not 0 <= v < size or mapping[v] != k for k, v in mapping.items()):
            raise ValueError(f"config key 'complement_map' has unsupported value {raw!r} (not an involution)")
        return mapping

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding: vocab_size rounded up to pad_vocab_size_multiple (as upstream)."""
        m = self.pad_vocab_size_multiple
        return -(-self.vocab_size // m) * m

    @property
    def parameter_count(self) -> int:
        """Parameters of the model this config builds (the LM head is tied to the embedding), from the sizes alone."""
        ssm, d, inner = self.ssm_cfg, self.d_model, self.d_inner
        projections = 2 * inner * d + (2 * inner if ssm.bias else 0) + d * inner + (d if ssm.bias else 0)
        per_direction = (inner * ssm.d_state + inner + inner * ssm.d_conv + (inner if ssm.conv_bias else 0)
                         + (self.dt_rank + 2 * ssm.d_state) * inner + self.dt_rank * inner + inner)
        layer = projections + 2 * per_direction + d  # in/out projections tied across the two directions; one norm
        return self.n_layer * layer + self.padded_vocab_size * d + d

    @property
    def d_inner(self) -> int:
        return self.ssm_cfg.expand * self.d_model

    @property
    def dt_rank(self) -> int:
        r = self.ssm_cfg.dt_rank
        return math.ceil(self.d_model / 16) if r == "auto" else int(r)

    @property
    def complement_list(self) -> list[int]:
        return [self.complement_map[i] for i in range(self.padded_vocab_size)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaduceusConfig:
        """Config from a released-style dict; keys this model does not know (HF adds some) are ignored."""
        missing = [k for k in ("d_model", "n_layer", "vocab_size") if k not in d]
        if missing:
            raise ValueError(f"config is missing required keys {missing}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("bidirectional_strategy", "add") is None:
            kwargs["bidirectional_strategy"] = "add"  # upstream treats null as "add"
        kwargs["ssm_cfg"] = SsmConfig.from_dict(d.get("ssm_cfg"))
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Released-style dict (complement_map with string keys, ssm_cfg as a nested dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["ssm_cfg"] = self.ssm_cfg.to_dict()
        out["complement_map"] = {str(k): v for k, v in sorted(self.complement_map.items())}
        out["initializer_cfg"] = dict(self.initializer_cfg) if self.initializer_cfg is not None else None
        out["architectures"] = list(self.architectures) if self.architectures is not None else None
        return out
