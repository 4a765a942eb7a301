"""The ``sound`` protocol: the paper's classifier with its known weaknesses fixed.

Differences from ``paper`` (protocol reference, section 4, "known weaknesses"), per bucket:
- half-open buckets [0, 30k), [30k, 100k), [100k, inf): every variant lands in exactly one;
- rows with NaN features dropped first (as in ``paper``; counted in ``note``);
- features: the model's RC-averaged embeddings for train *and* test ("avg"; "fwd" for models
  without RC features, rc_rule ``forward``), plus the tissue one-hot encoded (not an ordinal);
- all training rows, or a seeded random subsample of ``max_train_rows`` (RBF SVC fits are O(n^2));
- C and gamma chosen by chromosome-grouped cross-validation (``GroupKFold`` by chromosome) on the
  training split only; the test split is touched once, by the refitted model;
- AUROC and AUPRC from ``decision_function`` scores, with seeded bootstrap 95 % CIs over test rows;
- a probability of being causal by Platt scaling (a 1-D logistic regression) fitted on the
  out-of-fold decision scores of the chosen (C, gamma); used when scoring users' variants.
gamma is given as a factor times 1/n_features, which is sklearn's ``gamma="scale"`` on standardised
features (their overall variance is 1), so one grid fits every embedding width.

Speed without changing a result: each (fold, gamma) computes its RBF kernel once and fits
``SVC(kernel="precomputed")`` for every C on it (``evaluate.rbf_svm_grid``); the final refit does the
same for the chosen (C, gamma). The fitted classifier is kept as plain arrays (``BucketModel``: scaler
mean/scale, standardised support vectors, dual coefficients, intercept), not as an sklearn object,
so it can be stored without pickle and evaluated with numpy alone; its decision values equal those of
``make_pipeline(StandardScaler(), SVC(C, kernel="rbf", gamma))`` to float rounding.
Memory per worker: one training kernel, n^2 x 8 bytes (a 16,000-row CV fold: 2.0 GB; the 20,000-row
final refit: 3.2 GB), plus one kernel block of at most ``evaluate.KERNEL_CHUNK_BYTES`` for
validation and test rows; ``n_jobs`` workers hold one training kernel each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# scikit-learn and joblib inside the fitting functions: bundles (scoring jobs) import this module for
# its dataclasses only (see the note in evaluate.py).
from caduceus_vep.evaluate import (
    KERNEL_CHUNK_BYTES,
    SOUND_BUCKETS,
    Bucket,
    blas_threads,
    kernel_decision,
    nan_feature_rows,
    rbf_kernel,
    rbf_svm_grid,
    variant_features,
)
from caduceus_vep.metrics import METRIC_COLUMNS, auroc, bootstrap_metrics

# Train and test on the same RC-invariant features (the paper's Ph rule trains on forward features
# and tests on the average, a train/test mismatch).
SOUND_FEATURES = {"ps": "avg", "ph": "avg", "forward": "fwd"}
SOUND_COLUMNS = ["model", "protocol", "bucket", "C", "gamma_factor", "cv_auroc", "cv_folds", *METRIC_COLUMNS,
                 "n_train", "n_train_pos", "n_test", "n_test_pos", "note"]
SCORE_COLUMNS = ["model", "bucket", "variant_id", "tissue", "label", "score"]


@dataclass(frozen=True)
class SoundSettings:
    """Grids, folds, bootstrap resamples, training-row cap (None = all) and the one seed used."""

    c_grid: tuple[float, ...] = (1.0, 5.0, 10.0)
    gamma_grid: tuple[float, ...] = (0.5, 1.0, 2.0)
    cv_folds: int = 5
    bootstrap: int = 1000
    max_train_rows: int | None = 20_000
    seed: int = 1

    @classmethod
    def from_config(cls, section: dict | None) -> SoundSettings:
        s = section or {}
        cap = s.get("max_train_rows", cls.max_train_rows)
        return cls(tuple(float(c) for c in s.get("c_grid", cls.c_grid)), tuple(float(g) for g in s.get("gamma_grid", cls.gamma_grid)),
                   int(s.get("cv_folds", cls.cv_folds)), int(s.get("bootstrap", cls.bootstrap)),
                   None if cap is None else int(cap), int(s.get("seed", cls.seed)))


@dataclass
class BucketModel:
    """A fitted bucket classifier as plain arrays: hyper-parameters, Platt coefficients, the RBF SVM.

    The SVM is ``StandardScaler`` + ``SVC(C, kernel="rbf", gamma)`` on the bucket's training rows,
    held as numpy arrays so that it needs neither pickle nor a matching sklearn version to be used:
    decision(x) = sum_s dual_coef[s] * exp(-gamma * ||standardise(x) - support_vectors[s]||^2) + intercept,
    with standardise(x) = (x - scaler_mean) / scaler_scale; > 0 leans towards label 1.
    """

    bucket: Bucket
    C: float
    gamma_factor: float       # the grid value: gamma = gamma_factor / n_features
    gamma: float              # the absolute gamma, applied to standardised features
    platt: tuple[float, float]  # probability = 1 / (1 + exp(-(a * score + b)))
    train_sha256: str
    scaler_mean: np.ndarray   # [F]
    scaler_scale: np.ndarray  # [F] (1 for constant columns, as StandardScaler does)
    support_vectors: np.ndarray  # [S, F], already standardised
    dual_coef: np.ndarray     # [S], signed (y_s * alpha_s)
    intercept: float

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """The training scaler applied to raw design rows (same arithmetic as StandardScaler.transform)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.scaler_mean):
            raise ValueError(f"expected [N, {len(self.scaler_mean)}] design rows, got shape {X.shape}")
        return (X - self.scaler_mean) / self.scaler_scale

    def decision_function(self, X: np.ndarray, chunk_bytes: int = KERNEL_CHUNK_BYTES) -> np.ndarray:
        """SVM decision values of raw design rows ``X`` [N, F] -> [N]; kernel blocks of <= ``chunk_bytes``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.scaler_mean):
            raise ValueError(f"expected [N, {len(self.scaler_mean)}] design rows, got shape {X.shape}")
        return kernel_decision(X, self.support_vectors, self.dual_coef, self.gamma, self.intercept,
                               transform=self.standardise, chunk_bytes=chunk_bytes)

    def probability(self, scores: np.ndarray) -> np.ndarray:
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(scores) + b)))


@dataclass
class SoundResult:
    table: pd.DataFrame
    test_scores: pd.DataFrame
    models: dict[str, BucketModel] = field(default_factory=dict)
    tissues: list[str] = field(default_factory=list)  # one-hot column order
    feature_kind: str = "avg"


def tissue_onehot(tissues: pd.Series, categories: list[str]) -> np.ndarray:
    """One column per category (sorted); a tissue outside ``categories`` is all zeros."""
    return (tissues.to_numpy()[:, None] == np.asarray(categories, dtype=object)[None, :]).astype(np.float64)


def sound_design(features: np.ndarray, tissues: pd.Series, categories: list[str]) -> np.ndarray:
    """Embedding features per row with the one-hot tissue columns appended."""
    return np.column_stack([features, tissue_onehot(tissues, categories)])


def _fold_decisions(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, c_grid: tuple[float, ...],
                    gamma: float) -> np.ndarray:
    """Validation decision values [len(val), len(c_grid)] of one (fold, gamma): one kernel, every C."""
    decisions, _ = rbf_svm_grid(X[train], y[train], X[val], c_grid, gamma=gamma)
    return decisions


def fit_bucket_model(X: np.ndarray, y: np.ndarray, C: float, gamma_factor: float, *, bucket: Bucket,
                     platt: tuple[float, float], train_sha256: str) -> BucketModel:
    """Fit StandardScaler + RBF SVC(C, gamma = gamma_factor / n_features) on (X, y) as a ``BucketModel``."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    gamma = gamma_factor / X.shape[1]
    K = rbf_kernel(Xs, Xs, gamma)
    svc = SVC(C=C, kernel="precomputed").fit(K, y)
    del K
    if not np.array_equal(svc.classes_, [0, 1]):
        raise ValueError(f"expected labels 0 and 1, got {svc.classes_.tolist()}")
    return BucketModel(bucket=bucket, C=float(C), gamma_factor=float(gamma_factor), gamma=float(gamma), platt=platt,
                       train_sha256=train_sha256, scaler_mean=scaler.mean_.copy(), scaler_scale=scaler.scale_.copy(),
                       support_vectors=Xs[svc.support_].copy(), dual_coef=svc.dual_coef_[0].copy(),
                       intercept=float(svc.intercept_[0]))


def _checksum(X: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def choose_hyperparameters(X: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: SoundSettings,
                           n_jobs: int = 1) -> tuple[float, float, float, int, np.ndarray, str]:
    """Grouped CV over (C, gamma factor): returns C, factor, CV AUROC, folds, out-of-fold scores, note.

    The CV AUROC is the mean over folds whose validation part has both classes; ties go to the
    smallest C, then the smallest gamma. With fewer than two training chromosomes there is no
    grouped CV: the first grid values are used and the note says so.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from sklearn.model_selection import GroupKFold

    n_features = X.shape[1]
    n_groups = len(np.unique(groups))
    folds = min(settings.cv_folds, n_groups)
    if folds < 2:
        note = "one training chromosome: no grouped CV, first grid values used"
        return settings.c_grid[0], settings.gamma_grid[0], float("nan"), 0, np.full(len(y), np.nan), note
    splits = list(GroupKFold(n_splits=folds).split(X, y, groups))
    c_grid = tuple(settings.c_grid)
    # One job per (fold, gamma): its kernel is computed once and every C is fitted on it. Threads
    # share X; libsvm, BLAS and exp release the GIL; one BLAS thread per worker keeps n_jobs cores.
    units = [(f, g) for f in range(len(splits)) for g in settings.gamma_grid]
    workers = effective_n_jobs(n_jobs)
    with blas_threads(1):
        decisions = Parallel(n_jobs=workers, backend="threading")(
            delayed(_fold_decisions)(X, y, splits[f][0], splits[f][1], c_grid, g / n_features) for f, g in units)
    by_unit = dict(zip(units, decisions))
    grid = [(C, g) for C in c_grid for g in settings.gamma_grid]
    results = []
    for C, g in grid:
        j = c_grid.index(C)
        oof = np.full(len(y), np.nan)
        aucs = []
        for f, (_, va) in enumerate(splits):
            oof[va] = by_unit[(f, g)][:, j]
            aucs.append(auroc(y[va], oof[va]))
        results.append((C, g, float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan"), oof))
    scored = [r for r in results if not np.isnan(r[2])]
    if not scored:
        C, g, _, oof = results[0]
        return C, g, float("nan"), folds, oof, "no CV fold with both classes: first grid values used"
    best = max(r[2] for r in scored)
    C, g, cv, oof = min((r for r in scored if np.isclose(r[2], best, rtol=0, atol=1e-12)), key=lambda r: (r[0], r[1]))
    return C, g, cv, folds, oof, ""


def platt_coefficients(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of a logistic regression of labels on decision scores (Platt scaling)."""
    ok = ~np.isnan(scores)
    if ok.sum() == 0 or len(np.unique(labels[ok])) < 2:
        return 1.0, 0.0
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6).fit(scores[ok, None], labels[ok])
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def sound_protocol(
    rows: pd.DataFrame,
    variant_ids: pd.Series,
    matrices: dict[str, np.ndarray],
    *,
    model: str,
    rc_rule: str,
    settings: SoundSettings,
    buckets: tuple[Bucket, ...] = SOUND_BUCKETS,
    n_jobs: int = 1,
) -> SoundResult:
    """The sound protocol for one model. ``rows`` needs variant_id, chrom, label, split, tissue, distance.

    ``n_jobs`` worker threads run the (fold, gamma) jobs of the grouped CV with one BLAS thread each;
    the final refit and the test scores run with n_jobs BLAS threads: n_jobs cores throughout.
    """
    from joblib import effective_n_jobs

    kind = SOUND_FEATURES[rc_rule]
    rows = rows.reset_index(drop=True)
    position = pd.Series(np.arange(len(variant_ids)), index=variant_ids.to_numpy())
    missing = ~rows["variant_id"].isin(position.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} rows have no features, e.g. {rows.loc[missing, 'variant_id'].iloc[0]}")
    kind_features = variant_features(matrices, kind)
    # As in the paper protocol, rows with NaN features are dropped before bucketing (SVC refuses NaN).
    nan_rows = nan_feature_rows([kind_features], position.loc[rows["variant_id"]].to_numpy())
    rows = rows[~nan_rows].reset_index(drop=True)
    dropped = f"{int(nan_rows.sum())} row(s) with NaN features dropped" if nan_rows.any() else ""
    features = kind_features[position.loc[rows["variant_id"]].to_numpy()]
    categories = sorted(rows["tissue"].astype(str).unique())
    X_all = sound_design(features, rows["tissue"].astype(str), categories)
    labels = rows["label"].to_numpy().astype(np.int64)
    is_train = (rows["split"] == "train").to_numpy()
    rng = np.random.default_rng(settings.seed)
    records, score_frames, fitted = [], [], {}
    for bucket in buckets:
        in_bucket = bucket.mask(rows["distance_to_nearest_TSS"]).to_numpy()
        train_idx = np.flatnonzero(in_bucket & is_train)
        test_idx = np.flatnonzero(in_bucket & ~is_train)
        if settings.max_train_rows is not None and len(train_idx) > settings.max_train_rows:
            train_idx = np.sort(rng.choice(train_idx, settings.max_train_rows, replace=False))
        y_tr, y_te = labels[train_idx], labels[test_idx]
        record = {"model": model, "protocol": "sound", "bucket": bucket.name, "n_train": len(train_idx),
                  "n_train_pos": int(y_tr.sum()), "n_test": len(test_idx), "n_test_pos": int(y_te.sum())}
        if len(train_idx) == 0 or len(np.unique(y_tr)) < 2:
            note = "no training rows in this bucket" if len(train_idx) == 0 else "training rows have one class only"
            records.append({**record, **dict.fromkeys(["C", "gamma_factor", "cv_auroc", *METRIC_COLUMNS], float("nan")), "cv_folds": 0,
                            "note": "; ".join(filter(None, [note, dropped]))})
            continue
        X_tr = X_all[train_idx]
        groups = rows["chrom"].to_numpy()[train_idx]
        C, g, cv_auroc, folds, oof, note = choose_hyperparameters(X_tr, y_tr, groups, settings, n_jobs)
        with blas_threads(effective_n_jobs(n_jobs)):
            fitted[bucket.name] = model_fit = fit_bucket_model(X_tr, y_tr, C, g, bucket=bucket, platt=platt_coefficients(oof, y_tr),
                                                               train_sha256=_checksum(X_tr, y_tr))
            scores = model_fit.decision_function(X_all[test_idx]) if len(test_idx) else np.zeros(0)
        metrics = bootstrap_metrics(y_te, scores, n_resamples=settings.bootstrap, seed=settings.seed)
        if len(test_idx) == 0 or len(np.unique(y_te)) < 2:
            note = "; ".join(filter(None, [note, "test bucket has one class or no rows; AUROC undefined"]))
        records.append({**record, "C": C, "gamma_factor": g, "cv_auroc": cv_auroc, "cv_folds": folds, **metrics,
                        "note": "; ".join(filter(None, [note, dropped]))})
        score_frames.append(pd.DataFrame({"model": model, "bucket": bucket.name, "variant_id": rows["variant_id"].to_numpy()[test_idx],
                                          "tissue": rows["tissue"].to_numpy()[test_idx], "label": y_te, "score": scores}))
    table = pd.DataFrame(records, columns=SOUND_COLUMNS)
    test_scores = pd.concat(score_frames, ignore_index=True) if score_frames else pd.DataFrame(columns=SCORE_COLUMNS)
    return SoundResult(table, test_scores[SCORE_COLUMNS], fitted, categories, kind)
