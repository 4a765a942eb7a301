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
    """One ``models[]`` entry (defaults filled by the schema)."""

    name: str
    path: str
    rc_rule: str
    label: str = ""
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.rc_rule not in RC_RULES:
            raise ValueError(f"model {self.name}: rc_rule must be one of {RC_RULES}, got {self.rc_rule!r}")

    @classmethod
    def from_config(cls, entry: dict | ModelSpec) -> ModelSpec:
        if isinstance(entry, ModelSpec):
            return entry
        return cls(name=entry["name"], path=str(entry["path"]), rc_rule=entry["rc_rule"],
                   label=entry.get("label") or entry["name"], revision=entry.get("revision"))

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "path": self.path, "revision": self.revision, "rc_rule": self.rc_rule}


def read_model_record(path: str | os.PathLike[str]) -> dict:
    """The JSON record written by the ``fetch_model`` rule."""
    record = json.loads(Path(path).read_text())
    if not Path(record["local_path"]).is_dir():
        raise FileNotFoundError(f"{path}: the checkpoint folder {record['local_path']} it points at is gone; "
                                "re-run the fetch_model rule (delete the record)")
    return record
