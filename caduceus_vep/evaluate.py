"""The paper's eQTL classifier protocol: per TSS-distance bucket, StandardScaler + RBF SVC.

Reproduces the Caduceus SVM notebook exactly (see the protocol reference, section 4):
- rows whose features (of the kinds the row's RC rule reads) contain NaN are dropped first;
- buckets with inclusive edges on both ends (a SNP at exactly 30,000 bp lands in two buckets);
- per bucket and seed, the training draw is the notebook's ``np.random.seed(seed)`` followed by
  ``np.random.choice(n, train_subsample, replace=train_subsample > n)`` over the bucket's training
  rows in table order (``paper_train_draw``): a bucket smaller than the subsample is drawn *with*
  replacement, differently per seed; the whole test bucket is used for testing;
- features = concat(mean_ref, mean_alt) plus the tissue as one integer column, coded by a
  LabelEncoder fitted on the *test* split's tissue names (alphabetical) and applied to both splits.
  The notebook's ``transform`` would raise on a training tissue absent from the test split; here
  those training rows are dropped, counted in the ``note`` column and logged;
- per-row reverse-complement rules (``RC_RULES``);
- AUROC from hard ``predict()`` labels (it equals balanced accuracy), C chosen by the best mean
  test AUROC over seeds (ties: the smallest C), spread = the sample standard deviation over seeds
  (ddof=1, what seaborn's ``errorbar="sd"`` draws; NaN for a single seed).
The weaknesses of this protocol are known; it is reproduced here, never silently changed.

A model's features can give more than one result row (``evaluate.extra_rows`` in the config, e.g.
"Caduceus w/o Equiv." = the Ph model's features under rc_rule ``forward``): ``table_rows`` lists
every row with its label, parent model and RC rule; each row runs this protocol on its parent's
feature file, so no second embedding run is needed.

Speed without changing a result: the scaler and ``gamma="scale"`` depend only on a seed's training
subsample, not on C, so each (bucket, seed) computes its RBF kernels once and fits
``SVC(kernel="precomputed")`` for every C on the same matrix (``rbf_svm_grid``). The decision values
and hard labels equal those of ``make_pipeline(StandardScaler(), SVC(C, kernel="rbf"))`` to float
rounding (tests/test_svm_kernels.py). Memory per worker: the training kernel, n_train^2 x 8 bytes
(5,000 rows: 200 MB), plus one test-kernel block of at most ``KERNEL_CHUNK_BYTES``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

# scikit-learn, joblib and threadpoolctl are imported inside the functions that fit or score: every
# workflow job imports this module (through stages, scoring, zero-shot), most never fit an SVM, and
# scikit-learn alone took 2.2 of a job's 3.8 s of start-up imports.

log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class TableRow:
    """One result row of the tables and figures: ``name`` (the ``model`` column of every results file),
    ``label`` (shown), ``model`` (whose feature file it reads) and ``rc_rule`` (how it uses them)."""

    name: str
    label: str
    model: str
    rc_rule: str


def table_rows(models: Sequence[dict], extra_rows: Sequence[dict] = ()) -> list[TableRow]:
    """Every result row: one per model (its own name, label and rc_rule), then ``evaluate.extra_rows``.

    Raises ValueError for an extra row whose model is not configured, an unknown rc_rule, an RC rule
    on a forward-rule model, or a row name used twice (names key the results files and tables).
    """
    rows = [TableRow(m["name"], m.get("label") or m["name"], m["name"], m["rc_rule"]) for m in models]
    known = {m["name"]: m["rc_rule"] for m in models}
    for extra in extra_rows:
        if extra["model"] not in known:
            raise ValueError(f"evaluate.extra_rows {extra['name']!r}: model {extra['model']!r} is not configured "
                             f"(models: {sorted(known)})")
        if known[extra["model"]] == "forward" and extra["rc_rule"] != "forward":
            # A forward-rule model's embedding need not compute reverse-complement features.
            raise ValueError(f"evaluate.extra_rows {extra['name']!r}: rc_rule {extra['rc_rule']!r} needs reverse-complement "
                             f"features, but model {extra['model']!r} has rc_rule 'forward'")
        rows.append(TableRow(extra["name"], extra.get("label") or extra["name"], extra["model"], extra["rc_rule"]))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"result row names must be unique across models and evaluate.extra_rows, got {names}")
    for r in rows:
        if r.rc_rule not in RC_RULES:
            raise ValueError(f"row {r.name}: unknown rc_rule {r.rc_rule!r}; expected one of {sorted(RC_RULES)}")
    return rows


def rows_of_model(model: dict, extra_rows: Sequence[dict] = ()) -> list[TableRow]:
    """The result rows computed from one model's features: its own row first, then its extra rows."""
    return table_rows([model], [e for e in extra_rows if e["model"] == model["name"]])


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


def tissue_codes(tissues: pd.Series, classes: Sequence[str] | None = None) -> np.ndarray:
    """Integer code per tissue: its index in ``classes`` (sorted, as sklearn's LabelEncoder orders them).

    ``classes=None`` fits on ``tissues`` itself. A tissue outside ``classes`` gets NaN (the paper
    protocol drops those rows; LabelEncoder.transform would raise).
    """
    order = {t: i for i, t in enumerate(sorted(set(tissues.unique()) if classes is None else set(classes)))}
    return tissues.map(order).to_numpy(dtype=np.float64)


def paper_train_draw(n_rows: int, subsample: int, seed: int) -> np.ndarray:
    """The notebook's training draw over a bucket's ``n_rows`` training rows, for one seed.

    ``np.random.seed(seed); np.random.choice(n_rows, subsample, replace=subsample > n_rows)``, done
    on a private ``RandomState(seed)``: the same Mersenne-Twister stream, so the same indices, without
    touching numpy's global state (the notebook's ``random``/``torch`` seeds do not affect it). A
    bucket smaller than ``subsample`` is drawn with replacement (duplicates, a different draw per seed).
    """
    if n_rows == 0:
        return np.zeros(0, dtype=np.intp)
    return np.random.RandomState(seed).choice(n_rows, subsample, replace=subsample > n_rows)


def nan_feature_rows(features: Sequence[np.ndarray], row_index: np.ndarray) -> np.ndarray:
    """True for each row whose variant has a NaN in any of ``features`` (one [variants, F] matrix per kind)."""
    bad = np.zeros(len(features[0]) if features else 0, dtype=bool)
    for matrix in features:
        bad |= np.isnan(matrix).any(axis=1)  # per variant first: no [rows, F] copy
    return bad[row_index]


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
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

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
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(n)), user_api="blas"):
        yield


def _seed_aurocs(features_train: np.ndarray, features_test: np.ndarray, train_index: np.ndarray, train_codes: np.ndarray,
                 y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, c_grid: Sequence[float]) -> list[float]:
    X_train = np.column_stack([features_train[train_index], train_codes])
    decisions, classes = rbf_svm_grid(X_train, y_train, X_test, c_grid)
    # The paper's AUROC is computed from hard labels, not decision scores (= balanced accuracy).
    from sklearn.metrics import roc_auc_score

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

    ``rows`` holds (variant_id, label, split, tissue, distance_to_nearest_TSS) in table order; rows
    whose variant has no features are the caller's to drop beforehand (an error here), rows with NaN
    features and training rows of a tissue absent from the test split are dropped here (counted in
    ``note``). Returns one row per (bucket, C, seed).
    ``n_jobs`` worker threads run the (bucket, seed) jobs, each with one BLAS thread, so the
    protocol uses n_jobs cores; each holds one training kernel (see the module docstring).
    """
    from joblib import Parallel, delayed, effective_n_jobs

    if rc_rule not in RC_RULES:
        raise ValueError(f"unknown rc_rule {rc_rule!r}; expected one of {sorted(RC_RULES)}")
    train_kind, test_kind = RC_RULES[rc_rule]
    rows = rows.reset_index(drop=True)  # positions below index the design matrices
    position = pd.Series(np.arange(len(variant_ids)), index=variant_ids.to_numpy())
    missing = ~rows["variant_id"].isin(position.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} rows have no features, e.g. {rows.loc[missing, 'variant_id'].iloc[0]}")
    feats = {kind: variant_features(matrices, kind) for kind in {train_kind, test_kind}}
    # The notebook drops rows with NaN features before bucketing.
    nan_rows = nan_feature_rows(list(feats.values()), position.loc[rows["variant_id"]].to_numpy())
    rows = rows[~nan_rows].reset_index(drop=True)
    is_test = (rows["split"] == "test").to_numpy()
    # LabelEncoder fitted on the test split's tissues, applied to both splits; training rows of a
    # tissue the test split lacks have no code (the notebook would raise) and are dropped.
    codes = tissue_codes(rows["tissue"], classes=rows.loc[is_test, "tissue"].unique())
    unknown_tissue = np.isnan(codes) & ~is_test
    rows, codes = rows[~unknown_tissue].reset_index(drop=True), codes[~unknown_tissue]
    is_test = (rows["split"] == "test").to_numpy()
    row_index = position.loc[rows["variant_id"]].to_numpy()
    dropped = "; ".join(filter(None, [
        f"{int(nan_rows.sum())} row(s) with NaN features dropped" if nan_rows.any() else "",
        f"{int(unknown_tissue.sum())} training row(s) of tissues absent from the test split dropped" if unknown_tissue.any() else ""]))
    if dropped:
        log.warning("paper protocol %s: %s", model, dropped)
    distance = rows["distance_to_nearest_TSS"]
    labels = rows["label"].to_numpy()
    is_train = (rows["split"] == "train").to_numpy()

    jobs, meta = [], []
    for bucket in buckets:
        in_bucket = bucket.mask(distance).to_numpy()
        train_positions = np.flatnonzero(in_bucket & is_train)  # table order, as the notebook's frame
        test_mask = in_bucket & is_test
        X_test = design_matrix(rows, feats[test_kind], row_index[test_mask], codes[test_mask])
        y_test = labels[test_mask]
        for seed in seeds:
            positions = train_positions[paper_train_draw(len(train_positions), train_subsample, seed)]
            y_train = labels[positions]
            note = _unscorable(y_train, y_test)
            for C in c_grid:
                meta.append({"model": model, "protocol": "paper", "bucket": bucket.name, "C": C, "seed": seed,
                             "n_train": len(y_train), "n_train_pos": int(y_train.sum()),
                             "n_test": len(y_test), "n_test_pos": int(y_test.sum()),
                             "note": "; ".join(filter(None, [note, dropped]))})
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
    """Per (model, protocol, bucket): the C with the best mean AUROC (ties: smallest C), mean and sample sd (ddof=1)."""
    records = []
    for (model, protocol, bucket), group in per_seed.groupby(["model", "protocol", "bucket"], sort=False):
        # Sample sd over seeds (ddof=1, seaborn's errorbar="sd"); NaN seeds are skipped.
        stats = group.groupby("C")["auroc"].agg(["mean", lambda s: float(s.dropna().std(ddof=1)), "count"])
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
