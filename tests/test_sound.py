import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from test_evaluate import synthetic

from caduceus_vep import metrics, sound


def with_chrom(rows):
    return rows.assign(chrom=np.where(np.arange(len(rows)) % 3 == 0, "chr9", np.where(np.arange(len(rows)) % 3 == 1, "chr1", "chr2")))


def settings(**kw):
    return sound.SoundSettings(**{"c_grid": (1.0, 5.0), "gamma_grid": (1.0,), "cv_folds": 5, "bootstrap": 200, "max_train_rows": None, **kw})


def test_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    out = metrics.bootstrap_metrics(y, s, n_resamples=300, seed=1)
    assert out["auprc"] == pytest.approx(average_precision_score(y, s))
    assert out["auroc_lo"] < out["auroc"] < out["auroc_hi"]
    assert out == metrics.bootstrap_metrics(y, s, n_resamples=300, seed=1)  # seeded
    rows = np.random.default_rng(4).integers(0, 300, (20, 300))
    assert np.allclose(metrics._auprc_rows(y[rows], s[rows]), [average_precision_score(y[r], s[r]) for r in rows])
    assert np.isnan(metrics.auroc(np.ones(5), np.arange(5)))


def test_sound_protocol_finds_signal_uses_grouped_cv_and_saves_models():
    rows, ids, m = synthetic(n_variants=180, signal_in="both")
    result = sound.sound_protocol(with_chrom(rows), ids, m, model="toy", rc_rule="ph", settings=settings())
    t = result.table.set_index("bucket")
    assert t.loc["0-30kb", "auroc"] > 0.9 and t.loc["0-30kb", "cv_folds"] == 2  # two training chromosomes
    assert t.loc["0-30kb", "auroc_lo"] <= t.loc["0-30kb", "auroc"] <= t.loc["0-30kb", "auroc_hi"]
    assert t.loc["30-100kb", "note"] == "no training rows in this bucket"
    assert set(result.models) == {"0-30kb", ">100kb"}
    model = result.models["0-30kb"]
    assert model.platt[0] > 0  # higher decision score -> higher probability
    assert result.tissues == ["Blood", "Liver"]
    # Test scores are decision_function values, one per test row of the bucket.
    assert len(result.test_scores[result.test_scores.bucket == "0-30kb"]) == t.loc["0-30kb", "n_test"]


def test_sound_protocol_null_and_cap():
    rows, ids, m = synthetic(n_variants=180, signal_in="both")
    shuffled = with_chrom(rows).assign(label=np.random.default_rng(1).permutation(rows["label"].to_numpy()))
    null = sound.sound_protocol(shuffled, ids, m, model="toy", rc_rule="ps", settings=settings()).table
    assert null["auroc"].dropna().mean() < 0.7
    capped = sound.sound_protocol(with_chrom(rows), ids, m, model="toy", rc_rule="ps", settings=settings(max_train_rows=20)).table
    assert capped.set_index("bucket").loc["0-30kb", "n_train"] == 20


def test_one_training_chromosome_is_reported():
    rows, ids, m = synthetic(n_variants=120, signal_in="both")
    result = sound.sound_protocol(rows.assign(chrom="chr1"), ids, m, model="toy", rc_rule="ps", settings=settings())
    assert result.table.set_index("bucket").loc["0-30kb", "note"].startswith("one training chromosome")


def test_tissue_onehot():
    onehot = sound.tissue_onehot(pd.Series(["Liver", "Blood", "Brain"]), ["Blood", "Liver"])
    assert onehot.tolist() == [[0, 1], [1, 0], [0, 0]]


def test_sound_protocol_drops_rows_with_nan_features():
    rows, ids, m = synthetic(n_variants=180, signal_in="both")
    rows = with_chrom(rows)
    m = {k: v.copy() for k, v in m.items()}
    # Two 0-30 kb training variants (rows 2 and 4: even = 1 kb, not a multiple of 3 = train) get a NaN.
    m["ref_rc"][2, 1] = np.nan
    m["alt_rc"][4, 0] = np.nan
    full = sound.sound_protocol(rows, ids, {k: np.nan_to_num(v) for k, v in m.items()}, model="toy", rc_rule="ps",
                                settings=settings(bootstrap=0)).table.set_index("bucket")
    result = sound.sound_protocol(rows, ids, m, model="toy", rc_rule="ps", settings=settings(bootstrap=0))
    t = result.table.set_index("bucket")
    assert t.loc["0-30kb", "n_train"] == full.loc["0-30kb", "n_train"] - 2
    assert t.loc[">100kb", "n_train"] == full.loc[">100kb", "n_train"]
    assert (t["note"].str.contains("2 row\\(s\\) with NaN features dropped")).all()
    # The forward rule reads no RC features: nothing to drop.
    fwd = sound.sound_protocol(rows, ids, m, model="toy", rc_rule="forward", settings=settings(bootstrap=0)).table
    assert not fwd["note"].str.contains("NaN").any()
