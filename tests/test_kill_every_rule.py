"""SIGKILL at every rule of the demo, at the worst moments, then resume to the uninterrupted result.

The fault-injection hook (``caduceus_vep.atomic.kill_point``) kills the job's whole process group,
Snakemake included, as a power cut or an OOM kill of the session would:

- ``<rule>@write``: the job's outputs are fully written to their temporary names, the first rename
  onto a real output has not happened (for the scored VCF: its index is in place, the VCF is not);
- ``<rule>@end`` (for ``END_RULES``): every output of the job is in place, Snakemake has not yet
  recorded the job as done.

The run is the demo with one model (Caduceus-PS) on its benchmark dataset (every rule has jobs: a
scored VCF is written for every dataset), compared with the shared demo run's rows of that model. One
workdir is killed again and again (each run dies at the first pending kill point it meets, so the
order follows the workflow and jobs running in parallel die at arbitrary points); after every kill the
next run must plan the killed rule again (Snakemake never takes its outputs as finished: its "Job
stats" table is a dry run's plan), and the final run's tables equal a clean run's byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_workflow import SNAKEMAKE, assert_same_as_demo, copy_workflow, demo_subset_config, demo_tables, snakemake

from caduceus_vep.atomic import KILL_AT_ENV, KILL_LOG_ENV

pytestmark = pytest.mark.slow
# "@end" relies on Snakemake's own incomplete-job marker, the same for every rule: three representative
# rules (a scattered GPU job, a classifier fit, the final scoring) keep the test short.
END_RULES = ("embed", "evaluate", "score")
DATASETS = ["eqtl"]


def planned_rules(workdir: Path, *config: str) -> set[str]:
    """Rules with at least one job a plain run would execute now."""
    out = snakemake(workdir, "-n", "--cores", "1", *config).stdout
    return {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith(("rule ", "localrule "))} - {"all"}


def planned_by_run(log: str) -> set[str]:
    """The rules of a real run's "Job stats" table (printed before its first job): what it set out to execute."""
    lines = log.splitlines()
    assert "Job stats:" in lines, f"no job plan in the run's log:\n{log[-3000:]}"
    rules = set()
    for line in lines[lines.index("Job stats:") + 3:]:  # the title, the column names, the rule under them
        if not line.split() or line.split()[0] == "total":
            break
        rules.add(line.split()[0])
    return rules - {"all"}


def run_until_killed(workdir: Path, pending: set[str], kill_log: Path, *config: str) -> tuple[str | None, set[str]]:
    """One `snakemake --cores 2` run that dies at the first pending kill point: the point (None if the run
    finished) and the rules the run planned."""
    env = {**os.environ, KILL_AT_ENV: ",".join(sorted(pending)), KILL_LOG_ENV: str(kill_log)}
    before = kill_log.read_text().splitlines() if kill_log.exists() else []
    proc = subprocess.run([*SNAKEMAKE, "--cores", "2", *config], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900, start_new_session=True)
    after = kill_log.read_text().splitlines() if kill_log.exists() else []
    planned = planned_by_run(proc.stdout + proc.stderr)
    if len(after) == len(before):
        assert proc.returncode == 0, f"run failed without a kill ({proc.returncode}):\n{proc.stderr[-4000:]}"
        return None, planned
    assert proc.returncode != 0, "the process group was killed, yet snakemake reported success"
    return after[len(before)], planned  # a parallel job may log its own kill point in the same instant; the first one counts


def release_lock(workdir: Path, *config: str, first: bool) -> None:
    """The killed Snakemake's lock: `snakemake --unlock`, as the README says after a kill, the first time;
    later, the same removal of .snakemake/locks without the 3 CPU-seconds of another Snakemake start."""
    if first:
        snakemake(workdir, "--unlock", *config)
        assert not list((workdir / ".snakemake/locks").glob("*")), "--unlock left lock files"
    else:
        for lock in (workdir / ".snakemake/locks").glob("*"):
            lock.unlink()


def test_sigkill_at_every_rule_loses_nothing_and_resumes_to_the_clean_result(request, tmp_path):
    workdir = copy_workflow(tmp_path / "killed")
    config = ("--configfile", demo_subset_config(workdir, ["caduceus_ps"], datasets=DATASETS))
    rules = planned_rules(workdir, *config)
    assert set(END_RULES) <= rules, rules
    pending = {f"{rule}@write" for rule in rules} | {f"{rule}@end" for rule in END_RULES}
    kill_log = tmp_path / "kills.log"
    killed: list[str] = []
    for _ in range(len(pending) + 1):
        point, planned = run_until_killed(workdir, pending, kill_log, *config)
        if killed:
            rule = killed[-1].split("@")[0]
            assert rule in planned, f"after a SIGKILL at {killed[-1]}, Snakemake took the killed job's outputs as finished"
        else:
            assert planned == rules, "the first run planned other work than the dry run"
        if point is None:
            break
        killed.append(point)
        pending -= set(kill_log.read_text().splitlines())
        release_lock(workdir, *config, first=len(killed) == 1)
    assert not pending, f"kill points never reached: {sorted(pending)} (killed at {killed})"
    assert planned_rules(workdir, *config) == set(), "the last run left work undone"
    # Each rerun job removed its killed attempt's temporary files (the cache folder may keep some).
    assert not list((workdir / "results/demo").rglob(".*.tmp*")), "temporary files of killed jobs left behind"
    demo_workdir = request.getfixturevalue("demo_workdir")  # only now: the shared run goes on beside ours
    assert_same_as_demo(workdir / "results/demo", demo_workdir / "results/demo", demo_tables(DATASETS))
