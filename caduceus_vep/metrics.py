"""Ranking metrics from continuous scores, with seeded bootstrap confidence intervals.

AUROC is computed from ranks (Mann-Whitney U with average ranks for ties), which equals
``sklearn.metrics.roc_auc_score`` and vectorises over bootstrap resamples.
"""

from __future__ import annotations

import numpy as np

METRIC_COLUMNS = ["auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi"]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of ``scores`` (higher = more likely label 1); NaN when only one class is present."""
    values = _auroc_rows(np.asarray(labels)[None, :], np.asarray(scores, dtype=np.float64)[None, :])
    return float(values[0])


def _auroc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row-wise AUROC of [B, n] label and score matrices (NaN for rows with one class)."""
    from scipy.stats import rankdata  # here, not at import: see the note in evaluate.py

    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1).astype(np.float64)
    n_neg = labels.shape[1] - n_pos
    u = (ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _auprc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row-wise average precision, sklearn's definition: sum over distinct thresholds of ΔRecall × Precision.

    Tied scores form one threshold (bootstrap resamples always contain ties): every row takes the
    precision at the end of its tie group, so AP = sum(y_j * P(group end of j)) / n_pos.
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    y = np.take_along_axis(labels, order, axis=1).astype(np.float64)
    s = np.take_along_axis(scores, order, axis=1)
    n = y.shape[1]
    precision = np.cumsum(y, axis=1) / np.arange(1, n + 1)
    is_end = np.ones_like(s, dtype=bool)
    is_end[:, :-1] = s[:, :-1] != s[:, 1:]
    ends = np.where(is_end, np.arange(n), n)
    group_end = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (y * np.take_along_axis(precision, group_end, axis=1)).sum(axis=1) / y.sum(axis=1)


def bootstrap_metrics(labels: np.ndarray, scores: np.ndarray, *, n_resamples: int, seed: int, level: float = 0.95) -> dict[str, float]:
    """Point AUROC/AUPRC plus percentile bootstrap CIs over test rows (resampled with replacement).

    Resamples that contain one class only are dropped (their AUROC is undefined); the interval is
    the (1-level)/2 and (1+level)/2 percentiles of the remaining ones. ``n_resamples=0``: no CI.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    nan = float("nan")
    if len(y) == 0 or len(np.unique(y)) < 2:
        return dict.fromkeys(METRIC_COLUMNS, nan)
    from sklearn.metrics import average_precision_score

    out = {"auroc": auroc(y, s), "auprc": float(average_precision_score(y, s))}
    if n_resamples <= 0:
        return {**out, "auroc_lo": nan, "auroc_hi": nan, "auprc_lo": nan, "auprc_hi": nan}
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(y), size=(n_resamples, len(y)))
    yb, sb = y[index], s[index]
    aurocs = _auroc_rows(yb, sb)
    valid = ~np.isnan(aurocs)
    auprcs = _auprc_rows(yb[valid], sb[valid])
    tail = (1 - level) / 2 * 100
    lo_a, hi_a = np.percentile(aurocs[valid], [tail, 100 - tail])
    lo_p, hi_p = np.percentile(auprcs, [tail, 100 - tail])
    return {"auroc": out["auroc"], "auroc_lo": float(lo_a), "auroc_hi": float(hi_a),
            "auprc": out["auprc"], "auprc_lo": float(lo_p), "auprc_hi": float(hi_p)}
