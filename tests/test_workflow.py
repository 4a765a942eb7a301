"""End-to-end: the Snakemake workflow on the bundled demo, in a fresh copy of the repository."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
COPIED = ["Snakefile", "rules", "workflow_scripts", "config", "resources", "profiles", "envs", "caduceus_vep", "gpu", "slurm", "report"]
BUCKETS = ["0-30kb", "30-100kb", ">100kb"]
EQTL = "results/demo/eqtl"  # the benchmark dataset of the demo config



def copy_workflow(dest: Path) -> Path:
    """The files a user's clone has, without results, caches or the virtual environment."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = REPO / name
        if src.is_symlink():
            (dest / name).symlink_to(src.readlink())
        elif src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


# The shared demo run's folder (conftest.py: demo_workdir): tests of several modules run snakemake in it,
# possibly on two xdist workers at once; they take turns.
SHARED_DEMO_FOLDER = "demo-shared"


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    from filelock import FileLock

    turn = FileLock(str(workdir.parent / f"{SHARED_DEMO_FOLDER}.runs.lock")) if workdir.name == SHARED_DEMO_FOLDER else contextlib.nullcontext()
    with turn:
        result = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def demo_models() -> list[dict]:
    """The models of the shipped demo config."""
    import yaml

    return yaml.safe_load((REPO / "config/config.yaml").read_text())["models"]


DEMO_DATASETS, DEMO_SHARDS = 2, 2  # eqtl + demo_vcf; embed.shards in the demo config


# Tables compared between a run and the shared demo run (under results/demo/).
DEMO_TABLES = ["eqtl/tables/vep_auroc.tsv", "eqtl/tables/vep_auroc_per_seed.tsv", "eqtl/tables/zero_shot_auroc.tsv",
               "eqtl/scores/eqtl.scores.tsv", "demo_vcf/scores/demo_vcf.scores.tsv", "demo_vcf/scores/demo_vcf.skipped.tsv",
               "demo_vcf/scores/demo_vcf.auroc.tsv"]


def demo_tables(datasets: list[str]) -> list[str]:
    """The compared tables of these datasets only."""
    return [table for table in DEMO_TABLES if table.split("/")[0] in datasets]


def demo_subset_config(workdir: Path, models: list[str], name: str = "subset.yaml", datasets: list[str] | None = None) -> str:
    """The demo config with only ``models`` (and their extra evaluation rows), and only ``datasets`` when
    given (compare with ``demo_tables(datasets)``), written into ``workdir``.

    Fault and scale-out tests run the whole workflow on a subset of the demo's models: every model's
    jobs are independent of the others', so the subset's tables must equal the demo's rows and
    columns of the same models byte for byte (``assert_same_as_demo``). Second, independent runs:
    Caduceus-PS's whole run (kill-every-rule test) and Caduceus-Ph's (Slurm test): identical tables;
    the Caduceus-Ph (disk-full test), HyenaDNA and NT-v2 (resume test) embeddings: identical features."""
    import yaml

    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    missing = set(models) - {m["name"] for m in config["models"]}
    assert not missing, f"not models of the demo: {missing}"
    config["models"] = [m for m in config["models"] if m["name"] in models]
    if datasets is not None:
        assert set(datasets) <= set(config["datasets"]), f"not datasets of the demo: {set(datasets) - set(config['datasets'])}"
        config["datasets"] = {name: spec for name, spec in config["datasets"].items() if name in datasets}
    rows = config.get("evaluate", {}).get("extra_rows")
    if rows:
        config["evaluate"]["extra_rows"] = [r for r in rows if r["model"] in models]
    (workdir / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def assert_same_as_demo(results: Path, demo_results: Path, tables: list[str] = DEMO_TABLES) -> None:
    """Every line of a subset run's row tables is a line of the demo's (same bytes, same order), and its
    per-variant score tables equal the demo's columns of the same name, value for value as written."""
    for table in tables:
        ours, theirs = results / table, demo_results / table
        assert ours.exists() == theirs.exists(), table
        if not ours.exists():
            continue
        if table.endswith(("scores.tsv", "skipped.tsv")):
            a = pd.read_csv(ours, sep="\t", dtype=str, keep_default_na=False)
            b = pd.read_csv(theirs, sep="\t", dtype=str, keep_default_na=False)
            assert set(a.columns) <= set(b.columns), f"{table}: columns {set(a.columns) - set(b.columns)} not in the demo's"
            pd.testing.assert_frame_equal(a, b[list(a.columns)], obj=table)
            continue
        lines, demo_lines = ours.read_text().splitlines(), theirs.read_text().splitlines()
        assert len(lines) >= 2, f"{table} is empty"
        assert lines[0] == demo_lines[0], f"{table}: header differs"
        positions = [demo_lines.index(line) if line in demo_lines else -1 for line in lines[1:]]
        assert -1 not in positions, f"{table}: line {lines[1 + positions.index(-1)]!r} is not in the demo's table"
        assert positions == sorted(positions), f"{table}: rows in another order than the demo's"


def assert_same_features(ours: Path, theirs: Path) -> tuple[dict, dict]:
    """Two embeddings files hold the same variants in the same order and the same features bit for bit;
    their metadata, for the caller to compare as far as it should agree."""
    from caduceus_vep.embed import read_embeddings

    ids_a, mats_a, meta_a = read_embeddings(ours)
    ids_b, mats_b, meta_b = read_embeddings(theirs)
    assert ids_a.equals(ids_b), f"{ours}: other variants or order than {theirs}"
    assert set(mats_a) == set(mats_b), f"{ours}: other feature columns than {theirs}"
    for column in mats_a:
        np.testing.assert_array_equal(mats_a[column], mats_b[column], err_msg=f"{ours} vs {theirs}: {column}")
    return meta_a, meta_b


@pytest.fixture(scope="module")
def demo_run(demo_workdir) -> Path:
    return demo_workdir


@pytest.mark.slow
def test_demo_table_has_both_models_three_buckets_and_the_planted_signal(demo_run):
    table = pd.read_csv(demo_run / f"{EQTL}/tables/vep_auroc.tsv", sep="\t")
    import yaml

    demo = yaml.safe_load((demo_run / "config/config.yaml").read_text())
    # One row per model plus the "w/o Equiv." row from the Ph features (evaluate.extra_rows).
    assert len(table) == len(demo["models"]) + len(demo["evaluate"].get("extra_rows", []))
    assert table["model"].str.contains("Caduceus-PS").any() and table["model"].str.contains("Caduceus-Ph").any()
    assert table["model"].str.startswith("Caduceus w/o Equiv.").any()
    means = table[[f"{b} auroc_mean" for b in BUCKETS]]
    assert means.notna().all().all()
    assert ((means >= 0) & (means <= 1)).all().all()
    assert (table[[f"{b} C" for b in BUCKETS]].isin([1, 5, 10])).all().all()
    # The demo labels follow local GC content (resources/demo/README.md): a working pipeline sees it.
    # Every row sees it above chance; the Caduceus rows clearly (the tiny NT-v2's 6-mer embeddings, at a
    # 1,152 bp context, carry the base composition less directly: README "What the demo shows").
    assert (means.mean(axis=1) > 0.55).all(), means
    caduceus = table["model"].str.startswith("Caduceus")
    assert (means[caduceus].mean(axis=1) > 0.7).all(), means
    md = (demo_run / f"{EQTL}/tables/vep_auroc.md").read_text()
    assert all(b in md for b in BUCKETS) and "±" in md
    png = (demo_run / f"{EQTL}/figures/vep_auroc.png").read_bytes()
    assert png.startswith(b"\x89PNG")


@pytest.mark.slow
def test_demo_accounts_for_every_record_and_records_provenance(demo_run):
    import json

    out = demo_run / EQTL
    source = pd.read_csv(demo_run / "resources/demo/All_Tissues.csv")
    variants = pd.read_parquet(out / "variants/variants.parquet")
    skipped_rows = pd.read_csv(out / "variants/skipped.tsv", sep="\t")
    assert len(variants) + len(skipped_rows) == len(source)
    windows = pd.read_parquet(out / "windows/windows.parquet")
    skipped_windows = pd.read_csv(out / "windows/skipped.tsv", sep="\t")
    assert len(windows) + len(skipped_windows) == variants["variant_id"].nunique()
    # The generator puts an N run over the first variant of each chromosome.
    assert skipped_windows["reason"].str.contains("N \\(threshold").sum() == 4
    assert (skipped_windows["source"] == "resources/demo/All_Tissues.csv").all()
    prov = json.loads((out / "provenance.json").read_text())
    assert len(prov["inputs"]["variants"]["sha256"]) == 64
    assert set(prov["models"]) == {m["name"] for m in demo_models()}
    assert all(len(m["model"]["weights_sha256"]) == 64 for m in prov["models"].values())
    assert prov["environment"]["packages"]["torch"]
    assert prov["config"]["run_name"] == "demo"



@pytest.mark.slow
def test_demo_embeds_each_unique_variant_once_in_shards(demo_run):
    from caduceus_vep.embed import read_embeddings

    out = demo_run / EQTL
    logs = demo_run / "results/demo/logs/eqtl"
    windows = pd.read_parquet(out / "windows/windows.parquet")
    variants = pd.read_parquet(out / "variants/variants.parquet")
    kept_rows = int(variants["variant_id"].isin(set(windows["variant_id"])).sum())
    for entry in demo_models():
        model = entry["name"]
        ids, matrices, meta = read_embeddings(out / f"embeddings/{model}.parquet")
        assert ids["variant_id"].tolist() == windows["variant_id"].tolist()  # once each, in windows order
        assert meta["shards"] == 2 and meta["dedup"]["rows"] == kept_rows > len(windows)
        # PS: the model's hidden state is 2 x d_model wide, each pooled feature d_model.
        assert meta["feature_size"] == meta["hidden_size"] // (2 if entry["rc_rule"] == "ps" else 1)
        assert all(m.shape == (len(windows), meta["feature_size"]) for m in matrices.values())
        merge_log = (logs / f"embed/{model}.merge.log").read_text()
        assert f"{kept_rows} (variant, tissue) rows" in merge_log
        shard_log = (logs / f"embed/{model}.shard-0-of-2.log").read_text()
        assert "variant/s" in shard_log and "100%|" in shard_log  # the progress bar is in the log
    # Shard files are temporary, checkpoints are removed once a shard is done, the cache stays.
    assert not (out / "embeddings/shards").exists() or not any((out / "embeddings/shards").rglob("*.parquet"))
    assert not any((out / "embeddings/work").rglob("chunk-*.parquet"))
    assert len(list((demo_run / "results/.embedding_cache").glob("*/key.json"))) == len(demo_models())  # one key per model

@pytest.mark.slow
def test_rerun_does_nothing_and_forced_final_rules_are_identical(demo_run):
    dry = snakemake(demo_run, "--dry-run", "--cores", "2")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    tables = ["tables/vep_auroc.tsv", "tables/vep_auroc.md", "tables/vep_auroc_per_seed.tsv"]
    tables += ["scores/demo_vcf.scores.tsv", "scores/demo_vcf.auroc.tsv"]
    read = {t: (demo_run / (f"{EQTL}/{t}" if not t.startswith("scores") else f"results/demo/demo_vcf/{t}")) for t in tables}
    before = {t: p.read_bytes() for t, p in read.items()}
    # Forcing only the final rules re-reads every upstream output; the full second run of every model
    # (two runs, identical tables) is in the fault and Slurm tests (demo_subset_config).
    snakemake(demo_run, "--cores", "2", "--forcerun", "report", "score")
    after = {t: p.read_bytes() for t, p in read.items()}
    assert before == after


@pytest.mark.slow
def test_changing_a_scored_dataset_never_replans_the_training(demo_run):
    import yaml

    config = yaml.safe_load((demo_run / "config/config.yaml").read_text())
    config["datasets"]["demo_vcf"]["tissue"] = "Liver"
    (demo_run / "changed.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # key order is part of params
    text = snakemake(demo_run, "--dry-run", "--cores", "2", "--configfile", "changed.yaml").stdout
    blocks = [b for b in text.split("\nrule ")[1:] if "wildcards:" in b]
    replanned = {(b.split(":")[0], b.split("dataset=")[1].split(",")[0].split()[0]) for b in blocks if "dataset=" in b}
    assert ("variants", "demo_vcf") in replanned and ("score", "demo_vcf") in replanned
    assert not [job for job in replanned if job[1] == "eqtl"], replanned  # the training dataset is left alone


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_and_ruff_are_clean():
    bin_dir = Path(sys.executable).parent
    fmt = subprocess.run([str(bin_dir / "snakefmt"), "--check", "Snakefile", "rules/"], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = subprocess.run([str(bin_dir / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout[-3000:]


def test_gpu_profile_dry_run_from_the_repository_root(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    result = snakemake(workdir, "--profile", "gpu", "--dry-run")
    text = result.stdout + result.stderr
    embed_blocks = [block for block in text.split("\nrule ") if block.startswith("embed:")]
    per_model = DEMO_DATASETS * len(demo_models())
    assert len(embed_blocks) == per_model * DEMO_SHARDS
    assert all("gpu=1" in block for block in embed_blocks)
    zero_shot_blocks = [block for block in text.split("\nrule ") if block.startswith("zero_shot:")]
    assert len(zero_shot_blocks) == per_model and all("gpu=1" in block for block in zero_shot_blocks)
    merge_blocks = [block for block in text.split("rule ") if block.startswith("embed_merge:")]
    assert len(merge_blocks) == per_model and not any("gpu=1" in block for block in merge_blocks)


def test_paper_config_plans_the_downloads(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    result = snakemake(workdir, "--dry-run", "--configfile", "config/paper.yaml")
    text = result.stdout + result.stderr
    for rule in ("fetch_dataset_eqtl", "fetch_genome", "prepare_genome", "fetch_tss", "fetch_model", "embed", "report"):
        assert f"rule {rule}:" in text or f"localrule {rule}:" in text, rule
    # Downloads (data and model checkpoints) are local rules: compute nodes need no internet.
    fetch_rules = (REPO / "rules/fetch.smk").read_text().split("\n    rule ")
    assert all("localrule: True" in block for block in fetch_rules[1:])
    assert "results/paper/eqtl/tables/vep_auroc.tsv" in text


def test_invalid_config_names_the_key(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    config = (workdir / "config/config.yaml").read_text().replace("context_length: 1536", "context_length: 1537")
    (workdir / "config/bad.yaml").write_text(config)
    result = snakemake(workdir, "--dry-run", "--configfile", "config/bad.yaml", check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "context_length" in text and "1537" in text
