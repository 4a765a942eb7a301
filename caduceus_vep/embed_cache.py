"""A content-addressed cache of pooled features, shared by runs and configs on one machine.

Layout: ``<cache_dir>/<key>/key.json`` describes the key; ``<cache_dir>/<key>/<name>.parquet`` are
feature blocks (``caduceus_vep.feature_file.write_block``), each named by the hash of the (variant id,
context digest) pairs it holds, so writing the same block twice is one file, and concurrent jobs
(shards, runs) never write to the same temporary name.

The key folder is the hash of everything that decides a feature vector besides the sequence: the
weights (SHA-256), config and architecture (model family) of the model, the model's context
length, the pooling window and method (clamped mean), how the RC view is made, and the numeric path (device type and autocast dtype: a bf16 GPU
run does not reuse float32 CPU features). Within a folder a row is found by the variant id *and*
the SHA-256 of the exact ref context string that was embedded, so a different genome build or N
padding is a miss, not a silently wrong hit. The model's name and revision are recorded in
``key.json`` but are not part of the key: the same weights under another name are the same model.

**Integrity.** Every block records, in its parquet metadata (``features_sha256``), the SHA-256 of its
decoded content (``caduceus_vep.feature_file.block_checksum``: ids, context digests and the float32
bytes of the four matrices), and the key folder it belongs to (``cache_key``). A block is used only
when both match after reading it back; the check is on decoded values, so it also catches a flipped
bit that the parquet decoder turns into a different but valid float. A block that cannot be read
(truncated, corrupt footer, permissions), has no checksum, fails it or belongs to another key is
*quarantined*: moved to ``<cache_dir>/<key>/quarantine/`` (a warning names both paths) and its
variants are misses, so they are recomputed and stored again. A block is verified when a lookup
needs it; :meth:`FeatureCache.verify` checks every block at once. A corrupt ``key.json`` is moved
aside and rewritten; ``key.json`` is descriptive only, and the cache has no separate index (the
folder listing is the index), so deleting either loses nothing.

**Optional by design.** The cache never fails a job. A cache that cannot be written (disk full,
read-only file system, no permission, quota: any ``OSError`` while creating the folder, writing
``key.json`` or a block) logs one warning and stops storing for the rest of the job, which then runs
as without a cache (lookups of blocks already there still work); a cache folder that cannot be read
finds nothing.

Not covered by the key: batch size (batch composition can move floats in the last bits) and the
software versions. Delete the folder to start afresh; nothing in it is ever needed for correctness.
Format 2 added the checksums: format-1 folders (no checksums) are simply not used any more. Format 3
(the model interface) added the architecture and the clamped pooling rule (the edge token of a
window running off the context counts once per clamped index): folders of format 2 hold unclamped
means and are not used either.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import logging
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from caduceus_vep.atomic import write_text_atomic
from caduceus_vep.feature_file import (
    DIGEST_COLUMN,
    FeatureBlock,
    block_checksum,
    read_block,
    write_block,
)

log = logging.getLogger(__name__)

# Bump when the meaning of a stored vector (or the block format) changes. 2: checksums; 3: the model
# interface (architecture in the key, clamped pooling: edge tokens counted once per clamped index).
CACHE_FORMAT = 3
POOLING = "clamped_mean"
CHECKSUM_FIELD = "features_sha256"
QUARANTINE_DIR = "quarantine"
_QUARANTINE_SERIAL = itertools.count()  # unique names within one process (pid + time across processes)


def context_digest(ref_context: str) -> str:
    """First 32 hex digits of the SHA-256 of the ref context string."""
    return hashlib.sha256(ref_context.encode("ascii")).hexdigest()[:32]


def cache_key(model_provenance: dict, context_length: int, pool: tuple[int, int], rc_features: str,
              device_type: str, autocast_dtype: str, *, architecture: str = "caduceus",
              pooling_window: int | None = None) -> tuple[str, dict]:
    """``(key, fields)``: the folder name and what it stands for (written to ``key.json``).

    ``context_length`` is the model's own context (bp), ``pool`` the pooled token offsets around the
    SNP token, ``architecture`` the model family, ``pooling_window`` the window in bp.

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
        "architecture": architecture, "pooling_window": pooling_window,
    }
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    return key, fields


def _describe(exc: BaseException) -> str:
    """``ENOSPC: No space left on device``-style text for an OSError, the type and message otherwise."""
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{name}: {text}" if name else f"{type(exc).__name__}: {text}"


class FeatureCache:
    """One key folder of the cache; ``root=None`` is a disabled cache that finds nothing and stores nothing."""

    def __init__(self, root: str | os.PathLike[str] | None, key: str, fields: dict, description: dict | None = None) -> None:
        self.key = key
        self.folder = Path(root) / key if root else None
        # False once a write failed: the job goes on without storing (see the module docstring).
        self.writable = self.folder is not None
        # Bad blocks that could not be moved aside (read-only cache): skipped for the rest of the job.
        self._bad: set[Path] = set()
        self.quarantined: list[Path] = []
        if self.folder is not None:
            self._ensure_key_json(fields, description)

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    # ------------------------------------------------------------------ setup and failure handling

    def _ensure_key_json(self, fields: dict, description: dict | None) -> None:
        assert self.folder is not None
        path = self.folder / "key.json"
        try:
            if path.is_file():
                try:
                    existing = json.loads(path.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    existing = None
                if isinstance(existing, dict) and existing.get("key") == self.key:
                    return
                self._quarantine(path, "not a key.json of this key folder (corrupt)")
            write_text_atomic(path, json.dumps({"key": self.key, **fields, "first_written_by": description or {}},
                                               indent=2, sort_keys=True, default=str))
        except OSError as exc:
            self._write_failed(exc, f"writing {path}")
            try:
                usable = self.folder.is_dir()
            except OSError:
                usable = False
            if not usable:
                log.warning("feature cache folder %s does not exist and cannot be created: running without the cache",
                            self.folder)
                self.folder = None

    def _write_failed(self, exc: OSError, what: str) -> None:
        if self.writable:
            log.warning("feature cache %s cannot be written (%s, while %s): the job goes on without storing "
                        "features in the cache; cached blocks already there are still used", self.folder,
                        _describe(exc), what)
        self.writable = False

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move a bad file into ``quarantine/`` (or, if that fails, skip it for the rest of the job)."""
        assert self.folder is not None
        target = self.folder / QUARANTINE_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(_QUARANTINE_SERIAL)}-{path.name}"
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
        except FileNotFoundError:
            # Another job (a concurrent shard) moved it first, or it never existed.
            log.warning("feature cache: %s was %s; another job has already moved it aside", path, reason)
            return
        except OSError as exc:
            self._bad.add(path)
            log.warning("feature cache: %s is %s and cannot be moved aside (%s); it is ignored, its variants are "
                        "recomputed. Delete it by hand.", path, reason, _describe(exc))
            return
        self.quarantined.append(target)
        log.warning("feature cache: %s was %s; moved to %s, its variants are recomputed", path, reason, target)

    # ------------------------------------------------------------------ reading

    def files(self) -> list[Path]:
        """Finished block files (temporary names start with a dot and are skipped)."""
        if self.folder is None:
            return []
        try:
            if not self.folder.is_dir():
                return []
            names = sorted(p for p in self.folder.glob("*.parquet") if not p.name.startswith("."))
        except OSError as exc:
            log.warning("feature cache %s cannot be listed (%s): nothing is taken from it", self.folder, _describe(exc))
            return []
        return [p for p in names if p not in self._bad]

    def _read_verified(self, path: Path) -> FeatureBlock | None:
        """The block at ``path`` if it reads back whole and matches its checksum and key; else quarantine it."""
        try:
            block, meta = read_block(path)
        except Exception as exc:  # noqa: BLE001 - any failure to decode an optional cache block makes it a miss
            self._quarantine(path, f"unreadable ({_describe(exc)})")
            return None
        recorded = meta.get(CHECKSUM_FIELD) if isinstance(meta, dict) else None
        if not recorded:
            self._quarantine(path, "without a checksum")
            return None
        if recorded != block_checksum(block):
            self._quarantine(path, "corrupt (its content does not match its checksum)")
            return None
        if meta.get("cache_key") != self.key:
            self._quarantine(path, f"a block of another key folder ({meta.get('cache_key')!r})")
            return None
        return block

    def lookup(self, variant_ids: set[str]) -> dict[tuple[str, str], tuple[FeatureBlock, int]]:
        """Cached rows of ``variant_ids``: ``{(variant_id, context digest): (block, row)}``.

        Only verified blocks are used; bad ones are quarantined and their rows are simply absent.
        """
        found: dict[tuple[str, str], tuple[FeatureBlock, int]] = {}
        for path in self.files():
            try:
                # The id columns alone first: most blocks hold none of the wanted variants.
                keys = pq.read_table(path, columns=["variant_id", DIGEST_COLUMN])
                ids = keys.column("variant_id").to_pylist()
            except FileNotFoundError:
                continue  # quarantined by a concurrent job since the listing
            except Exception as exc:  # noqa: BLE001 - see _read_verified
                self._quarantine(path, f"unreadable ({_describe(exc)})")
                continue
            if not variant_ids.intersection(ids):
                continue
            block = self._read_verified(path)
            if block is None:
                continue
            # Rows from the verified block, not from the unverified id columns read above.
            for row, (vid, digest) in enumerate(zip(block.variant_id, block.context_sha256)):
                if vid in variant_ids:
                    found.setdefault((vid, digest), (block, row))
        return found

    def verify(self) -> dict[str, int]:
        """Read and check every block (quarantining bad ones): ``{"ok": n, "quarantined": m}``."""
        ok = bad = 0
        for path in self.files():
            if self._read_verified(path) is None:
                bad += 1
            else:
                ok += 1
        return {"ok": ok, "quarantined": bad}

    # ------------------------------------------------------------------ writing

    def store(self, block: FeatureBlock, metadata: dict) -> Path | None:
        """Add a block (atomically); returns its path, or None when disabled, not writable or empty.

        A failed write (disk full, read-only, no permission) is logged once and never raised.
        """
        if self.folder is None or not self.writable or not len(block):
            return None
        name = hashlib.sha256("\n".join(f"{v}\t{d}" for v, d in zip(block.variant_id, block.context_sha256)).encode()).hexdigest()[:24]
        path = self.folder / f"{name}.parquet"
        try:
            write_block(block, path, {"cache_key": self.key, **metadata, CHECKSUM_FIELD: block_checksum(block)})
        except OSError as exc:  # pyarrow's IO errors are OSErrors too
            self._write_failed(exc, f"writing {path}")
            return None
        return path

    def size_bytes(self) -> int:
        """Bytes of the finished block files in this key folder."""
        total = 0
        for p in self.files():
            try:
                total += p.stat().st_size
            except OSError:
                pass
        return total
