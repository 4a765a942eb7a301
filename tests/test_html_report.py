"""End-to-end: the demo, the demo VCF scored, and `snakemake --report` as one self-contained HTML file."""

from __future__ import annotations

import pandas as pd
import pysam
import pytest
import yaml
from test_workflow import snakemake


@pytest.fixture(scope="module")
def scored_run(demo_workdir):
    snakemake(demo_workdir, "--report", "report.html")
    return demo_workdir


@pytest.mark.slow
def test_html_report_is_produced_with_tables_figures_and_provenance(scored_run):
    html = (scored_run / "report.html").read_text(errors="replace")
    assert len(html) > 10_000
    for name in ("vep_auroc.png", "roc_sound.png", "vep_auroc_sound.tsv", "provenance.json", "vep_reference.tsv"):
        assert name in html, name


@pytest.mark.slow
def test_report_tables_show_both_protocols_and_zero_shot(scored_run):
    out = scored_run / "results/demo/eqtl"
    sound = pd.read_csv(out / "tables/vep_auroc_sound.tsv", sep="\t")
    assert set(sound["protocol"]) == {"sound", "zero_shot_llr", "zero_shot_llr_masked", "zero_shot_l2", "zero_shot_cosine"}
    rows = sound[sound.protocol == "sound"]
    demo = yaml.safe_load((scored_run / "config/config.yaml").read_text())
    assert len(rows) == len(demo["models"]) + len(demo["evaluate"].get("extra_rows", []))
    assert (rows[[f"{b} auroc" for b in ("0-30kb", "30-100kb", ">100kb")]].mean(axis=1) > 0.6).all()
    assert ((rows["0-30kb auroc_lo"] <= rows["0-30kb auroc"]) & (rows["0-30kb auroc"] <= rows["0-30kb auroc_hi"])).all()
    md = (out / "tables/vep_auroc.md").read_text()
    assert "| paper |" in md and "| sound |" in md and "zero_shot_llr" in md and "approximate" in md
    assert (out / "figures/roc_sound.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_scoring_the_demo_vcf_gives_a_bgzipped_indexed_vcf_with_every_record(scored_run):
    out = scored_run / "results/demo/demo_vcf/scores"
    vcf = pysam.VariantFile(str(out / "demo_vcf.scored.vcf.gz"))
    records = list(vcf)
    source = list(pysam.VariantFile(str(scored_run / "resources/demo/variants.vcf")))
    assert len(records) == len(source) and [r.pos for r in records] == [r.pos for r in source]
    assert len(list(vcf.fetch("chr9"))) == sum(r.chrom == "chr9" for r in source)  # the .tbi works
    header = str(vcf.header)
    assert all(f"##INFO=<ID=CVEP_CADUCEUS_{m}_{f}," in header for m in ("PS", "PH") for f in ("P", "LLR", "LLR_MASKED", "L2", "COS"))
    assert "##caduceus_vep_model=<ID=caduceus_ps" in header and "WeightsSHA256=" in header and "##caduceus_vep_classifiers=" in header
    scored = [r for r in records if "CVEP_CADUCEUS_PS_P" in r.info]
    assert len(scored) > 0.9 * len(source)
    assert all(0 <= v <= 1 for r in scored for v in r.info["CVEP_CADUCEUS_PS_P"] if v is not None)
    table = pd.read_parquet(out / "demo_vcf.scores.parquet")
    assert table["id"].ne("").all() and {"caduceus_ph_llr", "caduceus_ph_llr_masked", "caduceus_ps_p"} <= set(table.columns)
    assert pd.read_csv(out / "demo_vcf.scores.tsv", sep="\t")["variant_id"].tolist() == table["variant_id"].tolist()
    # The distance came from the GTF (no distance_info), so every variant gets its own bucket's probability.
    assert table["caduceus_ps_p"].notna().all()
    skipped = pd.read_csv(out / "demo_vcf.skipped.tsv", sep="\t")
    assert {"demo_indel", "demo_mnv", "demo_symbolic", "demo_unknown_contig"} <= set(skipped["id"])
    assert len(table) + len(skipped) == 244  # every allele of the 243 records is scored or skipped
    auroc = pd.read_csv(out / "demo_vcf.auroc.tsv", sep="\t")
    assert {"p", "llr", "llr_masked", "l2", "cosine"} <= set(auroc["score"])  # the demo VCF has labels (INFO/CAUSAL)
