"""Kill the demo run mid-embedding (SIGKILL), resume it, and get exactly an uninterrupted run's features;
then a second run under another run_name takes every feature from the cache without running the model.

The killed run asks for the embeddings only: everything downstream of them is a function of the features
alone, and the kill-every-rule and Slurm tests resume whole runs to the demo's tables."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_workflow import SNAKEMAKE, assert_same_features, copy_workflow, demo_subset_config, snakemake

CACHED_MODELS = ("caduceus_ps",)  # the second run name: one model's shards (the cache is keyed alike for all)
# The killed run: the embeddings of the demo's two baselines (the Caduceus models' second runs are in the
# kill-every-rule, disk-full and Slurm tests) on its benchmark dataset, compared with the shared demo run's.
RESUMED_MODELS = ("hyenadna", "ntv2")
DATASETS = ("eqtl",)
TARGETS = [f"results/demo/{ds}/embeddings/{m}.parquet" for ds in DATASETS for m in RESUMED_MODELS]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean_run(demo_workdir) -> Path:
    return demo_workdir


def kill_when_a_checkpoint_appears(workdir: Path, *args: str, timeout_s: float = 600) -> Path:
    """Start the demo run, SIGKILL its whole process group once a shard has checkpointed a chunk."""
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            chunks = sorted((workdir / "results/demo").glob("*/embeddings/work/*/*/chunk-*.parquet"))
            if chunks:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return chunks[0]
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before any checkpoint appeared")
            time.sleep(0.1)
        pytest.fail("no checkpoint chunk appeared in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def comparable(meta: dict) -> dict:
    """Embedding metadata without the checkout's absolute path (the two runs live in different folders)."""
    return {**meta, "model": {k: v for k, v in meta["model"].items() if k != "resolved_path"}}


def test_killed_run_resumes_from_checkpoints_to_the_uninterrupted_result(request, tmp_path):
    workdir = copy_workflow(tmp_path / "killed")
    config = ("--configfile", demo_subset_config(workdir, list(RESUMED_MODELS), datasets=list(DATASETS)))
    chunk = kill_when_a_checkpoint_appears(workdir, *config, "--", *TARGETS)
    # <dataset>/embeddings/work/<model>/shard-<k>-of-<n>/chunk-*.parquet
    model, shard_dir, dataset = chunk.parent.parent.name, chunk.parent.name, chunk.parents[4].name
    shard_file = workdir / f"results/demo/{dataset}/embeddings/shards/{model}/{shard_dir.removeprefix('shard-')}.parquet"
    assert not shard_file.exists(), "the kill came too late: the shard had finished"
    time.sleep(1)  # nothing may still be running (the job was in the killed process group)
    survivors = sorted((workdir / "results/demo").glob("*/embeddings/work/*/*/chunk-*.parquet"))
    assert chunk in survivors

    snakemake(workdir, "--unlock", *config)
    snakemake(workdir, "--cores", "2", "--rerun-incomplete", *config, "--", *TARGETS)
    log = (workdir / f"results/demo/logs/{dataset}/embed/{model}.{shard_dir}.log").read_text()
    resumed = int(re.search(r"(\d+) resumed from checkpoints", log).group(1))
    assert resumed >= 32, log  # at least the chunk we saw (embed.checkpoint_every: 32) was not recomputed

    clean_run = request.getfixturevalue("demo_workdir")  # only now: the shared run goes on beside ours
    for name in RESUMED_MODELS:
        for ds in DATASETS:
            path = f"results/demo/{ds}/embeddings/{name}.parquet"
            meta_a, meta_b = assert_same_features(clean_run / path, workdir / path)
            assert comparable(meta_a) == comparable(meta_b)


def test_second_run_name_takes_every_feature_from_the_cache(clean_run):
    targets = [f"results/demo_again/eqtl/embeddings/{m}.parquet" for m in CACHED_MODELS]
    snakemake(clean_run, "--cores", "2", "--config", "run_name=demo_again", "--", *targets)
    for name in CACHED_MODELS:
        for shard in (0, 1):
            log = (clean_run / f"results/demo_again/logs/eqtl/embed/{name}.shard-{shard}-of-2.log").read_text()
            assert re.search(r"done: (\d+) variants, 0 computed, \1 from the cache", log), log
        meta_a, meta_b = assert_same_features(clean_run / f"results/demo/eqtl/embeddings/{name}.parquet",
                                              clean_run / f"results/demo_again/eqtl/embeddings/{name}.parquet")
        assert meta_a == meta_b
