"""The shared-kernel SVM evaluation equals plain per-C ``StandardScaler + SVC(kernel="rbf")`` fits.

Reference side of every comparison: sklearn's own pipeline (or ``sklearn.metrics.pairwise``), fitted
per C as the protocols did before kernels were shared across the C grid.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import rbf_kernel as sk_rbf_kernel
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from caduceus_vep import evaluate as ev
from caduceus_vep import sound

RTOL = 1e-8


def weak_signal(n_train=400, n_test=250, n_features=24, seed=0, constant_column=True):
    """Overlapping classes (most rows become support vectors), optionally with a constant column like a one-tissue code."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_train + n_test)
    X = rng.normal(size=(n_train + n_test, n_features))
    X[:, :3] += 0.6 * y[:, None]
    X[:, 3] *= 50.0  # a wide column: standardisation matters
    if constant_column:
        X[:, -1] = 7.0
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def assert_scores_close(actual, expected):
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale)


def test_rbf_kernel_matches_sklearn_pairwise():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(37, 9)), rng.normal(size=(23, 9))
    np.testing.assert_allclose(ev.rbf_kernel(A, B, 0.3), sk_rbf_kernel(A, B, gamma=0.3), rtol=1e-12, atol=1e-14)
    # The symmetric (A is B) path.
    np.testing.assert_allclose(ev.rbf_kernel(A, A, 0.3), sk_rbf_kernel(A, A, gamma=0.3), rtol=1e-12, atol=1e-14)
    assert ev.rbf_kernel(A.astype(np.float32), B, 0.3).dtype == np.float64


def test_kernel_decision_is_blockwise_but_equal_to_the_whole_product():
    rng = np.random.default_rng(2)
    X, basis = rng.normal(size=(50, 6)), rng.normal(size=(11, 6))
    coef = rng.normal(size=(11, 3))
    expected = sk_rbf_kernel(X, basis, gamma=0.2) @ coef + np.array([0.1, -0.2, 0.3])
    # 4 rows per block: 13 blocks, the last one ragged.
    blocks = ev.kernel_decision(X, basis, coef, 0.2, np.array([0.1, -0.2, 0.3]), chunk_bytes=8 * 11 * 4)
    np.testing.assert_allclose(blocks, expected, rtol=1e-12)
    one_d = ev.kernel_decision(X, basis, coef[:, 0], 0.2, 0.1, chunk_bytes=1)  # below one row: one row per block
    np.testing.assert_allclose(one_d, expected[:, 0], rtol=1e-12)
    assert ev.kernel_decision(X[:0], basis, coef, 0.2, 0.0).shape == (0, 3)


@pytest.mark.parametrize("gamma", ["scale", 0.05])
def test_grid_decisions_and_labels_equal_per_c_pipelines(gamma):
    X_tr, y_tr, X_te, y_te = weak_signal()
    c_grid = [0.3, 1.0, 10.0]
    decisions, classes = ev.rbf_svm_grid(X_tr, y_tr, X_te, c_grid, gamma=gamma, chunk_bytes=8 * len(X_tr) * 32)
    aurocs = []
    for j, C in enumerate(c_grid):
        reference = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=gamma)).fit(X_tr, y_tr)
        assert_scores_close(decisions[:, j], reference.decision_function(X_te))
        labels = ev.hard_labels(decisions[:, j], classes)
        np.testing.assert_array_equal(labels, reference.predict(X_te))
        aurocs.append(roc_auc_score(y_te, labels))
    # The case is not degenerate: the C grid changes the predictions.
    assert len(set(np.round(aurocs, 12))) > 1


def test_grid_handles_labels_that_start_with_the_positive_class():
    X_tr, y_tr, X_te, _ = weak_signal(seed=5)
    y_tr = y_tr.copy()
    y_tr[0] = 1
    decisions, classes = ev.rbf_svm_grid(X_tr, y_tr, X_te, [1.0])
    reference = make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf", gamma="scale")).fit(X_tr, y_tr)
    assert_scores_close(decisions[:, 0], reference.decision_function(X_te))
    np.testing.assert_array_equal(ev.hard_labels(decisions[:, 0], classes), reference.predict(X_te))


def paper_rows(n_variants=700, seed=3):
    """Two populated buckets, weak signal in the forward and RC features, two tissues."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n_variants)
    m = {k: rng.normal(size=(n_variants, 6)).astype(np.float32) for k in ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc")}
    m["ref_fwd"][:, :2] += 0.7 * label[:, None]
    m["ref_rc"][:, :2] += 0.7 * label[:, None]
    ids = pd.Series([f"v{i}" for i in range(n_variants)])
    rows = pd.DataFrame({"variant_id": ids, "label": label,
                         "split": np.where(rng.random(n_variants) < 0.3, "test", "train"),
                         "tissue": rng.choice(["Liver", "Blood"], n_variants),
                         "distance_to_nearest_TSS": rng.choice([1_000, 50_000], n_variants)})
    return rows, ids, m


def per_c_reference(rows, ids, m, rc_rule, seeds, c_grid, subsample):
    """The protocol as it was before kernels were shared: one pipeline fit and predict() per (bucket, seed, C)."""
    train_kind, test_kind = ev.RC_RULES[rc_rule]
    feats = {k: ev.variant_features(m, k) for k in (train_kind, test_kind)}
    position = pd.Series(np.arange(len(ids)), index=ids.to_numpy())
    row_index = position.loc[rows["variant_id"]].to_numpy()
    codes = ev.tissue_codes(rows["tissue"])
    out = {}
    for bucket in ev.PAPER_BUCKETS[:2]:
        in_bucket = bucket.mask(rows["distance_to_nearest_TSS"]).to_numpy()
        train_rows = rows[in_bucket & (rows["split"] == "train").to_numpy()]
        test = in_bucket & (rows["split"] == "test").to_numpy()
        X_te = np.column_stack([feats[test_kind][row_index[test]], codes[test]])
        for seed in seeds:
            pos = rows.index.get_indexer(train_rows.sample(n=min(len(train_rows), subsample), random_state=seed).index)
            X_tr = np.column_stack([feats[train_kind][row_index[pos]], codes[pos]])
            for C in c_grid:
                pipe = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma="scale")).fit(X_tr, rows["label"].to_numpy()[pos])
                out[(bucket.name, C, seed)] = roc_auc_score(rows["label"].to_numpy()[test], pipe.predict(X_te))
    return out


@pytest.mark.parametrize("rc_rule,n_jobs", [("ps", 1), ("ph", 2)])
def test_paper_protocol_per_seed_aurocs_equal_per_c_pipelines(rc_rule, n_jobs):
    rows, ids, m = paper_rows()
    seeds, c_grid = [1, 2, 3], [0.5, 1.0, 10.0]
    per_seed = ev.paper_protocol(rows, ids, m, model="toy", rc_rule=rc_rule, seeds=seeds, c_grid=c_grid, train_subsample=150,
                                 buckets=ev.PAPER_BUCKETS[:2], n_jobs=n_jobs)
    expected = per_c_reference(rows, ids, m, rc_rule, seeds, c_grid, 150)
    got = {(r.bucket, r.C, r.seed): r.auroc for r in per_seed.itertuples()}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # Not a degenerate case: AUROCs differ between seeds and C values.
    assert per_seed["auroc"].nunique() > 3 and 0.55 < per_seed["auroc"].mean() < 0.95


def sound_case(seed=4):
    X_tr, y_tr, X_te, y_te = weak_signal(n_train=360, n_test=200, seed=seed, constant_column=False)
    groups = np.array([f"chr{i % 4 + 1}" for i in range(len(y_tr))])
    return X_tr, y_tr, X_te, y_te, groups


def test_sound_fold_decisions_equal_per_c_pipelines():
    X, y, _, _, groups = sound_case()
    c_grid = (1.0, 5.0)
    for train, val in GroupKFold(n_splits=3).split(X, y, groups):
        for factor in (0.5, 2.0):
            gamma = factor / X.shape[1]
            decisions = sound._fold_decisions(X, y, train, val, c_grid, gamma)
            for j, C in enumerate(c_grid):
                reference = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=gamma)).fit(X[train], y[train])
                assert_scores_close(decisions[:, j], reference.decision_function(X[val]))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_choose_hyperparameters_out_of_fold_scores_equal_pipelines(n_jobs):
    X, y, _, _, groups = sound_case()
    settings = sound.SoundSettings(c_grid=(0.5, 5.0), gamma_grid=(0.5, 2.0), cv_folds=3)
    C, factor, cv, folds, oof, note = sound.choose_hyperparameters(X, y, groups, settings, n_jobs=n_jobs)
    assert folds == 3 and note == ""
    expected = np.full(len(y), np.nan)
    aucs = []
    for train, val in GroupKFold(n_splits=3).split(X, y, groups):
        pipe = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=factor / X.shape[1])).fit(X[train], y[train])
        expected[val] = pipe.decision_function(X[val])
        aucs.append(roc_auc_score(y[val], expected[val]))
    assert_scores_close(oof, expected)
    assert cv == pytest.approx(np.mean(aucs), abs=1e-12)


def test_bucket_model_is_plain_arrays_and_equals_the_sklearn_pipeline():
    X_tr, y_tr, X_te, _, _ = sound_case(seed=6)
    bucket = ev.SOUND_BUCKETS[0]
    model = sound.fit_bucket_model(X_tr, y_tr, 5.0, 2.0, bucket=bucket, platt=(1.5, -0.2), train_sha256="x")
    gamma = 2.0 / X_tr.shape[1]
    reference = make_pipeline(StandardScaler(), SVC(C=5.0, kernel="rbf", gamma=gamma)).fit(X_tr, y_tr)
    svc = reference[-1]
    assert not hasattr(model, "pipeline")
    assert (model.C, model.gamma_factor, model.gamma, model.platt) == (5.0, 2.0, pytest.approx(gamma), (1.5, -0.2))
    assert isinstance(model.intercept, float)
    for name in ("scaler_mean", "scaler_scale", "support_vectors", "dual_coef"):
        assert type(getattr(model, name)) is np.ndarray, name
    np.testing.assert_allclose(model.scaler_mean, reference[0].mean_, rtol=1e-15)
    np.testing.assert_allclose(model.scaler_scale, reference[0].scale_, rtol=1e-15)
    assert model.support_vectors.shape == (len(svc.support_), X_tr.shape[1]) and model.dual_coef.shape == (len(svc.support_),)
    np.testing.assert_allclose(model.support_vectors, reference[0].transform(X_tr[svc.support_]), rtol=1e-15)
    np.testing.assert_allclose(model.dual_coef, svc.dual_coef_[0], rtol=1e-8, atol=1e-10)
    assert model.intercept == pytest.approx(svc.intercept_[0], rel=1e-8)
    scores = model.decision_function(X_te, chunk_bytes=8 * len(svc.support_) * 16)  # 16 rows per block
    assert_scores_close(scores, reference.decision_function(X_te))
    np.testing.assert_array_equal((scores >= 0).astype(int), reference.predict(X_te))
    with pytest.raises(ValueError, match="design rows"):
        model.decision_function(X_te[:, :-1])


def test_sound_protocol_test_scores_equal_the_refitted_pipeline():
    from test_evaluate import synthetic

    rows, ids, m = synthetic(n_variants=240, signal_in="both", seed=7)
    rows = rows.assign(chrom=np.array(["chr9", "chr1", "chr2", "chr3"])[np.arange(len(rows)) % 4])
    # Blur the planted signal so that the SVM has many support vectors.
    m = {k: v + np.random.default_rng(8).normal(scale=2.0, size=v.shape) for k, v in m.items()}
    settings = sound.SoundSettings(c_grid=(1.0, 5.0), gamma_grid=(0.5, 1.0), cv_folds=3, bootstrap=0, max_train_rows=None)
    result = sound.sound_protocol(rows, ids, m, model="toy", rc_rule="ps", settings=settings, buckets=ev.SOUND_BUCKETS[:1])
    model = result.models["0-30kb"]
    features = ev.variant_features(m, "avg")
    in_bucket = ev.SOUND_BUCKETS[0].mask(rows["distance_to_nearest_TSS"]).to_numpy()
    X = sound.sound_design(features, rows["tissue"], result.tissues)
    train, test = in_bucket & (rows["split"] == "train").to_numpy(), in_bucket & (rows["split"] == "test").to_numpy()
    reference = make_pipeline(StandardScaler(), SVC(C=model.C, kernel="rbf", gamma=model.gamma_factor / X.shape[1]))
    reference.fit(X[train], rows["label"].to_numpy()[train])
    scored = result.test_scores.set_index("variant_id").loc[rows["variant_id"][test], "score"].to_numpy()
    assert_scores_close(scored, reference.decision_function(X[test]))
    assert_scores_close(model.decision_function(X[test]), reference.decision_function(X[test]))
