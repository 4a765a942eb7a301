"""The ``sound`` protocol: the paper's classifier with its known weaknesses fixed.

Differences from ``paper`` (protocol reference, section 4, "known weaknesses"), per bucket:
- half-open buckets [0, 30k), [30k, 100k), [100k, inf): every variant lands in exactly one;
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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from caduceus_vep.evaluate import SOUND_BUCKETS, Bucket, variant_features
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
    """A fitted bucket classifier: pipeline, chosen hyper-parameters and Platt coefficients."""

    bucket: Bucket
    pipeline: Pipeline
    C: float
    gamma_factor: float
    platt: tuple[float, float]  # probability = 1 / (1 + exp(-(a * score + b)))
    train_sha256: str

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


def _pipeline(C: float, gamma: float) -> Pipeline:
    return make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=gamma))


def _fold_scores(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, C: float, gamma: float) -> np.ndarray:
    return _pipeline(C, gamma).fit(X[train], y[train]).decision_function(X[val])


def _fit(X: np.ndarray, y: np.ndarray, C: float, gamma: float) -> Pipeline:
    return _pipeline(C, gamma).fit(X, y)


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
    n_features = X.shape[1]
    n_groups = len(np.unique(groups))
    folds = min(settings.cv_folds, n_groups)
    if folds < 2:
        return settings.c_grid[0], settings.gamma_grid[0], float("nan"), 0, np.full(len(y), np.nan), "one training chromosome: no grouped CV, first grid values used"
    splits = list(GroupKFold(n_splits=folds).split(X, y, groups))
    grid = [(C, g) for C in settings.c_grid for g in settings.gamma_grid]
    jobs = [delayed(_fold_scores)(X, y, tr, va, C, g / n_features) for C, g in grid for tr, va in splits]
    fold_scores = iter(Parallel(n_jobs=n_jobs)(jobs))
    results = []
    for C, g in grid:
        oof = np.full(len(y), np.nan)
        aucs = []
        for _, va in splits:
            oof[va] = next(fold_scores)
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
    """The sound protocol for one model. ``rows`` needs variant_id, chrom, label, split, tissue, distance."""
    kind = SOUND_FEATURES[rc_rule]
    rows = rows.reset_index(drop=True)
    position = pd.Series(np.arange(len(variant_ids)), index=variant_ids.to_numpy())
    missing = ~rows["variant_id"].isin(position.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} rows have no features, e.g. {rows.loc[missing, 'variant_id'].iloc[0]}")
    features = variant_features(matrices, kind)[position.loc[rows["variant_id"]].to_numpy()]
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
            records.append({**record, **dict.fromkeys(["C", "gamma_factor", "cv_auroc", *METRIC_COLUMNS], float("nan")), "cv_folds": 0, "note": note})
            continue
        X_tr = X_all[train_idx]
        groups = rows["chrom"].to_numpy()[train_idx]
        C, g, cv_auroc, folds, oof, note = choose_hyperparameters(X_tr, y_tr, groups, settings, n_jobs)
        pipeline = _fit(X_tr, y_tr, C, g / X_tr.shape[1])
        fitted[bucket.name] = BucketModel(bucket, pipeline, C, g, platt_coefficients(oof, y_tr), _checksum(X_tr, y_tr))
        scores = pipeline.decision_function(X_all[test_idx]) if len(test_idx) else np.zeros(0)
        metrics = bootstrap_metrics(y_te, scores, n_resamples=settings.bootstrap, seed=settings.seed)
        if len(test_idx) == 0 or len(np.unique(y_te)) < 2:
            note = "; ".join(filter(None, [note, "test bucket has one class or no rows; AUROC undefined"]))
        records.append({**record, "C": C, "gamma_factor": g, "cv_auroc": cv_auroc, "cv_folds": folds, **metrics, "note": note})
        score_frames.append(pd.DataFrame({"model": model, "bucket": bucket.name, "variant_id": rows["variant_id"].to_numpy()[test_idx],
                                          "tissue": rows["tissue"].to_numpy()[test_idx], "label": y_te, "score": scores}))
    table = pd.DataFrame(records, columns=SOUND_COLUMNS)
    test_scores = pd.concat(score_frames, ignore_index=True) if score_frames else pd.DataFrame(columns=SCORE_COLUMNS)
    return SoundResult(table, test_scores[SCORE_COLUMNS], fitted, categories, kind)
