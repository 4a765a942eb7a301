"""The paper's eQTL classifier protocol: per TSS-distance bucket, StandardScaler + RBF SVC.

Reproduces the Caduceus notebook exactly (see the protocol reference, section 4):
- buckets with inclusive edges on both ends (a SNP at exactly 30,000 bp lands in two buckets);
- per seed, ``min(n, train_subsample)`` training rows drawn without replacement
  (``DataFrame.sample(random_state=seed)``), the whole test bucket for testing;
- features = concat(mean_ref, mean_alt) plus the tissue as one alphabetical integer code;
- per-model reverse-complement rules (``RC_RULES``);
- AUROC from hard ``predict()`` labels (it equals balanced accuracy), C chosen by the best mean
  test AUROC over seeds, spread = standard deviation over seeds (numpy's default, ddof=0).
The weaknesses of this protocol are known; it is reproduced here, never silently changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

PER_SEED_COLUMNS = ["model", "protocol", "bucket", "C", "seed", "auroc", "n_train", "n_train_pos", "n_test", "n_test_pos", "note"]
SUMMARY_COLUMNS = ["model", "protocol", "bucket", "C", "auroc_mean", "auroc_sd", "n_seeds", "n_train", "n_test", "note"]


@dataclass(frozen=True)
class Bucket:
    """A TSS-distance bucket in bp: [low, high] (paper) or [low, high) (``closed_high=False``, sound).

    ``high=None`` means unbounded.
    """

    name: str
    low: int
    high: int | None
    closed_high: bool = True

    def mask(self, distance: pd.Series) -> pd.Series:
        """Inclusive on both ends by default, as in the paper's notebook (edges land in two buckets)."""
        if self.high is None:
            upper = True
        else:
            upper = distance <= self.high if self.closed_high else distance < self.high
        return (distance >= self.low) & upper


PAPER_BUCKETS = (Bucket("0-30kb", 0, 30_000), Bucket("30-100kb", 30_000, 100_000), Bucket(">100kb", 100_000, None))
# The sound protocol's half-open buckets: every variant lands in exactly one.
SOUND_BUCKETS = tuple(Bucket(b.name, b.low, b.high, closed_high=False) for b in PAPER_BUCKETS)

# Which features go into training and testing, per model family: "fwd" = forward-strand
# features only, "avg" = mean of forward and RC-aligned features.
RC_RULES: dict[str, tuple[str, str]] = {
    "ps": ("avg", "avg"),        # Caduceus-PS: averaged for train and test
    "ph": ("fwd", "avg"),        # Caduceus-Ph: forward for train, post-hoc conjoined at test
    "forward": ("fwd", "fwd"),   # "Caduceus w/o equivariance" and other models: no averaging
}


def buckets_from_config(entries: list[dict], closed_high: bool = True) -> tuple[Bucket, ...]:
    """Buckets from config entries ``{name, low, high}`` (high null = unbounded)."""
    return tuple(Bucket(str(e["name"]), int(e["low"]), None if e.get("high") is None else int(e["high"]), closed_high)
                 for e in entries)


def variant_features(matrices: dict[str, np.ndarray], which: str) -> np.ndarray:
    """concat(ref, alt) features per variant; ``which`` = "fwd" or "avg" (forward/RC mean)."""
    if which == "fwd":
        ref, alt = matrices["ref_fwd"], matrices["alt_fwd"]
    elif which == "avg":
        ref = (matrices["ref_fwd"] + matrices["ref_rc"]) / 2
        alt = (matrices["alt_fwd"] + matrices["alt_rc"]) / 2
    else:
        raise ValueError(f"unknown feature kind {which!r}; expected 'fwd' or 'avg'")
    return np.concatenate([ref, alt], axis=1)


def tissue_codes(tissues: pd.Series) -> np.ndarray:
    """Alphabetical integer code per tissue (sklearn LabelEncoder's order), as one feature column."""
    order = {t: i for i, t in enumerate(sorted(tissues.unique()))}
    return tissues.map(order).to_numpy(dtype=np.float64)


def design_matrix(rows: pd.DataFrame, features: np.ndarray, row_index: np.ndarray, tissue_code: np.ndarray) -> np.ndarray:
    """Embedding features of each (variant, tissue) row with its tissue code appended."""
    return np.column_stack([features[row_index], tissue_code])


def _fit_score(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, C: float) -> float:
    classifier = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma="scale"))
    classifier.fit(X_train, y_train)
    # The paper's AUROC is computed from hard labels, not decision scores (= balanced accuracy).
    return float(roc_auc_score(y_test, classifier.predict(X_test)))


def paper_protocol(
    rows: pd.DataFrame,
    variant_ids: pd.Series,
    matrices: dict[str, np.ndarray],
    *,
    model: str,
    rc_rule: str,
    seeds: list[int],
    c_grid: list[float],
    train_subsample: int,
    buckets: tuple[Bucket, ...] = PAPER_BUCKETS,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Per-seed AUROCs of the paper's protocol for one model.

    ``rows`` holds (variant_id, label, split, tissue, distance_to_nearest_TSS); rows whose variant
    has no features are the caller's to drop beforehand. Returns one row per (bucket, C, seed).
    """
    if rc_rule not in RC_RULES:
        raise ValueError(f"unknown rc_rule {rc_rule!r}; expected one of {sorted(RC_RULES)}")
    train_kind, test_kind = RC_RULES[rc_rule]
    rows = rows.reset_index(drop=True)  # positions below index the design matrices
    position = pd.Series(np.arange(len(variant_ids)), index=variant_ids.to_numpy())
    missing = ~rows["variant_id"].isin(position.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} rows have no features, e.g. {rows.loc[missing, 'variant_id'].iloc[0]}")
    row_index = position.loc[rows["variant_id"]].to_numpy()
    codes = tissue_codes(rows["tissue"])
    feats = {kind: variant_features(matrices, kind) for kind in {train_kind, test_kind}}
    distance = rows["distance_to_nearest_TSS"]
    labels = rows["label"].to_numpy()

    jobs, meta = [], []
    for bucket in buckets:
        in_bucket = bucket.mask(distance).to_numpy()
        train_rows = rows[in_bucket & (rows["split"] == "train").to_numpy()]
        test_mask = in_bucket & (rows["split"] == "test").to_numpy()
        X_test = design_matrix(rows, feats[test_kind], row_index[test_mask], codes[test_mask])
        y_test = labels[test_mask]
        for seed in seeds:
            sample = train_rows.sample(n=min(len(train_rows), train_subsample), random_state=seed)
            positions = rows.index.get_indexer(sample.index)
            X_train = design_matrix(rows, feats[train_kind], row_index[positions], codes[positions])
            y_train = labels[positions]
            note = _unscorable(y_train, y_test)
            for C in c_grid:
                meta.append({"model": model, "protocol": "paper", "bucket": bucket.name, "C": C, "seed": seed,
                             "n_train": len(y_train), "n_train_pos": int(y_train.sum()),
                             "n_test": len(y_test), "n_test_pos": int(y_test.sum()), "note": note})
                jobs.append(None if note else delayed(_fit_score)(X_train, y_train, X_test, y_test, C))
    scores = Parallel(n_jobs=n_jobs)(j for j in jobs if j is not None)
    it = iter(scores)
    for record, job in zip(meta, jobs):
        record["auroc"] = float("nan") if job is None else next(it)
    return pd.DataFrame(meta, columns=PER_SEED_COLUMNS)


def _unscorable(y_train: np.ndarray, y_test: np.ndarray) -> str:
    if len(y_train) == 0 or len(y_test) == 0:
        return "no training rows in this bucket" if len(y_train) == 0 else "no test rows in this bucket"
    if len(np.unique(y_train)) < 2:
        return "training sample has one class only"
    if len(np.unique(y_test)) < 2:
        return "test bucket has one class only; AUROC undefined"
    return ""


def summarise(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per (model, protocol, bucket): the C with the best mean AUROC (ties: smallest C), mean and sd."""
    records = []
    for (model, protocol, bucket), group in per_seed.groupby(["model", "protocol", "bucket"], sort=False):
        stats = group.groupby("C")["auroc"].agg(["mean", lambda s: float(np.std(s.to_numpy())), "count"])
        stats.columns = ["mean", "sd", "count"]
        scored = stats.dropna(subset=["mean"])
        note = "; ".join(sorted({n for n in group["note"] if n}))
        if scored.empty:
            best_c, mean, sd, n = float("nan"), float("nan"), float("nan"), 0
        else:
            # Means that differ only by float rounding are ties; a tie goes to the smallest C.
            tied = np.isclose(scored["mean"], scored["mean"].max(), rtol=0.0, atol=1e-12)
            best_c = float(scored.index[tied].min())
            mean, sd, n = float(scored.loc[best_c, "mean"]), float(scored.loc[best_c, "sd"]), int(scored.loc[best_c, "count"])
        records.append({"model": model, "protocol": protocol, "bucket": bucket, "C": best_c, "auroc_mean": mean,
                        "auroc_sd": sd, "n_seeds": n, "n_train": int(group["n_train"].max()),
                        "n_test": int(group["n_test"].max()), "note": note})
    return pd.DataFrame(records, columns=SUMMARY_COLUMNS)
