"""A results disk that fills up mid-run: a one-line message, nothing half-written kept, a clean resume.

The demo's Caduceus-Ph embeddings of its benchmark dataset (variants, windows, model record, two embed
shards, their merge) are made with the ``results/`` folder on a small tmpfs (as root), nearly filled by a
ballast file before the run, so an embedding job hits ENOSPC (the feature cache lives there too). After
the failure, deleting the ballast and re-running must give the shared demo run's features bit for bit
(everything downstream is a function of them; the kill-every-rule test resumes whole runs to the tables).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_kill_every_rule import planned_rules
from test_workflow import assert_same_features, copy_workflow, demo_subset_config, snakemake

pytestmark = pytest.mark.slow
TMPFS_BYTES = 8 * 2**20
FREE_BYTES = 400 * 2**10  # less than the run writes (~600 KiB), more than its first jobs need (~250 KiB)
DATASETS = ("eqtl",)  # the benchmark dataset only: the scored VCF's jobs write through the same code
EMBEDDINGS = "results/demo/eqtl/embeddings/caduceus_ph.parquet"


@pytest.fixture
def small_results_disk(tmp_path):
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI must run the disk-full test, which mounts a tmpfs and needs root")
        pytest.skip("mounting a small tmpfs as the results folder needs root: run the suite as root to include it")
    workdir = copy_workflow(tmp_path / "wf")
    results = workdir / "results"
    results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(results)], check=True)
    try:
        yield workdir
    finally:
        subprocess.run(["umount", "-l", str(results)], check=False)


def fill_leaving(folder: Path, free: int) -> Path:
    stat = os.statvfs(folder)
    ballast = folder / "ballast"
    ballast.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - free))
    return ballast


def test_full_results_disk_fails_with_one_line_and_resumes_to_the_clean_result(request, small_results_disk):
    workdir = small_results_disk
    config = ("--configfile", demo_subset_config(workdir, ["caduceus_ph"], datasets=list(DATASETS)))
    config = (*config, "--", EMBEDDINGS)  # "--": --configfile takes several values
    ballast = fill_leaving(workdir / "results", FREE_BYTES)
    failed = snakemake(workdir, "--cores", "2", *config, check=False)
    assert failed.returncode != 0, "the demo fitted in the space left: shrink FREE_BYTES"
    said = failed.stdout + failed.stderr
    assert "no space left on the device" in said, said[-3000:]
    assert "Logging error" not in said
    # Every job that could not write is planned again: no half-written output is taken as finished.
    stuck = planned_rules(workdir, *config)
    assert stuck, "nothing left to do after a failed run"
    leftovers = [p for p in (workdir / "results").rglob(".*.tmp*")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    ballast.unlink()
    snakemake(workdir, "--cores", "2", *config)
    demo_workdir = request.getfixturevalue("demo_workdir")  # only now: the shared run goes on beside ours
    assert_same_features(workdir / EMBEDDINGS, demo_workdir / EMBEDDINGS)
