"""Shard split, checkpoint chunks, resume after an interruption, and the merge's exactly-once check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_embed import windows_for

from caduceus_vep import embed, shards
from caduceus_vep.demo import tiny_config
from caduceus_vep.embed import EmbedSettings, read_block
from caduceus_vep.model import CaduceusConfig, build_caduceus, save_caduceus
from caduceus_vep.shards import ShardJob, chunk_bounds, merge_shards, run_shard, shard_bounds
from caduceus_vep.windows import WindowSpec


@pytest.mark.parametrize("n", [0, 1, 7, 232])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_shards_tile_the_rows_exactly_once(n, k):
    covered = [i for s in range(k) for i in range(*shard_bounds(n, s, k))]
    assert covered == list(range(n))


def test_invalid_shard_and_chunk():
    with pytest.raises(ValueError):
        shard_bounds(10, 2, 2)
    with pytest.raises(ValueError):
        chunk_bounds(10, 0)
    assert chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]


@pytest.fixture(params=[True, False], ids=["ps", "ph"])
def setup(request, small_genome, tmp_path):
    fasta, seqs = small_genome
    checkpoint = tmp_path / "ckpt"
    save_caduceus(build_caduceus(CaduceusConfig.from_dict(tiny_config(rcps=request.param)), seed=5), checkpoint)
    windows = windows_for(fasta, seqs, WindowSpec(context_length=64, pooling_window=16), list(range(300, 4_500, 400)))
    windows_path = tmp_path / "windows.parquet"
    windows.to_parquet(windows_path, index=False)
    return {"fasta": fasta, "windows": windows, "windows_path": windows_path, "model": {"name": "m", "path": str(checkpoint)}}


def run(setup, tmp_path, shard, n_shards, name, cache=None, every=2):
    job = ShardJob(shard=shard, shards=n_shards, checkpoint_every=every, work_dir=tmp_path / f"work-{name}-{shard}", cache_dir=cache)
    out = tmp_path / f"{name}-{shard}.parquet"
    summary = run_shard(setup["windows_path"], setup["fasta"], setup["model"], EmbedSettings(batch_size=2), job, out)
    return out, summary


def test_sharded_run_equals_one_job_and_merge_orders_by_windows(setup, tmp_path):
    one, _ = run(setup, tmp_path, 0, 1, "one")
    parts = [run(setup, tmp_path, k, 3, "three")[0] for k in range(3)]
    merge_shards([one], setup["windows_path"], tmp_path / "one.parquet")
    merge_shards(parts[::-1], setup["windows_path"], tmp_path / "three.parquet")  # order of inputs does not matter
    a, meta = read_block(tmp_path / "one.parquet")
    b, _ = read_block(tmp_path / "three.parquet")
    assert a.variant_id == b.variant_id == setup["windows"]["variant_id"].tolist()
    for column in embed.FEATURE_COLUMNS:
        np.testing.assert_array_equal(a.matrices[column], b.matrices[column])  # chunks are shard-relative, batch 2
    assert meta["n_variants"] == len(setup["windows"]) and "seconds" not in meta
    assert not (tmp_path / "work-one-0").exists()  # checkpoints are removed once the shard file is written


def test_merge_refuses_duplicates_and_gaps(setup, tmp_path):
    parts = [run(setup, tmp_path, k, 2, "two")[0] for k in range(2)]
    with pytest.raises(ValueError, match="1 missing|missing"):
        merge_shards(parts[:1], setup["windows_path"], tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="duplicated"):
        merge_shards([parts[0], parts[0], parts[1]], setup["windows_path"], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_interrupted_shard_resumes_from_checkpoints_with_identical_result(setup, tmp_path, monkeypatch):
    clean, _ = run(setup, tmp_path, 0, 1, "clean")
    real = embed.embed_sequences
    calls = {"n": 0}

    def dies_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")  # like a kill: not an ordinary error
        return real(*args, **kwargs)

    monkeypatch.setattr(embed, "embed_sequences", dies_on_third_chunk)  # run_shard imports it when it runs
    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path, 0, 1, "resumed")
    parts = sorted((tmp_path / "work-resumed-0").glob("chunk-*.parquet"))
    assert [p.name for p in parts] == ["chunk-000000.parquet", "chunk-000001.parquet"]
    assert not (tmp_path / "resumed-0.parquet").exists()
    monkeypatch.setattr(embed, "embed_sequences", real)
    out, summary = run(setup, tmp_path, 0, 1, "resumed")
    assert summary["attempt"]["resumed"] == 4 and summary["attempt"]["computed"] == len(setup["windows"]) - 4
    a, _ = read_block(clean)
    b, _ = read_block(out)
    assert a.variant_id == b.variant_id
    for column in embed.FEATURE_COLUMNS:
        np.testing.assert_array_equal(a.matrices[column], b.matrices[column])


def test_checkpoints_of_other_work_are_discarded(setup, tmp_path):
    work = tmp_path / "work-x-0"
    work.mkdir()
    (work / "manifest.json").write_text('{"fingerprint": "something else"}')
    (work / "chunk-000000.parquet").write_text("not parquet")
    out, summary = run(setup, tmp_path, 0, 1, "x")
    assert summary["attempt"]["resumed"] == 0 and summary["attempt"]["computed"] == len(setup["windows"])


def test_progress_bar_lines_go_to_the_log(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="caduceus_vep.shards"):
        bar = shards.progress_bar(10, "demo", interval_s=0)
        bar.update(5)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("demo:" in line and "5/10" in line and "variant/s" in line for line in lines), lines
    assert all("\r" not in line for line in lines)


def test_dedup_ratio_in_merge_metadata(setup, tmp_path):
    part, _ = run(setup, tmp_path, 0, 1, "d")
    ids = setup["windows"]["variant_id"].tolist()
    variants = pd.DataFrame({"variant_id": ids * 3 + ["dropped-by-windows"]})
    variants.to_parquet(tmp_path / "variants.parquet", index=False)
    merge_shards([part], setup["windows_path"], tmp_path / "m.parquet", variants_path=tmp_path / "variants.parquet")
    _, meta = read_block(tmp_path / "m.parquet")
    assert meta["dedup"] == {"rows": 3 * len(ids), "unique_variants": len(ids), "rows_per_unique_variant": 3.0}
