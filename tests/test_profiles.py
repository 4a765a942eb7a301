"""The gpu and slurm profiles plan the sharded embedding as documented (dry runs, no GPU or cluster needed)."""

from __future__ import annotations

import importlib.util

import pytest
from test_workflow import copy_workflow, snakemake


def rule_blocks(text: str, rule: str) -> list[str]:
    return [block for block in text.split("rule ") if block.startswith(f"{rule}:")]


def n_embed_jobs(config_path, shards: int | None = None) -> int:
    """datasets x models x embed.shards of a config file (one embed job each)."""
    import yaml

    config = yaml.safe_load(config_path.read_text())
    return len(config["datasets"]) * len(config["models"]) * (shards or config["embed"]["shards"])


def test_slurm_profile_gives_each_embed_shard_one_gpu(tmp_path):
    # The plugin is in the test extra (make test installs it); a bare install skips with the reason.
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]' or '.[slurm]')")
    workdir = copy_workflow(tmp_path / "wf")
    text = snakemake(workdir, "--profile", "slurm", "--dry-run").stdout
    embed = rule_blocks(text, "embed")
    assert len(embed) == n_embed_jobs(workdir / "config/config.yaml")
    for block in embed:
        resources = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
        assert "gpu=1" in resources and "cpus_per_gpu=4" in resources and "runtime=1440" in resources
        # With cpus_per_task set, the plugin would submit --cpus-per-task and drop --cpus-per-gpu.
        assert "cpus_per_task" not in resources
    merge = rule_blocks(text, "embed_merge")  # also matches "localrule embed_merge:"
    assert len(merge) == len(embed) // 2 and not any("gpu=1" in block for block in merge)  # embed.shards: 2


def test_paper_config_shards_under_the_gpu_profile(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    text = snakemake(workdir, "--profile", "gpu", "--dry-run", "--configfile", "config/paper.yaml").stdout
    embed = rule_blocks(text, "embed")
    assert len(embed) == n_embed_jobs(workdir / "config/paper.yaml")  # embed.shards: 8 in config/paper.yaml
    assert all("gpu=1" in block for block in embed)
    assert "results/paper/eqtl/embeddings/shards/caduceus_ph/7-of-8.parquet" in text


def test_changing_the_shard_count_plans_new_shards(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    config = workdir / "config/config.yaml"
    config.write_text(config.read_text().replace("  shards: 2\n", "  shards: 3\n"))
    text = snakemake(workdir, "--dry-run").stdout
    assert len(rule_blocks(text, "embed")) == n_embed_jobs(config, shards=3)
    assert "embeddings/shards/caduceus_ps/2-of-3.parquet" in text
