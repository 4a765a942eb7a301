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

Speed without changing a result: the scaler and ``gamma="scale"`` depend only on a seed's training
subsample, not on C, so each (bucket, seed) computes its RBF kernels once and fits
``SVC(kernel="precomputed")`` for every C on the same matrix (``rbf_svm_grid``). The decision values
and hard labels equal those of ``make_pipeline(StandardScaler(), SVC(C, kernel="rbf"))`` to float
rounding (tests/test_svm_kernels.py). Memory per worker: the training kernel, n_train^2 x 8 bytes
(5,000 rows: 200 MB), plus one test-kernel block of at most ``KERNEL_CHUNK_BYTES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

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


# Memory bound of every chunked kernel evaluation (test or validation rows against training rows or
# support vectors): one float64 block [rows, columns] of at most this many bytes per worker, so the
# test set's size never multiplies the memory (the block for 5,000 columns holds 1,677 rows).
KERNEL_CHUNK_BYTES = 64 * 2**20
_ELEMENTWISE_BLOCK = 2**17  # float64 elements per in-cache block of rbf_kernel's elementwise passes


def rbf_kernel(A: np.ndarray, B: np.ndarray, gamma: float, *, b_sq: np.ndarray | None = None) -> np.ndarray:
    """exp(-gamma * ||a - b||^2) for every row pair: a float64 [len(A), len(B)] matrix.

    Built in place in one allocation (the matmul's output), because the training kernel is the
    largest object of the evaluation. ``A is B`` lets numpy use the symmetric product (half the
    work). ``b_sq`` = the rows' squared norms of B, when the caller already has them. Distances are
    clipped at 0 (cancellation can make them slightly negative).
    """
    same = B is A
    A = np.asarray(A, dtype=np.float64)
    B = A if same else np.asarray(B, dtype=np.float64)
    K = A @ A.T if same else A @ B.T
    a_sq = np.einsum("ij,ij->i", A, A)
    b_sq = np.einsum("ij,ij->i", B, B) if b_sq is None else b_sq
    # The elementwise passes run on ~1 MB row blocks that stay in cache (about 20 % faster than
    # six passes over a matrix of gigabytes).
    rows = max(1, _ELEMENTWISE_BLOCK // max(1, K.shape[1]))
    for start in range(0, K.shape[0], rows):
        block = K[start:start + rows]
        block *= -2.0
        block += a_sq[start:start + rows, None]
        block += b_sq[None, :]
        np.maximum(block, 0.0, out=block)
        block *= -gamma
        np.exp(block, out=block)
    return K


def kernel_decision(X: np.ndarray, basis: np.ndarray, coef: np.ndarray, gamma: float, intercept: float | np.ndarray, *,
                    transform: Callable[[np.ndarray], np.ndarray] | None = None,
                    chunk_bytes: int = KERNEL_CHUNK_BYTES) -> np.ndarray:
    """``K(transform(X), basis) @ coef + intercept``, block by block of X's rows.

    ``coef`` is [len(basis)] or [len(basis), k] (k decision functions sharing one kernel, e.g. one per
    C); the result is [len(X)] or [len(X), k]. Each block's kernel holds at most ``chunk_bytes``
    (at least one row), so memory stays bounded whatever len(X) is.
    """
    coef = np.asarray(coef, dtype=np.float64)
    basis = np.asarray(basis, dtype=np.float64)
    rows = max(1, int(chunk_bytes) // (8 * max(1, len(basis))))
    b_sq = np.einsum("ij,ij->i", basis, basis)
    out = np.empty((len(X), *coef.shape[1:]), dtype=np.float64)
    for start in range(0, len(X), rows):
        part = X[start:start + rows]
        part = transform(part) if transform is not None else part
        out[start:start + rows] = rbf_kernel(part, basis, gamma, b_sq=b_sq) @ coef
    out += intercept
    return out


def scale_gamma(X_scaled: np.ndarray) -> float:
    """sklearn's ``gamma="scale"`` (1 / (n_features * X.var())) of the standardised training rows."""
    variance = X_scaled.var()
    return 1.0 / (X_scaled.shape[1] * variance) if variance != 0 else 1.0


def rbf_svm_grid(X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, c_grid: Sequence[float],
                 gamma: float | str = "scale", chunk_bytes: int = KERNEL_CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Decision values on ``X_eval`` of ``StandardScaler + SVC(C, rbf, gamma)`` for every C, one kernel.

    Equals fitting ``make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=gamma))`` per C
    (same scaler, same gamma, the same kernel values up to float rounding, so libsvm solves the same
    problem), at the cost of one training kernel and one pass over X_eval for the whole grid.
    Returns (decisions [len(X_eval), len(c_grid)], classes); ``hard_labels`` turns them into
    ``predict()`` output.
    """
    scaler = StandardScaler().fit(X_train)
    Xs = scaler.transform(X_train)
    g = scale_gamma(Xs) if gamma == "scale" else float(gamma)
    K = rbf_kernel(Xs, Xs, g)
    coef = np.zeros((len(Xs), len(c_grid)))
    intercept = np.zeros(len(c_grid))
    classes = None
    for j, C in enumerate(c_grid):
        svc = SVC(C=C, kernel="precomputed").fit(K, y_train)
        # sklearn's public dual_coef_/intercept_ are signed so that > 0 means classes_[1].
        coef[svc.support_, j] = svc.dual_coef_[0]
        intercept[j] = svc.intercept_[0]
        classes = svc.classes_
    del K
    decisions = kernel_decision(X_eval, Xs, coef, g, intercept, transform=scaler.transform, chunk_bytes=chunk_bytes)
    return decisions, classes


def hard_labels(decisions: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``SVC.predict()`` of a binary SVC from its decision values (libsvm sends a value of 0 to classes[1])."""
    return np.asarray(classes)[(np.asarray(decisions) >= 0).astype(np.intp)]


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit BLAS threads to ``n`` inside the block (None: leave them as they are)."""
    if n is None:
        yield
        return
    with threadpool_limits(limits=max(1, int(n)), user_api="blas"):
        yield


def _seed_aurocs(features_train: np.ndarray, features_test: np.ndarray, train_index: np.ndarray, train_codes: np.ndarray,
                 y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, c_grid: Sequence[float]) -> list[float]:
    X_train = np.column_stack([features_train[train_index], train_codes])
    decisions, classes = rbf_svm_grid(X_train, y_train, X_test, c_grid)
    # The paper's AUROC is computed from hard labels, not decision scores (= balanced accuracy).
    return [float(roc_auc_score(y_test, hard_labels(decisions[:, j], classes))) for j in range(len(c_grid))]


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
    ``n_jobs`` worker threads run the (bucket, seed) jobs, each with one BLAS thread, so the
    protocol uses n_jobs cores; each holds one training kernel (see the module docstring).
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
            y_train = labels[positions]
            note = _unscorable(y_train, y_test)
            for C in c_grid:
                meta.append({"model": model, "protocol": "paper", "bucket": bucket.name, "C": C, "seed": seed,
                             "n_train": len(y_train), "n_train_pos": int(y_train.sum()),
                             "n_test": len(y_test), "n_test_pos": int(y_test.sum()), "note": note})
            # One job per (bucket, seed): one kernel, every C fitted on it.
            jobs.append(None if note else delayed(_seed_aurocs)(feats[train_kind], feats[test_kind], row_index[positions],
                                                                codes[positions], y_train, X_test, y_test, list(c_grid)))
    workers = effective_n_jobs(n_jobs)
    # Threads share the design matrices; libsvm, BLAS and exp release the GIL. One BLAS thread per
    # worker keeps the total at n_jobs cores.
    with blas_threads(1):
        scores = Parallel(n_jobs=workers, backend="threading")(j for j in jobs if j is not None)
    it = iter(scores)
    aurocs = []
    for job in jobs:
        aurocs.extend([float("nan")] * len(c_grid) if job is None else next(it))
    for record, value in zip(meta, aurocs):
        record["auroc"] = value
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
