import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from caduceus_vep import evaluate as ev


def test_hard_label_auroc_equals_balanced_accuracy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    pred = rng.integers(0, 2, 200)
    assert roc_auc_score(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))


def test_buckets_are_inclusive_on_both_edges():
    distance = pd.Series([0, 29_999, 30_000, 30_001, 100_000, 100_001])
    masks = {b.name: b.mask(distance).tolist() for b in ev.PAPER_BUCKETS}
    assert masks["0-30kb"] == [True, True, True, False, False, False]
    assert masks["30-100kb"] == [False, False, True, True, True, False]
    assert masks[">100kb"] == [False, False, False, False, True, True]


def test_tissue_codes_are_alphabetical():
    codes = ev.tissue_codes(pd.Series(["Liver", "Adipose", "Whole_Blood", "Liver"]))
    assert codes.tolist() == [1, 0, 2, 1]


def test_feature_kinds():
    m = {"ref_fwd": np.array([[1.0]]), "alt_fwd": np.array([[3.0]]), "ref_rc": np.array([[2.0]]), "alt_rc": np.array([[5.0]])}
    assert ev.variant_features(m, "fwd").tolist() == [[1.0, 3.0]]
    assert ev.variant_features(m, "avg").tolist() == [[1.5, 4.0]]
    with pytest.raises(ValueError):
        ev.variant_features(m, "rc")


def synthetic(n_variants=120, signal_in="fwd", seed=0):
    """Variants whose label is readable from one feature kind only."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n_variants)

    def noise():
        return rng.normal(size=(n_variants, 4))

    informative = noise() + 3.0 * label[:, None]
    m = {"ref_fwd": noise(), "alt_fwd": noise(), "ref_rc": noise(), "alt_rc": noise()}
    if signal_in == "fwd":
        m["ref_fwd"] = informative
    else:  # present in fwd and rc alike: survives averaging
        m["ref_fwd"] = informative
        m["ref_rc"] = informative
    ids = pd.Series([f"v{i}" for i in range(n_variants)])
    rows = pd.DataFrame({
        "variant_id": ids, "label": label, "split": np.where(np.arange(n_variants) % 3 == 0, "test", "train"),
        "tissue": np.where(np.arange(n_variants) % 2 == 0, "Liver", "Blood"),
        "distance_to_nearest_TSS": np.where(np.arange(n_variants) % 2 == 0, 1_000, 200_000),
    })
    return rows, ids, m


def run(rows, ids, m, rc_rule="ps", seeds=(1, 2), subsample=50):
    return ev.paper_protocol(rows, ids, m, model="toy", rc_rule=rc_rule, seeds=list(seeds), c_grid=[1.0, 5.0],
                             train_subsample=subsample)


def test_protocol_finds_a_real_signal_and_not_a_shuffled_one():
    rows, ids, m = synthetic(signal_in="both")
    per_seed = run(rows, ids, m)
    assert set(per_seed["bucket"]) == {"0-30kb", ">100kb"} | {"30-100kb"}
    scored = per_seed.dropna(subset=["auroc"])
    assert scored["auroc"].min() > 0.9
    shuffled = rows.assign(label=np.random.default_rng(1).permutation(rows["label"].to_numpy()))
    null = run(shuffled, ids, m).dropna(subset=["auroc"])
    assert null["auroc"].mean() < 0.7


def test_rc_rules_use_the_right_features():
    # Signal only in the forward features; RC features are noise.
    rows, ids, m = synthetic(signal_in="fwd")
    fwd = run(rows, ids, m, rc_rule="forward").dropna(subset=["auroc"])["auroc"].mean()
    ps = run(rows, ids, m, rc_rule="ps").dropna(subset=["auroc"])["auroc"].mean()
    ph = run(rows, ids, m, rc_rule="ph").dropna(subset=["auroc"])["auroc"].mean()
    assert fwd > 0.9
    # Averaging with noise halves the signal but keeps it; Ph trains on clean forward features.
    assert ps < fwd and ph < fwd + 1e-9


def test_subsample_is_seeded_and_a_small_bucket_is_drawn_with_replacement():
    rows, ids, m = synthetic(n_variants=150, signal_in="both")
    a = run(rows, ids, m, seeds=(1, 2), subsample=30)
    b = run(rows, ids, m, seeds=(1, 2), subsample=30)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.loc[a.bucket != "30-100kb", "n_train"]) == {30}
    empty = a[a.bucket == "30-100kb"]
    assert empty["auroc"].isna().all() and (empty["note"] == "no training rows in this bucket").all()
    # The bucket has 50 training rows: 10,000 are drawn with replacement (the notebook), not the 50 once each.
    big = run(rows, ids, m, seeds=(1,), subsample=10_000)
    assert big.loc[big.bucket == "0-30kb", "n_train"].iloc[0] == 10_000


def test_missing_features_and_one_class_buckets():
    rows, ids, m = synthetic(signal_in="both")
    with pytest.raises(ValueError, match="no features"):
        run(rows.assign(variant_id=rows["variant_id"].where(rows.index > 0, "ghost")), ids, m)
    one_class = rows.assign(label=np.where(rows["split"] == "test", 1, rows["label"]))
    per_seed = run(one_class, ids, m)
    assert per_seed["auroc"].isna().all()
    assert per_seed["note"].str.contains("one class|no training rows").all()
    assert per_seed.loc[per_seed.bucket == "0-30kb", "note"].str.contains("test bucket has one class").all()


def test_summarise_hand_worked_example():
    per_seed = pd.DataFrame({
        "model": "m", "protocol": "paper", "bucket": "b",
        "C": [1, 1, 5, 5, 10, 10], "seed": [1, 2, 1, 2, 1, 2],
        "auroc": [0.60, 0.70, 0.70, 0.66, 0.68, 0.68],
        "n_train": 10, "n_train_pos": 5, "n_test": 8, "n_test_pos": 4, "note": "",
    })
    # means: C=1 -> 0.65, C=5 -> 0.68, C=10 -> 0.68; ties go to the smallest C.
    row = ev.summarise(per_seed).iloc[0]
    assert row["C"] == 5
    assert row["auroc_mean"] == pytest.approx(0.68)
    # Sample sd (ddof=1, seaborn's errorbar="sd"): sqrt(((0.70-0.68)^2 + (0.66-0.68)^2) / (2-1)) = 0.02*sqrt(2).
    assert row["auroc_sd"] == pytest.approx(math.sqrt(0.02**2 + 0.02**2))
    assert row["n_seeds"] == 2


def test_paper_protocol_hand_worked_end_to_end():
    """Perfectly separable 1-D data: every SVM predicts the test labels exactly, so AUROC = 1.

    One feature dimension: ref = 0 for label 0 and 10 for label 1 (alt 0 everywhere, RC = forward,
    one tissue). Training: 4 + 4 rows; test: two 0s and two 1s at the same points. Any RBF SVC with
    C >= 1 separates two well-apart clusters, so predict() gives [0, 0, 1, 1] and the hard-label
    AUROC is 1 for every seed and C; the tie rule then reports the smallest C.
    A flipped test set gives predictions exactly opposite to the labels: AUROC 0.
    """
    ref = np.array([[0.0]] * 6 + [[10.0]] * 6)
    m = {"ref_fwd": ref, "ref_rc": ref, "alt_fwd": np.zeros_like(ref), "alt_rc": np.zeros_like(ref)}
    ids = pd.Series([f"v{i}" for i in range(12)])
    label = np.array([0] * 6 + [1] * 6)
    split = np.array(["train"] * 4 + ["test"] * 2 + ["train"] * 4 + ["test"] * 2)
    rows = pd.DataFrame({"variant_id": ids, "label": label, "split": split, "tissue": "Liver", "distance_to_nearest_TSS": 5_000})
    per_seed = ev.paper_protocol(rows, ids, m, model="toy", rc_rule="ps", seeds=[1, 2], c_grid=[1.0, 10.0],
                                 train_subsample=6, buckets=ev.PAPER_BUCKETS[:1])
    assert per_seed["auroc"].tolist() == [1.0] * 4
    assert set(per_seed["n_train"]) == {6} and set(per_seed["n_test"]) == {4} and set(per_seed["n_test_pos"]) == {2}
    row = ev.summarise(per_seed).iloc[0]
    assert (row["C"], row["auroc_mean"], row["auroc_sd"], row["n_seeds"]) == (1.0, 1.0, 0.0, 2)
    flipped = rows.assign(label=np.where(rows["split"] == "test", 1 - rows["label"], rows["label"]))
    assert ev.paper_protocol(flipped, ids, m, model="toy", rc_rule="ps", seeds=[1], c_grid=[1.0], train_subsample=8,
                             buckets=ev.PAPER_BUCKETS[:1])["auroc"].tolist() == [0.0]


def test_sound_buckets_are_half_open():
    distance = pd.Series([0, 29_999, 30_000, 99_999, 100_000])
    masks = {b.name: b.mask(distance).tolist() for b in ev.SOUND_BUCKETS}
    assert masks["0-30kb"] == [True, True, False, False, False]
    assert masks["30-100kb"] == [False, False, True, True, False]
    assert masks[">100kb"] == [False, False, False, False, True]
    assert (sum(pd.DataFrame(masks).sum(axis=1)) == len(distance))


# --- the notebook's exact protocol: draws, sd, tissue encoder, NaN rows (hand-worked) ----------


def notebook_draw(n, k, seed):
    """The notebook's two calls, written out: seed numpy's global RNG, then np.random.choice."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return np.random.choice(n, k, replace=k > n)
    finally:
        np.random.set_state(state)


def test_sample_sd_over_seeds_hand_worked():
    # Three seeds 0.6, 0.7, 0.8: mean 0.7, squared deviations 0.01 + 0 + 0.01 = 0.02, / (3-1) -> sd 0.1
    # (numpy's default ddof=0 would give sqrt(0.02/3) = 0.0816). One seed: no sample sd (NaN).
    per_seed = pd.DataFrame({"model": "m", "protocol": "paper", "bucket": ["b"] * 3 + ["one"], "C": 1.0,
                             "seed": [1, 2, 3, 1], "auroc": [0.6, 0.7, 0.8, 0.65], "n_train": 10, "n_train_pos": 5,
                             "n_test": 8, "n_test_pos": 4, "note": ""})
    out = ev.summarise(per_seed).set_index("bucket")
    assert out.loc["b", "auroc_mean"] == pytest.approx(0.7)
    assert out.loc["b", "auroc_sd"] == pytest.approx(0.1)
    assert out.loc["one", "auroc_mean"] == pytest.approx(0.65) and math.isnan(out.loc["one", "auroc_sd"])


@pytest.mark.parametrize(("n", "k"), [(4, 10), (7, 3), (5_000, 5_000), (12_000, 5_000), (3, 5_000)])
def test_training_draw_equals_the_notebooks_numpy_calls(n, k):
    for seed in (1, 2, 3, 4, 5):
        assert ev.paper_train_draw(n, k, seed).tolist() == notebook_draw(n, k, seed).tolist()
    state = np.random.get_state()[1].copy()
    ev.paper_train_draw(n, k, 1)
    assert (np.random.get_state()[1] == state).all()  # numpy's global RNG is left alone


def test_small_bucket_draw_has_duplicates_and_differs_between_seeds():
    draws = {seed: ev.paper_train_draw(4, 10, seed).tolist() for seed in (1, 2)}
    for draw in draws.values():
        assert len(draw) == 10 and len(set(draw)) <= 4  # 10 draws from 4 rows: duplicates
    assert draws[1] != draws[2]
    assert ev.paper_train_draw(0, 10, 1).tolist() == []


def capture_jobs(monkeypatch):
    """Replace the per-(bucket, seed) SVM job by a recorder of its inputs (AUROC 0.5)."""
    calls = []

    def fake(features_train, features_test, train_index, train_codes, y_train, X_test, y_test, c_grid):
        calls.append({"train_index": train_index.tolist(), "train_codes": train_codes.tolist(), "y_train": y_train.tolist(),
                      "X_test": X_test.tolist(), "y_test": y_test.tolist(),
                      "X_train": np.column_stack([features_train[train_index], train_codes]).tolist()})
        return [0.5] * len(c_grid)

    monkeypatch.setattr(ev, "_seed_aurocs", fake)
    return calls


def tiny_table():
    """Six variants, one feature each (ref_fwd = variant number, alt 0, RC = 10 x forward).

    Rows (table order): train v0 (Liver, 0), v1 (Adipose, 1), v2 (Whole_Blood, 0), v3 (Liver, 1);
    test v4 (Whole_Blood, 1), v5 (Liver, 0). All in the first bucket.
    """
    ref = np.arange(6, dtype=float)[:, None]
    m = {"ref_fwd": ref, "alt_fwd": np.zeros_like(ref), "ref_rc": 10 * ref, "alt_rc": np.zeros_like(ref)}
    ids = pd.Series([f"v{i}" for i in range(6)])
    rows = pd.DataFrame({"variant_id": ids, "label": [0, 1, 0, 1, 1, 0], "split": ["train"] * 4 + ["test"] * 2,
                         "tissue": ["Liver", "Adipose", "Whole_Blood", "Liver", "Whole_Blood", "Liver"],
                         "distance_to_nearest_TSS": 1_000})
    return rows, ids, m


def test_paper_protocol_trains_on_the_notebooks_draw_with_test_fitted_tissue_codes(monkeypatch):
    calls = capture_jobs(monkeypatch)
    rows, ids, m = tiny_table()
    per_seed = ev.paper_protocol(rows, ids, m, model="toy", rc_rule="ph", seeds=[1, 2], c_grid=[1.0],
                                 train_subsample=12, buckets=ev.PAPER_BUCKETS[:1])
    # LabelEncoder fitted on the test split's tissues {Liver, Whole_Blood}: Liver 0, Whole_Blood 1.
    # The Adipose training row (v1) has no code and is dropped: training rows left v0, v2, v3 (codes 0, 1, 0).
    train_ids, train_codes, train_labels = [0, 2, 3], [0.0, 1.0, 0.0], [0, 0, 1]
    assert len(calls) == 2
    for seed, call in zip([1, 2], calls):
        draw = notebook_draw(3, 12, seed)  # 12 > 3 training rows: drawn with replacement (both classes drawn)
        assert call["train_index"] == [train_ids[j] for j in draw]
        assert call["train_codes"] == [train_codes[j] for j in draw]
        assert call["y_train"] == [train_labels[j] for j in draw]
        # Ph: forward features for training (ref = variant number), forward/RC average at test ((x + 10x) / 2).
        assert call["X_train"] == [[float(train_ids[j]), 0.0, train_codes[j]] for j in draw]
        assert call["X_test"] == [[5.5 * 4, 0.0, 1.0], [5.5 * 5, 0.0, 0.0]]
        assert call["y_test"] == [1, 0]
    assert calls[0]["train_index"] != calls[1]["train_index"]
    assert set(per_seed["n_train"]) == {12}
    assert per_seed["n_train_pos"].tolist() == [sum(train_labels[j] for j in notebook_draw(3, 12, s)) for s in (1, 2)]
    assert (per_seed["note"] == "1 training row(s) of tissues absent from the test split dropped").all()


def test_rows_with_nan_features_are_dropped_before_bucketing(monkeypatch):
    calls = capture_jobs(monkeypatch)
    rows, ids, m = tiny_table()
    rows["tissue"] = "Liver"
    m["ref_rc"] = m["ref_rc"].copy()
    m["ref_rc"][3, 0] = np.nan  # v3 (a training row) has a NaN in its RC features only
    per_seed = ev.paper_protocol(rows, ids, m, model="toy", rc_rule="ps", seeds=[1], c_grid=[1.0],
                                 train_subsample=3, buckets=ev.PAPER_BUCKETS[:1])
    # PS reads the RC features: v3 is dropped; training rows v0, v1, v2 (averaged features 5.5 x).
    draw = notebook_draw(3, 3, 1)
    assert calls[0]["train_index"] == [[0, 1, 2][j] for j in draw]
    assert calls[0]["X_train"] == [[5.5 * [0, 1, 2][j], 0.0, 0.0] for j in draw]
    assert (per_seed["note"] == "1 row(s) with NaN features dropped").all()
    # The forward rule never reads the RC features: nothing is dropped, v3 is drawn from.
    calls.clear()
    per_seed = ev.paper_protocol(rows, ids, m, model="toy", rc_rule="forward", seeds=[1], c_grid=[1.0],
                                 train_subsample=4, buckets=ev.PAPER_BUCKETS[:1])
    assert calls[0]["train_index"] == notebook_draw(4, 4, 1).tolist()
    assert (per_seed["note"] == "").all()


def test_tissue_codes_with_classes_from_another_split():
    codes = ev.tissue_codes(pd.Series(["Liver", "Adipose", "Whole_Blood"]), classes=["Whole_Blood", "Liver"])
    assert codes[0] == 0 and codes[2] == 1 and math.isnan(codes[1])


def test_table_rows_add_the_extra_rows_of_a_model():
    models = [{"name": "ps", "label": "Caduceus-PS", "rc_rule": "ps"}, {"name": "ph", "rc_rule": "ph"}]
    extra = [{"name": "wo", "label": "Caduceus w/o Equiv.", "model": "ph", "rc_rule": "forward"}]
    rows = ev.table_rows(models, extra)
    assert [(r.name, r.label, r.model, r.rc_rule) for r in rows] == [
        ("ps", "Caduceus-PS", "ps", "ps"), ("ph", "ph", "ph", "ph"), ("wo", "Caduceus w/o Equiv.", "ph", "forward")]
    assert [r.name for r in ev.rows_of_model(models[1], extra)] == ["ph", "wo"]
    assert [r.name for r in ev.rows_of_model(models[0], extra)] == ["ps"]
    with pytest.raises(ValueError, match="not configured"):
        ev.table_rows(models, [{**extra[0], "model": "hyena"}])
    with pytest.raises(ValueError, match="unique"):
        ev.table_rows(models, [{**extra[0], "name": "ps"}])
