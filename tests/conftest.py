"""Shared fixtures: small genomes and tables written into tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def write_fasta(path: Path, contigs: dict[str, str]) -> Path:
    with open(path, "w") as handle:
        for name, seq in contigs.items():
            handle.write(f">{name}\n")
            for i in range(0, len(seq), 50):
                handle.write(seq[i:i + 50] + "\n")
    return path


@pytest.fixture
def small_genome(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two random contigs (chr1 5 kb, chr2 3 kb) with a lowercase stretch and an N run on chr2."""
    rng = np.random.default_rng(7)
    chr1 = "".join(rng.choice(list("ACGT"), 5_000))
    chr2 = list("".join(rng.choice(list("ACGT"), 3_000)))
    chr2[1_000:1_030] = "N" * 30
    chr2 = "".join(chr2)
    contigs = {"chr1": chr1[:2_000] + chr1[2_000:2_100].lower() + chr1[2_100:], "chr2": chr2}
    return write_fasta(tmp_path / "genome.fa", contigs), {"chr1": chr1, "chr2": chr2}


EQTL_HEADER = "CHROM,POS,SNP,REF,ALT,label,split,tissue,distance_to_nearest_TSS"


def random_scan_inputs(length: int, *, dtype=None, seed: int = 0, batch: int = 2, d_inner: int = 6, n: int = 4) -> dict:
    """Seeded selective-scan arguments (mamba_ssm layout) with every optional input present."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    return dict(
        u=r(batch, d_inner, length),
        delta=torch.rand(batch, d_inner, length, generator=g, dtype=dtype) * 0.5,
        A=-torch.exp(r(d_inner, n)),
        B=r(batch, n, length),
        C=r(batch, n, length),
        D=r(d_inner),
        z=r(batch, d_inner, length),
        delta_bias=r(d_inner) * 0.5,
    )


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Unit tests use tiny models: thread hand-offs cost more than they save, and on a busy
    machine oversubscribed threads make them many times slower. (Workflow tests run in
    subprocesses and set their own threads.)"""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- A real single-node Slurm cluster for tests/test_slurm.py (tests/slurm/cluster.sh) ---------------
SLURM_CLUSTER_SCRIPT = REPO / "tests/slurm/cluster.sh"
SLURM_HOW_TO_RUN = ("to run them: as root on Debian/Ubuntu, `sudo .venv/bin/python -m pytest tests/test_slurm.py` "
                    "(tests/slurm/cluster.sh installs slurm-wlm, slurmdbd, munge and mariadb-server with apt-get when "
                    "missing, starts a one-node cluster in /tmp/caduceus-vep-slurm and stops it afterwards)")


class SlurmCluster:
    """What a test needs to use the cluster: the client environment (SLURM_CONF), account, partition."""

    account = "cvep"
    partition = "debug"
    gpus = 2

    def __init__(self, slurm_conf: str, started_in_s: float) -> None:
        import os

        self.env = {**os.environ, "SLURM_CONF": slurm_conf}
        self.dir = Path(slurm_conf).parents[1]
        self.gpu_env_log = self.dir / "log/gpu-env.log"  # "<jobid> <CUDA_VISIBLE_DEVICES>" per task (task prolog)
        self.started_in_s = started_in_s

    def run(self, *args: str, check: bool = True, timeout: float = 60):
        import subprocess

        result = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result


def _slurm_unavailable() -> str | None:
    import os
    import shutil

    if os.geteuid() != 0:
        return "the Slurm tests start a real cluster and need root"
    daemons = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")
    if not shutil.which("apt-get") and not all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in daemons):
        return "the Slurm packages are missing and there is no apt-get to install them"
    return None


# Set by the session that started the cluster in the background (pytest_sessionstart): it stops it.
SLURM_OWNER_ENV = "CADUCEUS_VEP_TEST_SLURM_STARTED"


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the cluster once per session (installing the packages when missing) and stop it at the end,
    unless it was already running before the session (or the session started it in the background and
    stops it itself). On CI (CI=true) it never skips: it fails."""
    import os
    import subprocess
    import time

    reason = _slurm_unavailable()
    if reason:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must run the Slurm tests, but {reason}")
        pytest.skip(f"{reason}; {SLURM_HOW_TO_RUN}")
    script = str(SLURM_CLUSTER_SCRIPT)
    was_running = os.environ.get(SLURM_OWNER_ENV) == "1" or subprocess.run([script, "status"], capture_output=True, timeout=60).returncode == 0
    t0 = time.monotonic()
    started = subprocess.run([script, "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail(f"tests/slurm/cluster.sh start failed ({started.returncode}):\n{started.stdout}{started.stderr[-4000:]}")
    slurm_conf = subprocess.run([script, "env"], capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    yield SlurmCluster(slurm_conf, time.monotonic() - t0)
    if not was_running:
        subprocess.run([script, "stop"], capture_output=True, timeout=180)


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """One end-to-end demo run (`snakemake --cores 2` in a fresh copy), shared by every test that reads its
    results, across the session's xdist workers too: the first worker to ask runs it, under a file lock
    that a second one waits on. Fault and scale-out tests compare with it only at their end (request
    it last), so that their own runs go on beside it."""
    import os

    from filelock import FileLock
    from test_workflow import SHARED_DEMO_FOLDER, copy_workflow, snakemake

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    workdir, done = root / SHARED_DEMO_FOLDER, root / f"{SHARED_DEMO_FOLDER}.done"
    with FileLock(str(root / f"{SHARED_DEMO_FOLDER}.lock")):
        if not done.exists():
            if workdir.exists():  # an earlier attempt of this session failed midway
                shutil.rmtree(workdir)
            copy_workflow(workdir)
            snakemake(workdir, "--cores", "2")
            done.touch()
    return workdir


# --- Parallel workers (pytest-xdist: `make test` runs two, --dist loadscope) ----------------------------
# Each module stays on one worker (its module fixtures run once). The modules that run the whole workflow
# go first, so that the unit tests fill the gaps their waits leave (one-job phases, Slurm's scheduler):
# the Slurm run (much of it waiting) beside the shared demo run (the others compare with it at their
# end), then the kill test (the longest chain of runs) and the rest; a worker takes the next module
# when it has two tests or fewer left. (Measured: the demo run beside the kill test made both slower,
# 16.3 min against 13.5 for this order.) (--dist loadgroup would group finer, but pytest 9.2 ignores
# the node ids that xdist 3.8 rewrites for it.)
WORKFLOW_MODULES = ("test_slurm", "test_workflow", "test_kill_every_rule", "test_user_datasets", "test_resume", "test_disk_full",
                    "test_html_report")


def pytest_collection_modifyitems(config, items):
    rank = {module: i for i, module in enumerate(WORKFLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the file order stays within


# --- The Slurm cluster starts in the background at session start -------------------------------------
# (on CI the packages are installed first: a minute or two of apt-get, beside the collection and the
# other worker's demo run). The fixture's own `cluster.sh start` waits for it (the script takes a lock)
# and finds it running; the session that started it stops it at its end.
_SLURM_BACKGROUND: dict = {}


def _runs_slurm_tests(config) -> bool:
    wanted = [Path(a.split("::")[0]).resolve() for a in config.args] or [REPO / "tests"]
    target = REPO / "tests/test_slurm.py"
    return any(w == target or (w.is_dir() and target.is_relative_to(w)) for w in wanted)


def pytest_sessionstart(session):
    import os
    import subprocess
    import tempfile

    config = session.config
    if hasattr(config, "workerinput") or config.option.collectonly or not _runs_slurm_tests(config) or _slurm_unavailable():
        return  # an xdist worker (the controller started it), or no Slurm test in this session
    script = str(SLURM_CLUSTER_SCRIPT)
    if subprocess.run([script, "status"], capture_output=True, timeout=60).returncode == 0:
        return  # already running: somebody else's, left alone
    # Its output, for a failed start (the fixture's own start then says what went wrong).
    log = _SLURM_BACKGROUND["log"] = open(Path(tempfile.gettempdir()) / "caduceus-vep-slurm.background-start.log", "w")
    _SLURM_BACKGROUND["process"] = subprocess.Popen([script, "start"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    os.environ[SLURM_OWNER_ENV] = "1"  # inherited by the xdist workers: their fixture leaves the stop to us


def pytest_sessionfinish(session):
    import subprocess

    process = _SLURM_BACKGROUND.pop("process", None)
    if process is not None:
        process.wait()
        _SLURM_BACKGROUND.pop("log").close()
        subprocess.run([str(SLURM_CLUSTER_SCRIPT), "stop"], capture_output=True, timeout=180)
