"""Embed shard -> device mapping (caduceus_vep.devices) with fake device lists and environments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from caduceus_vep.devices import (
    claim_gpu,
    embed_device,
    release_gpus,
    shard_device,
    slurm_device,
    visible_gpus,
)


@pytest.fixture(autouse=True)
def _release():
    yield
    release_gpus()


def test_visible_gpus_names_torchs_devices_by_cuda_visible_devices() -> None:
    assert visible_gpus({}, 3) == ["0", "1", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}, 2) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-abc, GPU-def"}, 2) == ["GPU-abc", "GPU-def"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, 0) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4,7,x"}, 2) == ["4", "7"]  # CUDA stops at the invalid entry


@pytest.mark.parametrize("count", [1, 2, 4])
def test_shards_spread_over_the_visible_gpus(count: int) -> None:
    devices = [shard_device(k, "auto", {}, count).device for k in range(8)]
    assert devices == [f"cuda:{k % count}" for k in range(8)]
    # Any `count` consecutive shards (what --resources gpu=count starts first) use distinct GPUs.
    assert all(len(set(devices[i:i + count])) == count for i in range(8 - count + 1))


def test_cuda_visible_devices_subset_maps_to_torch_indices() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3,6"}
    choices = [shard_device(k, "cuda", env, 2) for k in range(3)]
    assert [c.device for c in choices] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [c.physical for c in choices] == ["3", "6", "3"]
    assert "physical 6" in choices[1].reason


def test_cpu_auto_and_missing_gpu() -> None:
    assert shard_device(5, "cpu", {}, 4).device == "cpu"
    assert shard_device(5, "auto", {"CUDA_VISIBLE_DEVICES": ""}, 0).device == "cpu"
    with pytest.raises(RuntimeError, match="needs a GPU but none is visible"):
        shard_device(0, "cuda", {"CUDA_VISIBLE_DEVICES": ""}, 0)
    with pytest.raises(ValueError, match="device must be"):
        shard_device(0, "gpu", {}, 1)
    with pytest.raises(ValueError, match="shard must be"):
        shard_device(-1, "auto", {}, 1)


def test_explicit_device_is_kept_and_checked() -> None:
    assert shard_device(3, "cuda:1", {}, 2).device == "cuda:1"
    with pytest.raises(ValueError, match=r"only cuda:0\.\.cuda:1 are visible"):
        shard_device(0, "cuda:2", {}, 2)


@pytest.mark.parametrize("visible", ["0", "3", "GPU-5f3c"])
def test_a_slurm_job_uses_the_gpu_it_was_given(visible: str) -> None:
    env = {"SLURM_JOB_ID": "4711", "CUDA_VISIBLE_DEVICES": visible}
    for shard in (0, 1, 7):
        choice = shard_device(shard, "cuda", env, 1)
        assert choice.device == "cuda:0" and choice.physical == visible
        assert "Slurm job 4711" in choice.reason
    assert slurm_device({"CUDA_VISIBLE_DEVICES": visible}, 1) is None  # not a Slurm job
    assert slurm_device({"SLURM_JOB_ID": "1"}, 0) is None  # a Slurm job without a GPU
    assert shard_device(2, "auto", {"SLURM_JOB_ID": "1"}, 0).device == "cpu"


def test_slurm_job_with_gpus_of_the_node_still_starts_at_cuda0() -> None:
    # Without device cgroups Slurm may expose several GPUs (e.g. --gpus=2): the job's first is cuda:0.
    env = {"SLURM_JOB_ID": "9", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert embed_device("auto", 5, env, 2).device == "cuda:0"


def test_claim_moves_to_a_free_gpu_when_the_preferred_one_is_held(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    first = embed_device("auto", 0, env, 3, lock_dir=tmp_path)
    # Shard 3 prefers GPU 0 (3 % 3), which shard 0 holds: it takes the next free one.
    second = embed_device("auto", 3, env, 3, lock_dir=tmp_path)
    third = embed_device("auto", 1, env, 3, lock_dir=tmp_path)  # prefers 1, now held: takes 2
    assert [first.device, second.device, third.device] == ["cuda:0", "cuda:1", "cuda:2"]
    assert "held by another job" in second.reason
    fourth = embed_device("auto", 4, env, 3, lock_dir=tmp_path)  # all held: shares its preferred GPU
    assert fourth.device == "cuda:1" and "sharing" in fourth.reason
    release_gpus()
    assert embed_device("auto", 4, env, 3, lock_dir=tmp_path).device == "cuda:1"


def test_locks_are_seen_by_other_processes_and_released_at_exit(tmp_path: Path) -> None:
    """A second process (another embed job) does not get the GPU this one holds; once the holder exits, it does."""
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    held = embed_device("auto", 0, env, 2, lock_dir=tmp_path)
    assert held.device == "cuda:0"
    code = ("import sys; from pathlib import Path; from caduceus_vep.devices import embed_device; "
            f"print(embed_device('auto', 0, {env!r}, 2, lock_dir=Path(sys.argv[1])).device)")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "cuda:1"
    release_gpus()
    again = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "cuda:0"


def test_no_locking_for_one_gpu_explicit_devices_or_slurm(tmp_path: Path) -> None:
    one = shard_device(0, "auto", {}, 1)
    assert claim_gpu(one, {}, 1, lock_dir=tmp_path) == one
    assert embed_device("cuda:1", 0, {}, 2, lock_dir=tmp_path).device == "cuda:1"
    assert embed_device("auto", 0, {"SLURM_JOB_ID": "3", "CUDA_VISIBLE_DEVICES": "1"}, 1, lock_dir=tmp_path).device == "cuda:0"
    assert list(tmp_path.iterdir()) == []
