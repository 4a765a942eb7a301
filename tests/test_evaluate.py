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


def test_subsample_is_seeded_and_capped():
    rows, ids, m = synthetic(n_variants=150, signal_in="both")
    a = run(rows, ids, m, seeds=(1, 2), subsample=30)
    b = run(rows, ids, m, seeds=(1, 2), subsample=30)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.loc[a.bucket != "30-100kb", "n_train"]) == {30}
    empty = a[a.bucket == "30-100kb"]
    assert empty["auroc"].isna().all() and (empty["note"] == "no training rows in this bucket").all()
    capped = run(rows, ids, m, seeds=(1,), subsample=10_000)
    assert capped.loc[capped.bucket == "0-30kb", "n_train"].iloc[0] == 50  # all 50 training rows of the bucket


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
    assert row["auroc_sd"] == pytest.approx(0.02)  # numpy std, ddof=0
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
