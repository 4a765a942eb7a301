"""Atomic file writes: a killed run never leaves a half-written output that looks finished.

Every writer in the library goes through :func:`atomic_path`: it hands out a temporary name in the
destination's folder (same file system, so the final ``os.replace`` is atomic) and renames it onto
the destination only when the ``with`` block ends without an exception.

:func:`kill_point` is the fault-injection hook of the test suite (``tests/test_kill_every_rule.py``):
inert unless ``CADUCEUS_VEP_KILL_AT`` is set, it SIGKILLs the job's whole process group (Snakemake
included, as a power cut or an OOM kill of the session would) just before an output is renamed into
place or just after a job's last output is written.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; move it onto ``dest`` if the block succeeds.

    ``suffix`` is kept on the temporary name for writers that infer the format from it.
    On any exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        kill_point("write")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def remove_stale_temporaries(dest: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files that :func:`atomic_path` left beside ``dest`` when a writer was killed.

    Only for a destination its caller owns exclusively (a Snakemake job's declared output: no other
    job writes it), so no live writer's temporary file can be among them. Returns what was removed.
    """
    dest = Path(dest)
    removed = []
    for tmp in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp*"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


KILL_AT_ENV = "CADUCEUS_VEP_KILL_AT"  # comma-separated "<rule>@write" / "<rule>@end" entries
KILL_LOG_ENV = "CADUCEUS_VEP_KILL_LOG"  # file the hook appends "<rule>@<moment>" to before killing
RULE_ENV = "CADUCEUS_VEP_RULE"  # set by the workflow's adapter to the running rule's name


def kill_point(moment: str) -> None:
    """SIGKILL this process group if ``CADUCEUS_VEP_KILL_AT`` names the running rule at ``moment``."""
    wanted = os.environ.get(KILL_AT_ENV)
    rule = os.environ.get(RULE_ENV)
    if not wanted or not rule or f"{rule}@{moment}" not in wanted.split(","):
        return
    if os.environ.get(KILL_LOG_ENV):
        with open(os.environ[KILL_LOG_ENV], "a") as log:
            log.write(f"{rule}@{moment}\n")
    os.killpg(os.getpgid(0), signal.SIGKILL)
