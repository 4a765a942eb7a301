import math

import pandas as pd

from caduceus_vep import report


def summary():
    return pd.DataFrame({
        "model": ["ps", "ps", "ph"], "protocol": "paper", "bucket": ["near", "far", "near"],
        "C": [1.0, 5.0, 10.0], "auroc_mean": [0.7, 0.6, 0.65], "auroc_sd": [0.01, 0.02, 0.0],
    })


def test_format_cell():
    assert report.format_cell(0.6754, 0.0101, 1.0) == "0.675 ± 0.010 (C=1)"
    assert report.format_cell(float("nan"), float("nan"), float("nan")) == "n/a"


def test_wide_table_and_markdown():
    wide = report.vep_table(summary(), {"ps": "Caduceus-PS"}, ["near", "far"])
    assert list(wide["model"]) == ["Caduceus-PS", "ph"]
    assert wide.loc[0, "far C"] == 5.0
    assert math.isnan(wide.loc[1, "far auroc_mean"])  # the ph model has no "far" result
    md = report.markdown_table(wide, ["near", "far"], "T")
    assert "| Caduceus-PS | paper | 0.700 ± 0.010 (C=1) | 0.600 ± 0.020 (C=5) |" in md
    assert "| ph | paper | 0.650 ± 0.000 (C=10) | n/a |" in md


def test_tsv_is_byte_stable(tmp_path):
    wide = report.vep_table(summary(), {}, ["near", "far"])
    report.write_tsv(wide, tmp_path / "a.tsv")
    report.write_tsv(wide.copy(), tmp_path / "b.tsv")
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    assert "0.700000" in (tmp_path / "a.tsv").read_text()


def test_bar_chart_writes_png(tmp_path):
    wide = report.vep_table(summary(), {}, ["near", "far"])
    report.bar_chart(wide, ["near", "far"], tmp_path / "fig.png", "t")
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sound_only_run_still_lists_the_published_values(tmp_path):
    """evaluate.protocols: [sound] leaves no paper rows; the report must still be written."""
    from conftest import REPO

    from caduceus_vep import evaluate as ev

    buckets = ["0-30kb", "30-100kb", ">100kb"]
    wide = report.vep_table(ev.summarise(pd.DataFrame(columns=ev.PER_SEED_COLUMNS)), {}, buckets)
    reference = report.read_reference_values(REPO / "resources/reference_values.tsv")
    comparison = report.reference_comparison(wide, reference)
    assert len(comparison) == len(reference) and comparison["our_auroc_mean"].isna().all()
    text = report.full_markdown("t", wide, buckets, pd.DataFrame(), buckets, comparison, {})
    assert "not comparable" in text
    report.bar_chart(wide, buckets, tmp_path / "f.png", "t")
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
