"""A real single-node Slurm cluster (tests/slurm/cluster.sh; fixture ``slurm_cluster`` in conftest.py):
GPU jobs see their CUDA_VISIBLE_DEVICES, accounting records every job, a cancelled and a timed-out job
are recorded as such; then the demo runs with ``--profile slurm``, one embed shard cancelled mid-shard
(scancel, as a preemption does) and one killed by its runtime limit, and ends with the local run's table.

Needs root (and apt-get when the packages are missing); skipped otherwise, never on CI.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_workflow import SNAKEMAKE, assert_same_as_demo, assert_same_features, copy_workflow, demo_subset_config, demo_tables

pytestmark = pytest.mark.slow

# The demo's paper table: the one path of the workflow's output layout this test names. The other
# tables are its siblings, embeddings and shard work folders sit under its dataset folder, and logs
# are found by name under results/ (in a path naming that folder when there are several datasets).
DEMO_TABLE = "results/demo/eqtl/tables/vep_auroc.tsv"
DATASET_DIR = Path(DEMO_TABLE).parents[1]
# The demo with Caduceus-Ph and its w/o Equiv. row (the other models' jobs are the same rules; the
# kill-every-rule test reruns Caduceus-PS's whole run) on its benchmark dataset (a scored VCF's jobs are
# the same rules too), compared with the shared local demo run's rows of them. Its two embed shards are
# the two interrupted: one cancelled, one killed at its time limit.
MODELS = ("caduceus_ph",)
# Checkpoint chunks of the Slurm run: small, so that a shard of the tiny demo models (a few seconds of
# work) is still running when the test sees its first chunk and interrupts it. (With one variant per
# model call on the CPU the chunking does not change any feature, so the tables stay the demo's.)
CHECKPOINT_EVERY = 4
# Rules that must run on the submitting machine (compute nodes need no internet; merges and the
# report are cheap): none of them may become a Slurm job.
LOCAL_RULES = ("fetch_variants", "fetch_genome", "prepare_genome", "fetch_tss", "fetch_model", "embed_merge", "report")
# The environment switch asked of the library: a job given gpu=1 logs its CUDA_VISIBLE_DEVICES and runs
# on the CPU instead of requiring CUDA (only for this test: the cluster's GPUs are fake). Until the
# library has it, the test asks Slurm for the GPU with gres=gpu:1 and leaves Snakemake's gpu resource 0.
GPU_JOBS_ON_CPU_ENV = "CADUCEUS_VEP_GPU_JOBS_ON_CPU"


def library_has_gpu_on_cpu_switch() -> bool:
    sources = [*(REPO / "caduceus_vep").rglob("*.py"), *(REPO / "workflow_scripts").glob("*.py")]
    return any(GPU_JOBS_ON_CPU_ENV in path.read_text() for path in sources)


# --- Slurm helpers ------------------------------------------------------------------------------------

def sbatch(cluster, *args: str, wrap: str) -> int:
    out = cluster.run("sbatch", "--parsable", "-A", cluster.account, "-p", cluster.partition, *args, "--wrap", wrap)
    return int(out.stdout.strip().split(";")[0])


def sacct(cluster, *args: str) -> list[dict[str, str]]:
    fields = ["JobIDRaw", "JobName", "Comment", "State", "AllocTRES", "Elapsed", "Timelimit", "ExitCode"]
    out = cluster.run("sacct", "-X", "-n", "-P", "--format=" + ",".join(fields), *args).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
    for row in rows:
        row["State"] = row["State"].split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return rows


def wait_for_state(cluster, job_id: int, states: set[str], timeout: float) -> dict[str, str]:
    """Poll accounting until the job is in one of ``states`` (slurmdbd records lag a second or two)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        rows = sacct(cluster, "-j", str(job_id))
        if rows:
            last = rows[0]
            if last["State"] in states:
                return last
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not in {states} after {timeout}s: {last}")


def gpu_env(cluster) -> dict[int, set[str]]:
    """CUDA_VISIBLE_DEVICES per job id, as the task prolog saw it in each task's environment."""
    seen: dict[int, set[str]] = {}
    if cluster.gpu_env_log.exists():
        for line in cluster.gpu_env_log.read_text().splitlines():
            job, _, devices = line.partition(" ")
            if job.isdigit():
                seen.setdefault(int(job), set()).add(devices)
    return seen


# --- job level -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def time_limited_job(slurm_cluster) -> int:
    """A job that outlives its 1-minute limit (Slurm's shortest). Submitted first, checked last
    (test_time_limit_kill_is_recorded_as_timeout), so its minute overlaps the other tests."""
    return sbatch(slurm_cluster, "-t", "1", "--mem=50", "-o", "/dev/null", wrap="sleep 600")


@pytest.fixture(scope="module")
def gpu_jobs(slurm_cluster, time_limited_job, tmp_path_factory) -> dict[int, str]:
    out = tmp_path_factory.mktemp("gpu_jobs")
    jobs = {}
    for i in range(2):
        job = sbatch(slurm_cluster, "--gpus=1", "-t", "1", "--mem=50", "-o", str(out / f"{i}.out"),
                     wrap='echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"')
        jobs[job] = out / f"{i}.out"
    for job in jobs:
        wait_for_state(slurm_cluster, job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"}, 120)
    return {job: path.read_text() for job, path in jobs.items()}


def test_gpu_jobs_see_their_cuda_visible_devices(slurm_cluster, gpu_jobs):
    for job, output in gpu_jobs.items():
        devices = re.search(r"CUDA_VISIBLE_DEVICES=(\S+)", output).group(1)
        assert devices in {str(i) for i in range(slurm_cluster.gpus)}, (job, output)
        assert gpu_env(slurm_cluster)[job] == {devices}  # the task prolog saw the same
    # More GPUs than the node has is refused at submission, as on a real cluster.
    too_many = slurm_cluster.run("sbatch", "-A", slurm_cluster.account, f"--gpus={slurm_cluster.gpus + 1}", "--wrap", "true", check=False)
    assert too_many.returncode != 0 and "not available" in too_many.stderr


def test_accounting_records_the_jobs_and_their_gpu(slurm_cluster, gpu_jobs):
    rows = {int(r["JobIDRaw"]): r for r in sacct(slurm_cluster, "-j", ",".join(map(str, gpu_jobs)))}
    assert set(rows) == set(gpu_jobs)
    for row in rows.values():
        assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0"
        assert "gres/gpu=1" in row["AllocTRES"], row


def test_job_cancelled_mid_run_is_recorded_as_cancelled(slurm_cluster, time_limited_job):
    job = sbatch(slurm_cluster, "-t", "5", "--mem=50", "-o", "/dev/null", wrap="sleep 600")
    wait_for_state(slurm_cluster, job, {"RUNNING"}, 60)
    slurm_cluster.run("scancel", str(job))
    wait_for_state(slurm_cluster, job, {"CANCELLED"}, 60)


# --- the demo on Slurm ---------------------------------------------------------------------------------

@dataclass
class SlurmDemo:
    workdir: Path
    jobs: list[dict[str, str]]          # sacct rows of the run's Slurm jobs
    cancelled: dict = field(default_factory=dict)   # {"job": id, "shard": "model/shard-k-of-n", "chunks": n}
    timed_out: dict = field(default_factory=dict)
    wall_s: float = 0.0
    gpu_switch: bool = False
    passed: set = field(default_factory=set)  # shards caught too late (their work was done)


def site_profile(workdir: Path, cluster, gpu_switch: bool) -> None:
    """What a site edits in profiles/slurm (here, for a 2-CPU node with two fake GPUs), in the copy only."""
    path = workdir / "profiles/slurm/config.v8+.yaml"
    profile = yaml.safe_load(path.read_text())
    profile["default-resources"].update(slurm_account=cluster.account, slurm_partition=cluster.partition, mem_mb=2000)
    # A small cluster answers at once: check job states every 2 s instead of waiting 40 s first.
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["slurm-keep-successful-logs"] = True
    profile["latency-wait"] = 5
    for rule in ("embed", "zero_shot"):
        resources = profile["set-resources"][rule]
        assert resources["gpu"] == 1  # the repository's profile asks a GPU for each of these jobs
        resources.update(cpus_per_gpu=1, mem_mb=3000)
        if not gpu_switch:
            # --gres=gpu:1 instead of --gpus=1: the same GPU, but Snakemake's gpu resource stays 0. Inside
            # the job the jobstep plugin sizes its srun by cpus_per_task unless SLURM_GPUS is set (--gpus).
            del resources["gpu"], resources["cpus_per_gpu"]
            resources.update(gres="gpu:1", cpus_per_task=1)
    profile["set-resources"]["evaluate"]["mem_mb"] = 2000
    # The node has 2 CPUs: threads as many as each job gets (a job asking 8 would never start).
    profile["set-threads"].update(embed=1, evaluate=2)
    assert profile["slurm-status-command"] == "squeue"  # sacct mistakes "CANCELLED by <uid>" for running
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


def is_demo_embed_job(comment: str, model: str | None = None, shard: str | None = None) -> bool:
    """The plugin's job comment is rule_<rule>_wildcards_<wildcard values joined by _>, e.g.
    rule_embed_wildcards_caduceus_ps_0; with a dataset wildcard, the demo's dataset must be among them."""
    prefix = "rule_embed_wildcards_"
    if not comment.startswith(prefix):
        return False
    values = comment[len(prefix):]
    models = [model] if model else MODELS
    for m in models:
        match = re.fullmatch(rf"(?:(.*)_)?{m}_(\d+)", values) or re.fullmatch(rf"(?:(.*)_)?{m}_(\d+)_(.*)", values)
        if match and (shard is None or match.group(2) == shard):
            extra = "_".join(g for g in match.groups()[::2] if g)
            return not extra or DATASET_DIR.name in extra
    return False


def shard_job(cluster, model: str, shard: str) -> int | None:
    """The running Slurm job of one embed shard."""
    out = cluster.run("squeue", "-h", "-o", "%i|%k|%T").stdout
    for line in out.splitlines():
        job, comment, state = line.split("|")
        if state == "RUNNING" and is_demo_embed_job(comment, model, shard):
            return int(job)
    return None


def shard_output(workdir: Path, model: str, shard_dir: str) -> list[Path]:
    return list((workdir / DATASET_DIR).glob(f"embeddings/shards/{model}/{shard_dir.removeprefix('shard-')}.parquet"))


@pytest.fixture(scope="module")
def slurm_demo(slurm_cluster, tmp_path_factory) -> SlurmDemo:
    """The demo with --profile slurm. The reference is the suite's shared local demo run (demo_workdir),
    which the comparing tests ask for: it runs on another worker meanwhile."""
    cluster = slurm_cluster
    gpu_switch = library_has_gpu_on_cpu_switch()
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm") / "wf")
    site_profile(workdir, cluster, gpu_switch)
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    if gpu_switch:
        env[GPU_JOBS_ON_CPU_ENV] = "1"
    first_job = int(cluster.run("sbatch", "--parsable", "-A", cluster.account, "-o", "/dev/null", "--mem=10", "--wrap", "true").stdout.split(";")[0])

    t0 = time.monotonic()
    log = open(workdir / "snakemake.log", "w")
    config = demo_subset_config(workdir, list(MODELS), datasets=[DATASET_DIR.name])
    subset = yaml.safe_load((workdir / config).read_text())
    subset["embed"]["checkpoint_every"] = CHECKPOINT_EVERY
    (workdir / config).write_text(yaml.safe_dump(subset, sort_keys=False))
    run = subprocess.Popen([*SNAKEMAKE, "--profile", "slurm", "--configfile", config], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    demo = SlurmDemo(workdir, [], gpu_switch=gpu_switch)
    try:
        deadline = time.monotonic() + 900
        while run.poll() is None and time.monotonic() < deadline:
            if not demo.timed_out:
                interrupt_a_shard(cluster, workdir, demo)
            time.sleep(0.1)
        if run.poll() is None:
            pytest.fail(f"the Slurm run did not end in 900 s:\n{(workdir / 'snakemake.log').read_text()[-6000:]}")
        demo.wall_s = time.monotonic() - t0
    finally:
        if run.poll() is None:  # SIGTERM does not stop a Slurm-executor Snakemake that is stuck
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        log.close()
    text = (workdir / "snakemake.log").read_text()
    assert run.returncode == 0, f"snakemake --profile slurm failed ({run.returncode}):\n{text[-8000:]}"
    time.sleep(2)  # accounting lags the controller a little
    demo.jobs = [r for r in sacct(cluster, "-S", "now-1hours") if int(r["JobIDRaw"]) > first_job]
    return demo


def interrupt_a_shard(cluster, workdir: Path, demo: SlurmDemo) -> None:
    """Once a shard has checkpointed a chunk: freeze its job (SIGSTOP to every process of it). The first
    such shard is then cancelled (scancel); the second stays frozen until Slurm kills it at its time limit."""
    handled = {demo.cancelled.get("shard"), demo.timed_out.get("shard"), *demo.passed}
    for chunk in sorted((workdir / DATASET_DIR).glob("embeddings/work/*/*/chunk-*.parquet")):
        model, shard_dir = chunk.parent.parent.name, chunk.parent.name   # work/<model>/shard-<k>-of-<n>/
        name = f"{model}/{shard_dir}"
        if name in handled:
            continue
        k = shard_dir.split("-")[1]
        job = shard_job(cluster, model, k)
        if job is None:
            continue
        frozen = freeze(cluster, job)
        time.sleep(0.5)
        chunks = len(list(chunk.parent.glob("chunk-*.parquet")))
        if shard_output(workdir, model, shard_dir) or re.search(r"shard \d+ of \d+ done", shard_log(workdir, model, shard_dir)):
            for pid in frozen:  # too late: the shard had finished its work; let it go
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            demo.passed.add(name)
            continue
        record = {"job": job, "shard": name, "model": model, "shard_dir": shard_dir, "chunks": chunks}
        if not demo.cancelled:
            cluster.run("scancel", str(job))
            demo.cancelled = record
        else:
            # Frozen, and its limit lowered to Slurm's shortest (1 minute; the profile gives embed jobs
            # a day): Slurm kills it at the limit as it would a shard that ran out of runtime.
            cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=1")
            demo.timed_out = record
        return


def freeze(cluster, job: int) -> list[int]:
    """SIGSTOP every process of a job (this node is the only one; the test is root). Slurm still counts
    the job as running. (scancel --signal=STOP --full did not reach the Python process of the rule.)"""
    out = cluster.run("scontrol", "listpids", str(job), check=False).stdout
    pids = [int(line.split()[0]) for line in out.splitlines()[1:] if line.split() and line.split()[0].isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    return pids


def shard_log(workdir: Path, model: str, shard_dir: str) -> str:
    paths = list((workdir / "results").rglob(f"{model}.{shard_dir}.log"))
    if len(paths) > 1:
        paths = [p for p in paths if DATASET_DIR.name in p.relative_to(workdir).parts]
    (path,) = paths
    return path.read_text()


def rule_of(row: dict[str, str]) -> str:
    match = re.match(r"rule_(.+?)(_wildcards_.*)?$", row["Comment"])
    return match.group(1) if match else row["Comment"]


def test_every_embed_shard_was_a_slurm_job_with_a_gpu_and_saw_cuda_visible_devices(slurm_demo, slurm_cluster):
    embed = [r for r in slurm_demo.jobs if is_demo_embed_job(r["Comment"])]
    completed = [r for r in embed if r["State"] == "COMPLETED"]
    assert len(completed) == len(MODELS) * 2, embed  # embed.shards: 2 per model, each finished once
    seen = gpu_env(slurm_cluster)
    for row in embed:
        assert "gres/gpu=1" in row["AllocTRES"], row
        devices = seen.get(int(row["JobIDRaw"]), set())
        assert devices and devices <= {str(i) for i in range(slurm_cluster.gpus)}, (row, devices)
    if slurm_demo.gpu_switch:  # the embed job itself logs the device it was given
        for model in MODELS:
            for k in range(2):
                assert "CUDA_VISIBLE_DEVICES=" in shard_log(slurm_demo.workdir, model, f"shard-{k}-of-2")


def test_cancelled_and_timed_out_shards_resume_from_their_checkpoints(slurm_demo):
    states = {int(r["JobIDRaw"]): r["State"] for r in slurm_demo.jobs}
    assert slurm_demo.cancelled and slurm_demo.timed_out, "no shard was caught mid-shard"
    assert states[slurm_demo.cancelled["job"]] == "CANCELLED"
    assert states[slurm_demo.timed_out["job"]] == "TIMEOUT"
    for record in (slurm_demo.cancelled, slurm_demo.timed_out):
        log = shard_log(slurm_demo.workdir, record["model"], record["shard_dir"])  # the resubmitted job's log
        resumed = int(re.search(r"(\d+) resumed from checkpoints", log).group(1))
        assert resumed >= CHECKPOINT_EVERY * record["chunks"], (record, log)
    text = (slurm_demo.workdir / "snakemake.log").read_text()
    assert "CANCELLED" in text and "TIMEOUT" in text  # Snakemake saw both failures and resubmitted (retries: 1)


def test_local_rules_stay_on_the_submitting_machine(slurm_demo):
    rules = {rule_of(r) for r in slurm_demo.jobs}
    assert "embed" in rules and "evaluate" in rules
    assert not rules & set(LOCAL_RULES), sorted(rules & set(LOCAL_RULES))


# The comparisons with the local demo run come last but one: that run goes on on another worker meanwhile.
def test_demo_on_slurm_gives_the_local_table_byte_for_byte(slurm_demo, demo_workdir):
    assert_same_as_demo(slurm_demo.workdir / "results/demo", demo_workdir / "results/demo", demo_tables([DATASET_DIR.name]))


def test_demo_embeddings_on_slurm_equal_the_local_ones_bit_for_bit(slurm_demo, demo_workdir):
    for model in MODELS:
        path = DATASET_DIR / f"embeddings/{model}.parquet"
        assert_same_features(slurm_demo.workdir / path, demo_workdir / path)


def test_time_limit_kill_is_recorded_as_timeout(slurm_cluster, time_limited_job):
    """Last in the file: the job submitted first has had its minute (Slurm checks limits every 30 s)."""
    row = wait_for_state(slurm_cluster, time_limited_job, {"TIMEOUT", "COMPLETED", "FAILED", "CANCELLED"}, 150)
    assert row["State"] == "TIMEOUT" and row["Timelimit"] == "00:01:00", row
