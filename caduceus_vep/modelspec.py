"""A model entry of the config (``models[]``) as a typed value, and where its checkpoint lives locally.

``path`` is a local checkpoint folder or a Hugging Face repo id. The ``fetch_model`` rule resolves
it once, on the submitting machine, into a record (``results/<run>/models/<name>.json``: source,
revision, resolved commit, local folder, weights SHA-256); compute jobs load only from the record's
local folder, so they never reach the Hub.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RC_RULES = ("ps", "ph", "forward")


@dataclass(frozen=True)
class ModelSpec:
    """One ``models[]`` entry (defaults filled by the schema).

    ``architecture``: the model family (``caduceus_vep.model.registry``; None = inferred from the
    checkpoint's ``config.json`` ``model_type``); ``context_length``: bp fed to this model (None =
    the windows' context); ``batch_size``: variants per model call (None = ``embed.batch_size`` /
    ``zero_shot.batch_size``).
    """

    name: str
    path: str
    rc_rule: str
    label: str = ""
    revision: str | None = None
    architecture: str | None = None
    context_length: int | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.rc_rule not in RC_RULES:
            raise ValueError(f"model {self.name}: rc_rule must be one of {RC_RULES}, got {self.rc_rule!r}")
        if self.context_length is not None and (self.context_length < 2 or self.context_length % 2):
            raise ValueError(f"model {self.name}: context_length must be an even number >= 2, got {self.context_length}")

    @classmethod
    def from_config(cls, entry: dict | ModelSpec) -> ModelSpec:
        if isinstance(entry, ModelSpec):
            return entry
        context = entry.get("context_length")
        batch = entry.get("batch_size")
        return cls(name=entry["name"], path=str(entry["path"]), rc_rule=entry["rc_rule"],
                   label=entry.get("label") or entry["name"], revision=entry.get("revision"),
                   architecture=entry.get("architecture"), context_length=int(context) if context else None,
                   batch_size=int(batch) if batch else None)

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "path": self.path, "revision": self.revision, "rc_rule": self.rc_rule,
                "architecture": self.architecture, "context_length": self.context_length, "batch_size": self.batch_size}


def resolve_model_entries(config: dict) -> list[dict]:
    """The config's ``models`` with ``context_length`` filled from ``windows.context_length`` where unset."""
    default = int(config.get("windows", {}).get("context_length") or 0) or None
    return [{**m, "context_length": m.get("context_length") or default} for m in config["models"]]


def run_context_length(config: dict) -> int:
    """The largest model context of the run: the windows stage keeps the variants every model can score."""
    contexts = [m["context_length"] for m in resolve_model_entries(config) if m["context_length"]]
    return max(contexts) if contexts else int(config["windows"]["context_length"])


def read_model_record(path: str | os.PathLike[str]) -> dict:
    """The JSON record written by the ``fetch_model`` rule."""
    record = json.loads(Path(path).read_text())
    if not Path(record["local_path"]).is_dir():
        raise FileNotFoundError(f"{path}: the checkpoint folder {record['local_path']} it points at is gone; "
                                "re-run the fetch_model rule (delete the record)")
    return record
