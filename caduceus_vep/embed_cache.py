"""A content-addressed cache of pooled features, shared by runs and configs on one machine.

Layout: ``<cache_dir>/<key>/key.json`` describes the key; ``<cache_dir>/<key>/<name>.parquet`` are
feature blocks (``caduceus_vep.embed.write_block``), each named by the hash of the (variant id,
context digest) pairs it holds, so writing the same block twice is one file, and concurrent jobs
(shards, runs) never write to the same temporary name.

The key folder is the hash of everything that decides a feature vector besides the sequence: the
weights (SHA-256) and architecture of the model, the context length, the pooling window and
method, how the RC view is made, and the numeric path (device type and autocast dtype: a bf16 GPU
run does not reuse float32 CPU features). Within a folder a row is found by the variant id *and*
the SHA-256 of the exact ref context string that was embedded, so a different genome build or N
padding is a miss, not a silently wrong hit. The model's name and revision are recorded in
``key.json`` but are not part of the key: the same weights under another name are the same model.

Not covered by the key: batch size (batch composition can move floats in the last bits) and the
software versions. Delete the folder to start afresh; nothing in it is ever needed for correctness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pyarrow.parquet as pq

from caduceus_vep.atomic import write_text_atomic
from caduceus_vep.embed import DIGEST_COLUMN, FeatureBlock, read_block, write_block

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the meaning of a stored vector changes
POOLING = "mean"


def context_digest(ref_context: str) -> str:
    """First 32 hex digits of the SHA-256 of the ref context string."""
    return hashlib.sha256(ref_context.encode("ascii")).hexdigest()[:32]


def cache_key(model_provenance: dict, context_length: int, pool: tuple[int, int], rc_features: str,
              device_type: str, autocast_dtype: str) -> tuple[str, dict]:
    """``(key, fields)``: the folder name and what it stands for (written to ``key.json``).

    Raises ``ValueError`` when the model has no weights checksum (a model not loaded from a
    checkpoint cannot be cached safely).
    """
    weights = model_provenance.get("weights_sha256")
    if not weights:
        raise ValueError("the model has no weights_sha256 in its provenance; it cannot be cached")
    # CPU runs never autocast (see embed.autocast_context), so every CPU run shares one numeric path.
    precision = autocast_dtype if device_type == "cuda" else "float32"
    fields = {
        "format": CACHE_FORMAT, "weights_sha256": weights, "model_config": model_provenance.get("config", {}),
        "context_length": int(context_length), "pool": [int(pool[0]), int(pool[1])], "pooling": POOLING,
        "rc_features": rc_features, "device_type": device_type, "precision": precision,
    }
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    return key, fields


class FeatureCache:
    """One key folder of the cache; ``root=None`` is a disabled cache that finds nothing and stores nothing."""

    def __init__(self, root: str | os.PathLike[str] | None, key: str, fields: dict, description: dict | None = None) -> None:
        self.key = key
        self.folder = Path(root) / key if root else None
        if self.folder is not None and not (self.folder / "key.json").exists():
            write_text_atomic(self.folder / "key.json", json.dumps({"key": key, **fields, "first_written_by": description or {}},
                                                                   indent=2, sort_keys=True, default=str))

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def files(self) -> list[Path]:
        """Finished block files (temporary names start with a dot and are skipped)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.parquet") if not p.name.startswith("."))

    def lookup(self, variant_ids: set[str]) -> dict[tuple[str, str], tuple[FeatureBlock, int]]:
        """Cached rows of ``variant_ids``: ``{(variant_id, context digest): (block, row)}``."""
        found: dict[tuple[str, str], tuple[FeatureBlock, int]] = {}
        for path in self.files():
            keys = pq.read_table(path, columns=["variant_id", DIGEST_COLUMN])
            ids, digests = keys.column("variant_id").to_pylist(), keys.column(DIGEST_COLUMN).to_pylist()
            if not variant_ids.intersection(ids):
                continue
            block, _ = read_block(path)
            for row, (vid, digest) in enumerate(zip(ids, digests)):
                if vid in variant_ids:
                    found.setdefault((vid, digest), (block, row))
        return found

    def store(self, block: FeatureBlock, metadata: dict) -> Path | None:
        """Add a block (atomically); returns its path, or None when disabled or empty."""
        if self.folder is None or not len(block):
            return None
        name = hashlib.sha256("\n".join(f"{v}\t{d}" for v, d in zip(block.variant_id, block.context_sha256)).encode()).hexdigest()[:24]
        path = self.folder / f"{name}.parquet"
        write_block(block, path, {"cache_key": self.key, **metadata})
        return path

    def size_bytes(self) -> int:
        """Bytes of the finished block files in this key folder."""
        return sum(p.stat().st_size for p in self.files())
