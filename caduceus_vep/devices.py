"""Which device an embedding shard runs on.

- **One GPU box, N GPUs** (``snakemake --profile gpu --resources gpu=N``): Snakemake runs up to N
  embed jobs at once, but it does not tell a job which GPU is free. Shard k prefers visible GPU
  ``k % N`` (``shard_device``, a pure function of the shard and the visible devices); at run time
  ``embed_device`` takes the first GPU, starting from that one, that no other job holds (an
  exclusive ``flock`` on a per-GPU lock file, released by the kernel when the process ends, even on
  ``kill -9``), so N concurrent shards get N different GPUs however Snakemake orders them.
- **Slurm** (``--profile slurm``): every job asks for ``--gpus=1`` and Slurm sets
  ``CUDA_VISIBLE_DEVICES`` to the GPU it allocated; inside the job that GPU is ``cuda:0``
  (``slurm_device``), whatever the shard number.
- ``CUDA_VISIBLE_DEVICES`` is applied by CUDA itself: ``torch.cuda.device_count()`` counts only the
  visible GPUs and numbers them 0..n-1; the variable is read here only to name the physical GPU in
  logs and lock files.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

#: Lock files of the GPUs held by this process (kept open: closing one releases the GPU).
_held: list[IO[bytes]] = []


@dataclasses.dataclass(frozen=True)
class DeviceChoice:
    """A device for one job, and why (one log line)."""

    device: str  # "cpu", "cuda:0", ...
    reason: str
    #: The GPU as the machine names it (an entry of CUDA_VISIBLE_DEVICES, or the index); None on CPU.
    physical: str | None = None


def visible_gpus(env: Mapping[str, str], device_count: int) -> list[str]:
    """Physical names of the GPUs this process sees, in torch's order (entry i is ``cuda:i``).

    ``device_count`` is ``torch.cuda.device_count()``, which already honours CUDA_VISIBLE_DEVICES;
    the variable's entries (indices or ``GPU-<uuid>``) name them. CUDA ignores the entries after an
    invalid one, so only the first ``device_count`` are used.
    """
    if device_count < 1:
        return []
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(device_count)]
    names = [part.strip() for part in listed.split(",") if part.strip()]
    names = names[:device_count]
    return names + [f"visible-{i}" for i in range(len(names), device_count)]  # count larger than listed: unnamed


def in_slurm_job(env: Mapping[str, str]) -> bool:
    """True inside a Slurm allocation (sbatch/srun set SLURM_JOB_ID)."""
    return bool(env.get("SLURM_JOB_ID"))


def slurm_device(env: Mapping[str, str], device_count: int) -> DeviceChoice | None:
    """In a Slurm job that was given GPUs: ``cuda:0``, the first (for ``--gpus=1`` the only) GPU of the job.

    Slurm sets CUDA_VISIBLE_DEVICES to the allocated GPUs (with device cgroups they are renumbered
    from 0, without them they keep the node's numbers); either way CUDA shows them to the job as
    0..n-1. None when not in a Slurm job or when the job has no GPU.
    """
    if not in_slurm_job(env) or device_count < 1:
        return None
    physical = visible_gpus(env, device_count)[0]
    return DeviceChoice("cuda:0", f"Slurm job {env.get('SLURM_JOB_ID')}: its allocated GPU "
                        f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '<unset>')}) is cuda:0", physical)


def shard_device(shard: int, requested: str, env: Mapping[str, str], device_count: int) -> DeviceChoice:
    """The device embed shard ``shard`` (0-based) should use; a pure function of its arguments.

    ``requested`` is the ``embed.device`` setting: ``"cpu"``; an explicit ``"cuda:K"`` (used as
    given); ``"cuda"`` (a GPU is required) or ``"auto"`` (a GPU when there is one). For the last two:
    inside a Slurm job, the job's GPU (``slurm_device``); otherwise visible GPU ``shard % n``.
    """
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    kind, _, index = requested.strip().lower().partition(":")
    if kind == "cpu" or (kind == "auto" and device_count < 1):
        why = "requested" if kind == "cpu" else "no GPU visible (torch.cuda.device_count() == 0)"
        return DeviceChoice("cpu", f"shard {shard}: CPU ({why})")
    if kind not in ("auto", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:K', got {requested!r}")
    if device_count < 1:
        raise RuntimeError(f"shard {shard}: device {requested!r} needs a GPU but none is visible "
                           f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '<unset>')}, torch.cuda.device_count() == 0)")
    names = visible_gpus(env, device_count)
    if index:
        if not index.isdigit() or int(index) >= device_count:
            raise ValueError(f"device {requested!r}: only cuda:0..cuda:{device_count - 1} are visible")
        return DeviceChoice(f"cuda:{int(index)}", f"shard {shard}: cuda:{int(index)} as configured", names[int(index)])
    in_slurm = slurm_device(env, device_count)
    if in_slurm is not None:
        return DeviceChoice(in_slurm.device, f"shard {shard}: {in_slurm.reason}", in_slurm.physical)
    k = shard % device_count
    return DeviceChoice(f"cuda:{k}", f"shard {shard}: visible GPU {k} of {device_count} (physical {names[k]})", names[k])


def default_lock_dir() -> Path:
    """Per-user folder of the GPU lock files, shared by all runs on this machine."""
    return Path(tempfile.gettempdir()) / f"caduceus-vep-gpu-locks-{os.getuid()}"


def _try_lock(path: Path) -> IO[bytes] | None:
    handle = open(path, "ab")  # noqa: SIM115 - kept open for the life of the process on success
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def claim_gpu(choice: DeviceChoice, env: Mapping[str, str], device_count: int, lock_dir: Path | None = None) -> DeviceChoice:
    """Starting from ``choice``'s GPU, the first visible GPU no other process holds; held until this process exits.

    When every GPU is held (more concurrent jobs than GPUs), the preferred GPU is shared, as said
    in the returned reason.
    """
    if not choice.device.startswith("cuda:") or device_count < 2:
        return choice
    names = visible_gpus(env, device_count)
    folder = lock_dir or default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    start = int(choice.device.split(":")[1])
    for step in range(device_count):
        k = (start + step) % device_count
        handle = _try_lock(folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', names[k])}.lock")
        if handle is not None:
            _held.append(handle)
            moved = "" if k == start else f"; GPU {start} is held by another job, took visible GPU {k} (physical {names[k]})"
            return DeviceChoice(f"cuda:{k}", f"{choice.reason}{moved}; lock in {folder}", names[k])
    return dataclasses.replace(choice, reason=f"{choice.reason}; all {device_count} GPUs are held by other jobs, sharing it")


def release_gpus() -> None:
    """Give back the GPUs this process claimed (tests; a finished process releases them anyway)."""
    while _held:
        _held.pop().close()


def embed_device(requested: str, shard: int, env: Mapping[str, str] | None = None, device_count: int | None = None,
                 lock_dir: Path | None = None) -> DeviceChoice:
    """The device for embed shard ``shard`` in this process: ``shard_device``, then ``claim_gpu``
    when several GPUs of one machine are shared by concurrent jobs (not in a Slurm job, not for an
    explicit ``cuda:K``). ``env`` and ``device_count`` default to the process's own."""
    if env is None:
        env = os.environ
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    choice = shard_device(shard, requested, env, device_count)
    explicit = ":" in requested
    if choice.device.startswith("cuda") and not explicit and not in_slurm_job(env):
        choice = claim_gpu(choice, env, device_count, lock_dir)
    return choice
