"""Fault injection on the feature cache: flipped bits, truncation, lost key.json, read-only and full disks.

In every case the job finishes and its features equal those of a run without any cache; a bad
block is moved to ``quarantine/`` with a warning naming it, and a cache that cannot be written
only costs the reuse.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_shards import run, setup  # noqa: F401  (fixture)

from caduceus_vep import embed_cache
from caduceus_vep.embed_cache import (
    CHECKSUM_FIELD,
    QUARANTINE_DIR,
    FeatureCache,
    cache_key,
    context_digest,
)
from caduceus_vep.feature_file import (
    FEATURE_COLUMNS,
    FeatureBlock,
    block_checksum,
    read_block,
    write_block,
)

pytestmark = pytest.mark.timeout(120)

PROV = {"weights_sha256": "c" * 64, "config": {"d_model": 8}}


def _same_features(a_path: Path, b_path: Path) -> None:
    a, _ = read_block(a_path)
    b, _ = read_block(b_path)
    assert a.variant_id == b.variant_id and a.context_sha256 == b.context_sha256
    for column in FEATURE_COLUMNS:
        np.testing.assert_array_equal(a.matrices[column], b.matrices[column])


def _key_folder(cache: Path) -> Path:
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    return folder


def _blocks(cache: Path) -> list[Path]:
    return sorted(p for p in _key_folder(cache).glob("*.parquet") if not p.name.startswith("."))


def _quarantined(cache: Path) -> list[Path]:
    q = _key_folder(cache) / QUARANTINE_DIR
    return sorted(q.iterdir()) if q.is_dir() else []


@pytest.fixture()
def clean(setup, tmp_path):  # noqa: F811
    """Features of a run without a cache (the reference) and a populated cache folder."""
    reference, _ = run(setup, tmp_path, 0, 1, "reference")
    cache = tmp_path / "cache"
    populated, summary = run(setup, tmp_path, 0, 1, "populate", cache=cache)
    assert summary["attempt"]["computed"] == len(setup["windows"])
    _same_features(reference, populated)
    return reference, cache


# --------------------------------------------------------------------------- unit level: every byte


def _small_block(n: int = 3, width: int = 4) -> FeatureBlock:
    rng = np.random.default_rng(3)
    return FeatureBlock([f"v{i}" for i in range(n)], [context_digest(f"ACGT{i}") for i in range(n)],
                        {c: rng.standard_normal((n, width)).astype(np.float32) for c in FEATURE_COLUMNS})


def test_checksum_changes_with_every_field_and_survives_the_round_trip(tmp_path):
    block = _small_block()
    write_block(block, tmp_path / "b.parquet", {})
    back, _ = read_block(tmp_path / "b.parquet")
    assert block_checksum(back) == block_checksum(block)
    digest = block_checksum(block)
    for column in FEATURE_COLUMNS:
        other = FeatureBlock(block.variant_id, block.context_sha256, {c: m.copy() for c, m in block.matrices.items()})
        other.matrices[column].view(np.uint32)[1, 2] ^= 1  # one bit of one float
        assert block_checksum(other) != digest, column
    assert block_checksum(FeatureBlock(["v0", "v2", "v1"], block.context_sha256, block.matrices)) != digest
    assert block_checksum(FeatureBlock(block.variant_id, [d[::-1] for d in block.context_sha256], block.matrices)) != digest


def test_no_single_bit_flip_anywhere_in_a_block_gives_a_wrong_hit(tmp_path, caplog):
    """Flip one bit at every third byte of a stored block: each lookup returns the exact values or a miss."""
    key, fields = cache_key(PROV, 8, (0, 8), "ph_rc_pass", "cpu", "float32")
    block = _small_block()
    pristine = FeatureCache(tmp_path / "pristine", key, fields).store(block, {"model": "m"})
    data = pristine.read_bytes()
    cache = FeatureCache(tmp_path / "flipped", key, fields)
    target = cache.folder / pristine.name
    wanted = set(block.variant_id)
    outcomes = {"hit": 0, "miss": 0}
    with caplog.at_level(logging.WARNING, logger="caduceus_vep.embed_cache"):
        for position in range(0, len(data), 3):
            flipped = bytearray(data)
            flipped[position] ^= 1 << (position % 8)
            target.write_bytes(bytes(flipped))
            found = cache.lookup(wanted)
            for (vid, digest), (hit, row) in found.items():
                i = block.variant_id.index(vid)
                assert digest == block.context_sha256[i], position
                for column in FEATURE_COLUMNS:
                    np.testing.assert_array_equal(hit.matrices[column][row], block.matrices[column][i], err_msg=str(position))
            outcomes["hit" if found else "miss"] += 1
            target.unlink(missing_ok=True)  # quarantined, or still there after a harmless flip
    # Most flips must be caught (the rest fall in padding/statistics the reader never decodes).
    assert outcomes["miss"] > len(data) // 6, outcomes
    # A miss without quarantine is a flip inside a variant id: the block no longer names a wanted variant.
    assert outcomes["miss"] - 5 <= len(cache.quarantined) <= outcomes["miss"]
    assert all(p.parent == cache.folder / QUARANTINE_DIR for p in cache.quarantined)
    assert any(str(target) in r.getMessage() and "quarantine" in r.getMessage() for r in caplog.records)


def test_blocks_without_checksum_or_of_another_key_are_not_used(tmp_path):
    key, fields = cache_key(PROV, 8, (0, 8), "ph_rc_pass", "cpu", "float32")
    cache = FeatureCache(tmp_path, key, fields)
    block = _small_block()
    write_block(block, cache.folder / "old-format.parquet", {"cache_key": key})  # format 1: no checksum
    write_block(block, cache.folder / "stray.parquet", {"cache_key": "x" * 24, CHECKSUM_FIELD: block_checksum(block)})
    assert cache.lookup(set(block.variant_id)) == {}
    assert sorted(p.name.split("-", 3)[3] for p in cache.quarantined) == ["old-format.parquet", "stray.parquet"]
    assert cache.files() == []


def test_verify_checks_every_block(tmp_path):
    key, fields = cache_key(PROV, 8, (0, 8), "ph_rc_pass", "cpu", "float32")
    cache = FeatureCache(tmp_path, key, fields)
    good = cache.store(_small_block(2), {})
    bad = cache.store(_small_block(3), {})
    bad.write_bytes(bad.read_bytes()[:-40])
    assert cache.verify() == {"ok": 1, "quarantined": 1}
    assert cache.files() == [good]


# --------------------------------------------------------------------------- whole shard jobs


def _flip_a_feature_byte(path: Path) -> None:
    """Flip one bit in the middle of the compressed ``ref_fwd`` values (not in padding or statistics)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata.row_group(0)
    column = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema.startswith("ref_fwd"))
    data = bytearray(path.read_bytes())
    data[column.data_page_offset + column.total_compressed_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_bits_in_cached_blocks_are_recomputed(setup, clean, tmp_path, caplog):  # noqa: F811
    reference, cache = clean
    blocks = _blocks(cache)
    for path in blocks:
        _flip_a_feature_byte(path)
    with caplog.at_level(logging.WARNING, logger="caduceus_vep.embed_cache"):
        out, summary = run(setup, tmp_path, 0, 1, "after-flip", cache=cache)
    _same_features(reference, out)
    assert summary["attempt"]["computed"] == len(setup["windows"])
    moved = _quarantined(cache)
    assert len(moved) == len(blocks)
    assert all(any(str(p) in r.getMessage() and "quarantine" in r.getMessage() for r in caplog.records) for p in blocks)
    # The recomputed rows went back into the cache (same names, good content): no model pass next time.
    assert _blocks(cache) == blocks
    _, again = run(setup, tmp_path, 0, 1, "after-flip-2", cache=cache)
    assert again["attempt"]["computed"] == 0


def test_truncated_block_is_quarantined_not_fatal(setup, clean, tmp_path):  # noqa: F811
    reference, cache = clean
    victim = _blocks(cache)[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    out, summary = run(setup, tmp_path, 0, 1, "after-truncation", cache=cache)
    _same_features(reference, out)
    assert 0 < summary["attempt"]["computed"] < len(setup["windows"])
    assert [p.name.endswith(victim.name) for p in _quarantined(cache)] == [True]
    out2, summary2 = run(setup, tmp_path, 0, 1, "after-truncation-2", cache=cache)  # it used to fail every later run
    _same_features(reference, out2)
    assert summary2["attempt"]["computed"] == 0


@pytest.mark.parametrize("damage", ["deleted", "garbage", "empty"])
def test_lost_or_corrupt_key_json_loses_nothing(setup, clean, tmp_path, damage):  # noqa: F811
    reference, cache = clean
    key_json = _key_folder(cache) / "key.json"
    if damage == "deleted":
        key_json.unlink()
    else:
        key_json.write_bytes(b"\x00{not json" if damage == "garbage" else b"")
    out, summary = run(setup, tmp_path, 0, 1, f"key-{damage}", cache=cache)
    _same_features(reference, out)
    assert summary["attempt"]["computed"] == 0  # the blocks do not depend on key.json
    assert json.loads(key_json.read_text())["key"] == _key_folder(cache).name
    assert len(_quarantined(cache)) == (0 if damage == "deleted" else 1)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_unwritable_cache_degrades_to_no_cache(setup, tmp_path, monkeypatch, caplog, code):  # noqa: F811
    reference, _ = run(setup, tmp_path, 0, 1, "reference")

    def fails(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[1] if len(args) > 1 else args[0]))

    monkeypatch.setattr(embed_cache, "write_block", fails)
    monkeypatch.setattr(embed_cache, "write_text_atomic", fails)  # key.json in the constructor too
    with caplog.at_level(logging.WARNING, logger="caduceus_vep.embed_cache"):
        out, summary = run(setup, tmp_path, 0, 1, "unwritable", cache=tmp_path / "cache")
    _same_features(reference, out)
    assert summary["attempt"]["computed"] == len(setup["windows"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(errno.errorcode[code] in w and "cannot be written" in w for w in warnings), warnings
    assert sum("cannot be written" in w for w in warnings) == 1  # said once, not once per chunk


def test_cache_root_that_is_a_file_means_no_cache(setup, tmp_path, caplog):  # noqa: F811
    reference, _ = run(setup, tmp_path, 0, 1, "reference")
    (tmp_path / "cache").write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="caduceus_vep.embed_cache"):
        out, _ = run(setup, tmp_path, 0, 1, "file-root", cache=tmp_path / "cache")
    _same_features(reference, out)
    assert any("running without the cache" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- real read-only and full file systems


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A tiny tmpfs at ``folder`` (root only); skips the test where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, text=True, timeout=20, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=20, check=False)


def _make_read_only(folder: Path) -> contextlib.AbstractContextManager:
    """Read-only for real: a remount as root (root ignores permission bits), chmod otherwise."""
    if os.geteuid() == 0:
        @contextlib.contextmanager
        def remount():
            with tmpfs(folder.parent / "ro", "4m") as ro:
                shutil.copytree(folder, ro / folder.name)
                subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True, timeout=20)
                yield ro / folder.name
        return remount()

    @contextlib.contextmanager
    def chmodded():
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    return chmodded()


def test_read_only_cache_still_serves_hits_and_bad_blocks_are_skipped(setup, clean, tmp_path, caplog):  # noqa: F811
    reference, cache = clean
    victim = _blocks(cache)[0]
    victim.write_bytes(victim.read_bytes()[:100])  # cannot be moved aside on a read-only disk
    with _make_read_only(cache) as ro_cache, caplog.at_level(logging.WARNING, logger="caduceus_vep.embed_cache"):
        out, summary = run(setup, tmp_path, 0, 1, "read-only", cache=ro_cache)
        assert (_key_folder(ro_cache) / victim.name).exists()  # still there, but not used
    _same_features(reference, out)
    assert 0 < summary["attempt"]["computed"] < len(setup["windows"])  # the intact blocks were used
    messages = [r.getMessage() for r in caplog.records]
    assert any("cannot be moved aside" in m and victim.name in m for m in messages), messages
    assert any("cannot be written" in m for m in messages), messages


@pytest.mark.parametrize("room", ["none", "key_json_only"])
def test_full_cache_disk_degrades_to_no_cache(setup, tmp_path, caplog, room):  # noqa: F811
    reference, _ = run(setup, tmp_path, 0, 1, "reference")
    with tmpfs(tmp_path / "small", "64k") as small, caplog.at_level(logging.WARNING, logger="caduceus_vep.embed_cache"):
        filler = small / "filler"
        with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # fill the disk to the last byte
                f.write(b"\0" * 1024)
        if room == "key_json_only":
            filler.write_bytes(b"\0" * max(0, filler.stat().st_size - 8192))  # a page or two free
        out, summary = run(setup, tmp_path, 0, 1, f"full-{room}", cache=small / "cache")
        leftovers = [p for p in (small / "cache").rglob(".*")] if (small / "cache").exists() else []
    _same_features(reference, out)
    assert summary["attempt"]["computed"] == len(setup["windows"])
    assert any("ENOSPC" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert leftovers == []  # no half-written temporary files
