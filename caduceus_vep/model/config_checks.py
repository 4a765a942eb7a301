"""Checks and the ``extra`` round trip shared by the dataclass configs of HyenaDNA and NT-v2.

Every refused setting raises ``ValueError("config key 'k' has unsupported value v (why)")``, so
the message names the key. Keys a model does not read are kept in the config's ``extra`` dict and
written back after the model's own keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

Config = TypeVar("Config")


def require(ok: bool, key: str, value: Any, why: str = "") -> None:
    """Refuse ``value`` of config key ``key`` unless ``ok``."""
    if not ok:
        raise ValueError(f"config key {key!r} has unsupported value {value!r}{' (' + why + ')' if why else ''}")


def require_positive_ints(config: Any, keys: Iterable[str]) -> None:
    """Each key an int >= 1 (a bool is not a number here)."""
    for key in keys:
        value = getattr(config, key)
        require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, value)


def extra_bool(config: Any, key: str, default: bool) -> bool:
    """A true/false setting kept in ``config.extra`` (``default`` when absent)."""
    value = config.extra.get(key, default)
    require(isinstance(value, bool), key, value)
    return value


def from_dict_with_extra(cls: type[Config], d: dict[str, Any]) -> Config:
    """``cls`` from a config.json dict: its own fields as arguments, every other key into ``extra``.

    ``tie_word_embeddings`` is validated now, not at first use.
    """
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in d.items() if k in names}
    config = cls(**known, extra={k: v for k, v in d.items() if k not in names})
    config.tie_word_embeddings  # noqa: B018
    return config


def to_dict_with_extra(config: Any) -> dict[str, Any]:
    """The config.json form: the dataclass fields, then the ``extra`` keys read in."""
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    out.update(config.extra)
    return out
