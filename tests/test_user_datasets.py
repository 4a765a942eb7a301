"""End-to-end: users' own variant sets through the workflow, as a user writes them in their own config.

One run of a user config (no demo keys) with one model and five datasets: the benchmark table
trained on (evaluate: true), an unlabelled VCF (zero-shot only), a labelled plain-gzip VCF scored by
this run's classifiers, the unlabelled VCF with Ensembl-style contig names scored with a bundle given
by path, and a VCF of which nothing is scorable. Then a SIGKILL mid-embedding of a user dataset,
resumed to the identical scores.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pysam
import pytest
import yaml
from test_workflow import SNAKEMAKE, copy_workflow, snakemake

pytestmark = pytest.mark.slow
RUN = "results/user"
SCORE_COLUMNS = ["caduceus_ps_llr", "caduceus_ps_llr_masked", "caduceus_ps_l2", "caduceus_ps_cosine"]


def user_config(datasets: dict) -> dict:
    return {
        "run_name": "user", "datasets": datasets, "genome": {"fasta": "resources/demo/genome.fa"},
        "tss": {"gtf": "resources/demo/genes.gtf.gz"}, "windows": {"context_length": 1536},
        "models": [{"name": "caduceus_ps", "path": "resources/demo/checkpoints/caduceus-ps-tiny", "rc_rule": "ps"}],
        # No cache: every dataset computes its own features, so runs compare bit for bit.
        "embed": {"batch_size": 8, "threads": 1, "checkpoint_every": 8, "cache_dir": None},
        "evaluate": {"train_subsample": 60, "threads": 1, "protocols": ["sound"]},
        "zero_shot": {"threads": 1},
    }


def write_vcfs(workdir: Path) -> None:
    """Test-chromosome records of the demo VCF: labelled / unlabelled / no-chr / plain gzip / nothing scorable."""
    lines = (workdir / "resources/demo/variants.vcf").read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    body = [line for line in lines if not line.startswith("#") and line.split("\t")[0] in ("chr9", "chr10")]
    unlabelled = []
    for line in body:
        fields = line.split("\t")
        fields[7] = re.sub(r"CAUSAL=[01];?", "", fields[7]) or "."
        unlabelled.append("\t".join(fields))
    (workdir / "user").mkdir()
    (workdir / "user/unlabelled.vcf").write_text("\n".join(header + unlabelled) + "\n")
    nochr = [line.replace("##contig=<ID=chr", "##contig=<ID=") for line in header] + [line.removeprefix("chr") for line in unlabelled]
    (workdir / "user/nochr.vcf").write_text("\n".join(nochr) + "\n")
    with gzip.open(workdir / "user/labelled.vcf.gz", "wt") as handle:  # plain gzip, not bgzip
        handle.write("\n".join(header + body) + "\n")
    indels = [line for line in body if len(line.split("\t")[3]) != len(line.split("\t")[4])] or []
    only_bad = [*indels, "chr9\t500\tbad_mnv\tAC\tGT\t.\tPASS\t."]
    (workdir / "user/nothing.vcf").write_text("\n".join(header + only_bad) + "\n")


@pytest.fixture(scope="module")
def user_run(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("user"))
    write_vcfs(workdir)
    config = user_config({
        "train": {"path": "resources/demo/All_Tissues.csv", "evaluate": True},
        "plain": {"path": "user/unlabelled.vcf"},
        "labelled_gz": {"path": "user/labelled.vcf.gz", "label_info": "CAUSAL", "classifiers": "train"},
        # Ensembl-style contig names (1, 2, ...: the genome's are chr1, chr2, ...) and a bundle by path.
        "bundle": {"path": "user/nochr.vcf", "classifiers": {"caduceus_ps": f"{RUN}/train/classifiers/caduceus_ps.cvep.npz"}},
        "nothing": {"path": "user/nothing.vcf"},
    })
    (workdir / "user.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--cores", "2", "--configfile", "user.yaml")
    return workdir


def scores(workdir: Path, dataset: str) -> pd.DataFrame:
    return pd.read_parquet(workdir / f"{RUN}/{dataset}/scores/{dataset}.scores.parquet")


def test_unlabelled_vcf_gets_zero_shot_scores_only(user_run):
    table = scores(user_run, "plain")
    source = [r for r in pysam.VariantFile(str(user_run / "user/unlabelled.vcf"))]
    skipped = pd.read_csv(user_run / f"{RUN}/plain/scores/plain.skipped.tsv", sep="\t")
    assert len(table) + len(skipped) == sum(len(r.alts) for r in source)
    assert table[SCORE_COLUMNS].notna().all().all() and not any(c.endswith("_p") for c in table.columns)
    assert (table["label"] == -1).all()
    assert pd.read_csv(user_run / f"{RUN}/plain/scores/plain.auroc.tsv", sep="\t").empty
    assert not (user_run / f"{RUN}/plain/tables").exists()  # no evaluation for an unlabelled set
    log = (user_run / f"{RUN}/logs/plain/zero_shot/caduceus_ps.log").read_text()
    assert "variant/s" in log and "100%|" in log  # the progress bar


def test_contig_spelling_does_not_change_the_scores(user_run):
    chr_names, bare = scores(user_run, "plain"), scores(user_run, "bundle")
    assert bare["chrom"].str.startswith("chr").sum() == 0 and len(bare) == len(chr_names)
    pd.testing.assert_frame_equal(chr_names[SCORE_COLUMNS].reset_index(drop=True), bare[SCORE_COLUMNS].reset_index(drop=True))


def test_labelled_plain_gzip_vcf_is_scored_with_this_runs_classifiers_and_evaluated(user_run):
    out = user_run / f"{RUN}/labelled_gz/scores"
    table = scores(user_run, "labelled_gz")
    assert table["caduceus_ps_p"].between(0, 1).all() and (table["label"] >= 0).all()
    records = list(pysam.VariantFile(str(out / "labelled_gz.scored.vcf.gz")))
    assert len(records) == sum(1 for _ in pysam.VariantFile(str(user_run / "user/unlabelled.vcf")))
    assert (out / "labelled_gz.scored.vcf.gz.tbi").exists()
    auroc = pd.read_csv(out / "labelled_gz.auroc.tsv", sep="\t")
    assert {"p", "llr", "llr_masked", "l2", "cosine"} <= set(auroc["score"]) and auroc["auroc"].between(0, 1).all()


def test_a_bundle_given_by_path_scores_an_unlabelled_vcf(user_run):
    table = scores(user_run, "bundle")
    assert table["caduceus_ps_p"].between(0, 1).all()
    assert {"caduceus_ps_p_0_30kb", "caduceus_ps_p_30_100kb", "caduceus_ps_p_gt100kb"} <= set(table.columns)
    header = str(pysam.VariantFile(str(user_run / f"{RUN}/bundle/scores/bundle.scored.vcf.gz")).header)
    assert "##caduceus_vep_classifiers=<ID=caduceus_ps" in header


def test_a_dataset_with_nothing_scorable_finishes_with_every_record_skipped(user_run):
    out = user_run / f"{RUN}/nothing/scores"
    assert scores(user_run, "nothing").empty
    skipped = pd.read_csv(out / "nothing.skipped.tsv", sep="\t")
    assert "bad_mnv" in set(skipped["id"]) and skipped["reason"].str.contains("MNV").any()
    assert list(pysam.VariantFile(str(out / "nothing.scored.vcf.gz")))  # the input records, unscored


def test_a_killed_user_dataset_resumes_to_the_identical_scores(user_run, tmp_path):
    workdir = copy_workflow(tmp_path / "killed")
    write_vcfs(workdir)
    (workdir / "user.yaml").write_text(yaml.safe_dump(user_config({"plain": {"path": "user/unlabelled.vcf"}})))
    target = f"{RUN}/plain/scores/plain.scores.tsv"
    # "--": --configfile takes several values and would swallow the target.
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1", "--configfile", "user.yaml", "--", target], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    work = workdir / f"{RUN}/plain/embeddings/work"
    deadline = time.monotonic() + 600
    try:
        while not list(work.glob("*/*/chunk-*.parquet")):
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before any checkpoint appeared"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (workdir / f"{RUN}/plain/embeddings/caduceus_ps.parquet").exists(), "the kill came too late"
    snakemake(workdir, "--unlock", "--configfile", "user.yaml")
    snakemake(workdir, "--cores", "1", "--rerun-incomplete", "--configfile", "user.yaml", "--", target)
    log = (workdir / f"{RUN}/logs/plain/embed/caduceus_ps.shard-0-of-1.log").read_text()
    assert int(re.search(r"(\d+) resumed from checkpoints", log).group(1)) >= 8, log
    assert (workdir / target).read_bytes() == (user_run / target).read_bytes()
