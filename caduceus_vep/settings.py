"""The configuration schema as the one source of defaults, for the workflow and the library alike.

``config/schema/config.schema.yaml`` documents every key and holds every default. Snakemake fills
them with ``validate(config, schema, set_default=True)``; library callers (the CLI, notebooks) get
the same values from :func:`with_defaults` and :func:`section_defaults`, so no dataclass or
``dict.get(key, default)`` carries a second copy that could drift.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schema" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that the schema or a cross-key check refuses; the message names the key."""


@functools.cache
def schema() -> dict:
    """The parsed JSON schema (YAML on disk)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(validator_class):
    # The jsonschema recipe for defaults: set each absent property's default, then validate (and so
    # descend into) the filled value, which fills nested defaults too.
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def with_defaults(config: dict, *, subschema: dict | None = None) -> dict:
    """A deep copy of ``config`` validated against the schema with every absent default filled in.

    Raises :class:`ConfigError` naming the offending key path.
    """
    filled = copy.deepcopy(config)
    errors = sorted(_Validator(subschema or schema()).iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"config key {where}: {first.message}")
    return filled


def section_defaults(*path: str) -> dict[str, Any]:
    """The defaults of one config section, e.g. ``section_defaults("windows")`` or ``("evaluate", "sound")``.

    Required keys without a default are absent from the result.
    """
    node = schema()
    for part in path:
        node = node["properties"][part] if part in node.get("properties", {}) else node["additionalProperties"]
    out: dict[str, Any] = {}
    for name, sub in node.get("properties", {}).items():
        if "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
    return with_defaults(out, subschema={k: v for k, v in node.items() if k != "required"})


def dataset_defaults() -> dict[str, Any]:
    """Defaults of one ``datasets.<name>`` entry (everything but ``path``)."""
    return section_defaults("datasets", "*")


def _check_inside(path: str | None, key: str) -> None:
    """A location the run writes to must stay inside the working directory: no absolute path, no '..'."""
    if path is None:
        return
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts or not parts or str(path).strip() in ("", "."):
        raise ConfigError(f"config key {key}: {path!r} must be a relative path inside the workflow directory "
                          "(absolute paths, '.' and '..' are refused so that a run never writes elsewhere); "
                          "link a folder into the workflow directory to use another disk")


def check_config(config: dict) -> None:
    """Cross-key checks the schema cannot express; raises :class:`ConfigError` naming the key."""
    # Every location the run writes: results/<run_name> (the schema checks run_name), caches, downloads.
    _check_inside(config.get("embed", {}).get("cache_dir"), "embed.cache_dir")
    _check_inside(config.get("model_cache"), "model_cache")
    for name, dataset in config["datasets"].items():
        if dataset.get("url"):
            _check_inside(dataset["path"], f"datasets.{name}.path")
    if config["genome"].get("url"):
        _check_inside(config["genome"]["fasta"], "genome.fasta")
    if (config.get("tss") or {}).get("url"):
        _check_inside(config["tss"]["gtf"], "tss.gtf")
    models = [m["name"] for m in config["models"]]
    if len(set(models)) != len(models):
        raise ConfigError(f"config key models: model names must be unique, got {models}")
    datasets = config["datasets"]
    for name, dataset in datasets.items():
        chosen = dataset.get("classifiers")
        if isinstance(chosen, str):
            if chosen not in datasets:
                raise ConfigError(f"config key datasets.{name}.classifiers: no dataset named {chosen!r} "
                                  f"(datasets: {sorted(datasets)})")
            if not datasets[chosen].get("evaluate"):
                raise ConfigError(f"config key datasets.{name}.classifiers: dataset {chosen!r} does not train classifiers; "
                                  f"set datasets.{chosen}.evaluate: true (it needs 0/1 labels) or give bundle paths")
        elif isinstance(chosen, dict):
            unknown = sorted(set(chosen) - set(models))
            if unknown:
                raise ConfigError(f"config key datasets.{name}.classifiers: {unknown} are not models of this config ({models})")
