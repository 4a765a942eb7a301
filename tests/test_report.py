import math

import pandas as pd
import pytest

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


# --- the paper's six Fig. 4 rows: recognition, order, published values, figure ----------------

SIX = [("caduceus_ps", "Caduceus-PS"), ("caduceus_ph", "Caduceus-Ph"), ("hyena", "HyenaDNA medium 160k"),
       ("ntv2_500m", "NT-v2 (500M)"), ("enformer", "Enformer"), ("caduceus_wo_equiv", "Caduceus w/o Equiv.")]


def test_paper_row_kinds_are_recognised_from_names_and_labels():
    kinds = [report.paper_row_kind(n, lab) for n, lab in SIX]
    assert kinds == ["caduceus_ps", "caduceus_ph", "hyenadna", "ntv2", "enformer", "caduceus_wo_equiv"]
    assert report.paper_row_kind("caduceus_ps", "Caduceus-PS (tiny, untrained demo)") == "caduceus_ps"
    assert report.paper_row_kind("m", "Caduceus w/o Equiv. (tiny, untrained demo)") == "caduceus_wo_equiv"
    assert report.paper_row_kind("nucleotide_transformer") == "ntv2"
    assert report.paper_row_kind("my_model", "Something else") is None
    assert report.paper_row_kind("caduceus_7m") is None  # a Caduceus without PS/Ph: not one of the paper's rows


def test_rows_follow_the_papers_order_then_config_order():
    rows = [("mine", "My model"), *SIX, ("other", "Other")]
    rank = report.row_rank(rows)
    assert sorted(rank, key=rank.get) == ["enformer", "ntv2_500m", "hyena", "caduceus_wo_equiv", "caduceus_ph",
                                          "caduceus_ps", "mine", "other"]
    rank = report.row_rank(rows, explicit=["other", "caduceus_ps"])
    assert sorted(rank, key=rank.get)[:3] == ["other", "caduceus_ps", "enformer"]
    frame = pd.DataFrame({"model": ["caduceus_ps", "enformer", "caduceus_ps", "enformer"],
                          "protocol": ["sound", "sound", "zero_shot_llr", "zero_shot_llr"]})
    ordered = report.order_rows(frame, report.row_rank(SIX))
    assert list(zip(ordered["protocol"], ordered["model"])) == [
        ("sound", "enformer"), ("sound", "caduceus_ps"), ("zero_shot_llr", "enformer"), ("zero_shot_llr", "caduceus_ps")]


def test_format_cell_without_a_sample_sd():
    assert report.format_cell(0.7, float("nan"), 5.0) == "0.700 (C=5)"  # one seed: no sample sd


def six_row_results():
    """Paper and sound results of the six rows in config order (SIX), bucket-wise hand values."""
    buckets = list(report.PAPER_BUCKETS)
    paper, sound = [], []
    for i, (name, _) in enumerate(SIX):
        for j, b in enumerate(buckets):
            paper.append({"model": name, "protocol": "paper", "bucket": b, "C": 1.0, "auroc_mean": 0.6 + 0.01 * i + 0.001 * j,
                          "auroc_sd": 0.01, "n_seeds": 5})
            sound.append({"model": name, "protocol": "sound", "bucket": b, "auroc": 0.62 + 0.01 * i, "auroc_lo": 0.58 + 0.01 * i,
                          "auroc_hi": 0.66 + 0.01 * i, "auprc": 0.5, "auprc_lo": 0.4, "auprc_hi": 0.6, "C": 1.0,
                          "gamma_factor": 1.0, "n_test": 100})
    return pd.DataFrame(paper), pd.DataFrame(sound), buckets


def test_fig4_comparison_puts_the_papers_values_beside_ours_per_row():
    paper, sound, buckets = six_row_results()
    rank = report.row_rank(SIX)
    ordered = sorted(SIX, key=lambda r: rank[r[0]])
    # One (hypothetical) per-row published value, to check it lands on the right row only.
    reference = pd.DataFrame({"model": ["Caduceus-PS", "Caduceus (131k)"], "protocol": ["paper", "paper"],
                              "bucket": ["30-100kb", "0-30kb"], "auroc": [0.65, 0.68]})
    fig4 = report.fig4_comparison(report.order_rows(paper, rank), report.order_rows(sound, rank), ordered, buckets, reference)
    assert list(pd.unique(fig4["row"])) == ["enformer", "ntv2_500m", "hyena", "caduceus_wo_equiv", "caduceus_ph", "caduceus_ps"]
    by = fig4.set_index(["row", "bucket"])
    # Table 7 of the paper, row by row (0-30 kb / 30-100 kb / >100 kb).
    table7 = {"caduceus_ps": [1, 1, 5], "caduceus_ph": [1, 5, 10], "caduceus_wo_equiv": [1, 1, 10], "hyena": [1, 1, 5],
              "ntv2_500m": [1, 1, 10], "enformer": [1, 1, 5]}
    for name, cs in table7.items():
        assert [by.loc[(name, b), "published_C"] for b in buckets] == cs, name
    # Ours: hyena is SIX[2] -> 0.6 + 0.02 + 0.001 * bucket; its sound CI [0.60, 0.68] around 0.64.
    assert by.loc[("hyena", "30-100kb"), "paper_auroc_mean"] == pytest.approx(0.621)
    assert (by.loc[("hyena", ">100kb"), ["sound_auroc_lo", "sound_auroc", "sound_auroc_hi"]].tolist()
            == pytest.approx([0.60, 0.64, 0.68]))
    # A published AUROC only where a reference line names that row; "Caduceus (131k)" names none.
    assert by.loc[("caduceus_ps", "30-100kb"), "published_auroc"] == 0.65
    assert fig4["published_auroc"].notna().sum() == 1
    md = report.fig4_markdown(fig4)
    # w/o Equiv. is SIX[5]: 0.6 + 0.05 + 0.002 at >100kb, sound 0.67 [0.63, 0.71]; PS is SIX[0].
    assert "| Caduceus w/o Equiv. | >100kb | 0.652 ± 0.010 (C=1) | 0.670 [0.630, 0.710] | n/a | 10 |" in md
    assert "| Caduceus-PS | 30-100kb | 0.601 ± 0.010 (C=1) | 0.620 [0.580, 0.660] | 0.650 | 1 |" in md


def test_bar_chart_with_six_rows_and_sound_cis(tmp_path):
    paper, sound, buckets = six_row_results()
    rank = report.row_rank(SIX)
    labels = dict(SIX)
    wide = report.vep_table(report.order_rows(paper, rank), labels, buckets)
    assert wide["model"].tolist() == ["Enformer", "NT-v2 (500M)", "HyenaDNA medium 160k", "Caduceus w/o Equiv.",
                                      "Caduceus-Ph", "Caduceus-PS"]
    sound_wide = report.sound_table(report.order_rows(sound, rank), labels, buckets)
    report.bar_chart(wide, buckets, tmp_path / "fig.png", "t", sound_wide)
    assert (tmp_path / "fig.png").read_bytes().startswith(b"\x89PNG")
