"""Speed of the evaluation stage on synthetic features of the paper's shape (2 x 256 embedding + tissue).

    .venv/bin/python benchmarks/evaluate_speed.py --jobs 2 [--sizes 5000 20000] [--full] [--sound] [--sound-unit]

Prints Markdown. Every figure is "before" (one StandardScaler + SVC(kernel="rbf") pipeline per C,
the implementation this repository had until issue 13; kept below as ``paper_protocol_per_c``) and
"after" (``caduceus_vep``: one kernel per (bucket, seed) or (fold, gamma), every C fitted on it),
measured in the same run, as wall seconds and CPU seconds (this process's threads plus reaped child
processes), with the 1-minute load average read from /proc/loadavg before and after.

- default: one fit per training size (513 features), and one paper (bucket, seed) unit: 3 C fitted on
  5,000 rows and predicted on the 0-30 kb bucket's 5,852 test rows;
- ``--full``: the whole paper protocol (3 buckets x 5 seeds x 3 C) on the paper-sized table (~88k train,
  ~8.6k test rows with the published bucket sizes), before and after, and whether the per-seed AUROCs agree;
- ``--sound``: the whole sound protocol end to end on the same table (default SoundSettings: 3 C x
  3 gamma x 5 grouped folds, at most 20,000 training rows per bucket, 1,000 bootstrap resamples; 49
  tissues one-hot, 561 features), with the grouped-CV time per bucket;
- ``--sound-unit``: one sound (fold, gamma) unit of the 0-30 kb bucket (a ~16,000-row fold, 3 C,
  decision values on the held-out fold), before and after (the old implementation of a whole
  bucket is 45 such fits and would take about an hour here).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from caduceus_vep import evaluate as ev
from caduceus_vep import sound

TRAIN = {"0-30kb": 67_359, "30-100kb": 15_351, ">100kb": 5_138}
TEST = {"0-30kb": 5_852, "30-100kb": 1_405, ">100kb": 1_315}
N_TISSUES = 49
TRAIN_CHROMS = [f"chr{i}" for i in range(1, 23) if i not in (9, 10)]


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def load() -> float:
    return float(loadavg().split()[0])


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its reaped children (loky workers once shut down)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(fn: Callable[[], object]) -> tuple[object, dict]:
    """Run fn; wall s, CPU s and load before/after. Loky workers are shut down so their CPU is counted."""
    from joblib.externals.loky import reusable_executor

    before_load, wall, cpu = load(), time.perf_counter(), cpu_seconds()
    out = fn()
    if reusable_executor._executor is not None:  # reap the workers: their CPU time then shows in RUSAGE_CHILDREN
        reusable_executor._executor.shutdown(wait=True)
        reusable_executor._executor = None
    return out, {"wall": time.perf_counter() - wall, "cpu": cpu_seconds() - cpu, "load": (before_load, load())}


def fmt(m: dict) -> str:
    """Three Markdown cells: wall s, CPU s, load before -> after."""
    return f"{m['wall']:.1f} | {m['cpu']:.1f} | {m['load'][0]:.2f} -> {m['load'][1]:.2f}"


def synthetic(n: int, d: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 2 * d + 1)).astype(np.float64)
    X[:, :8] += 0.3 * y[:, None]  # a weak signal, so the SVM is not trivially separable
    return X, y


# ---------------------------------------------------------------- before: one pipeline per C (until issue 13)

def _fit_score_per_c(X_train, y_train, X_test, y_test, C):
    classifier = make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma="scale"))
    classifier.fit(X_train, y_train)
    return float(roc_auc_score(y_test, classifier.predict(X_test)))


def paper_protocol_per_c(rows, variant_ids, matrices, *, model, rc_rule, seeds, c_grid, train_subsample,
                         buckets=ev.PAPER_BUCKETS, n_jobs=1):
    """``evaluate.paper_protocol`` as it was before issue 13 (one fit + predict per (bucket, seed, C), loky jobs)."""
    train_kind, test_kind = ev.RC_RULES[rc_rule]
    rows = rows.reset_index(drop=True)
    position = pd.Series(np.arange(len(variant_ids)), index=variant_ids.to_numpy())
    row_index = position.loc[rows["variant_id"]].to_numpy()
    codes = ev.tissue_codes(rows["tissue"])
    feats = {kind: ev.variant_features(matrices, kind) for kind in {train_kind, test_kind}}
    distance = rows["distance_to_nearest_TSS"]
    labels = rows["label"].to_numpy()
    jobs, meta = [], []
    for bucket in buckets:
        in_bucket = bucket.mask(distance).to_numpy()
        train_rows = rows[in_bucket & (rows["split"] == "train").to_numpy()]
        test_mask = in_bucket & (rows["split"] == "test").to_numpy()
        X_test = ev.design_matrix(rows, feats[test_kind], row_index[test_mask], codes[test_mask])
        y_test = labels[test_mask]
        for seed in seeds:
            sample = train_rows.sample(n=min(len(train_rows), train_subsample), random_state=seed)
            positions = rows.index.get_indexer(sample.index)
            X_train = ev.design_matrix(rows, feats[train_kind], row_index[positions], codes[positions])
            y_train = labels[positions]
            note = ev._unscorable(y_train, y_test)
            for C in c_grid:
                meta.append({"model": model, "protocol": "paper", "bucket": bucket.name, "C": C, "seed": seed,
                             "n_train": len(y_train), "n_train_pos": int(y_train.sum()),
                             "n_test": len(y_test), "n_test_pos": int(y_test.sum()), "note": note})
                jobs.append(None if note else delayed(_fit_score_per_c)(X_train, y_train, X_test, y_test, C))
    scores = iter(Parallel(n_jobs=n_jobs)(j for j in jobs if j is not None))
    for record, job in zip(meta, jobs):
        record["auroc"] = float("nan") if job is None else next(scores)
    return pd.DataFrame(meta, columns=ev.PER_SEED_COLUMNS)


def sound_unit_per_c(X, y, train, val, c_grid, gamma):
    """One sound (fold, gamma) unit before issue 13: one pipeline fit + decision_function per C."""
    return np.column_stack([make_pipeline(StandardScaler(), SVC(C=C, kernel="rbf", gamma=gamma)).fit(X[train], y[train])
                            .decision_function(X[val]) for C in c_grid])


# ---------------------------------------------------------------- the paper-sized table

def paper_table(seed: int = 1) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """~88k train / ~8.6k test (variant, tissue) rows with the published bucket sizes; random features, weak signal."""
    rng = np.random.default_rng(seed)
    parts, start = [], 0
    for bucket, low in zip(TRAIN, (0, 30_001, 100_001)):
        for split, n in (("train", TRAIN[bucket]), ("test", TEST[bucket])):
            chroms = rng.choice(TRAIN_CHROMS, n) if split == "train" else rng.choice(["chr9", "chr10"], n)
            parts.append(pd.DataFrame({"variant_id": [f"v{i}" for i in range(start, start + n)], "split": split, "chrom": chroms,
                                       "distance_to_nearest_TSS": low + 1, "tissue": rng.choice([f"T{t:02d}" for t in range(N_TISSUES)], n)}))
            start += n
    frame = pd.concat(parts, ignore_index=True)
    frame["label"] = rng.integers(0, 2, len(frame))
    m = {k: rng.normal(size=(len(frame), 256)).astype(np.float32) for k in ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc")}
    signal = 0.3 * frame["label"].to_numpy()[:, None].astype(np.float32)
    for k in ("ref_fwd", "ref_rc"):
        m[k][:, :8] += signal
    return frame, m


# ---------------------------------------------------------------- benchmarks

def bench_fits(sizes: list[int]) -> None:
    print("## One fit (513 features; gamma = 'scale' before, 1/513 after, C = 1)\n")
    print("Before: `make_pipeline(StandardScaler(), SVC(kernel='rbf')).fit`; after: `sound.fit_bucket_model` (scaler, "
          "kernel, `SVC(kernel='precomputed').fit`), 1 BLAS thread. Load = 1-min load average before -> after.\n")
    print("| training rows | before wall s | before CPU s | before load | after wall s | after CPU s | after load | wall ratio | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        X, y = synthetic(n)
        _, before = measure(lambda X=X, y=y: make_pipeline(StandardScaler(), SVC(C=1.0, kernel="rbf", gamma="scale")).fit(X, y))
        with ev.blas_threads(1):
            _, after = measure(lambda X=X, y=y: sound.fit_bucket_model(X, y, 1.0, 1.0, bucket=ev.SOUND_BUCKETS[0], platt=(1.0, 0.0),
                                                                       train_sha256=""))
        print(f"| {n:,} | {fmt(before)} | {fmt(after)} | {before['wall'] / after['wall']:.1f}x | {before['cpu'] / after['cpu']:.1f}x |", flush=True)
    X, y = synthetic(5_000)
    X_test, y_test = synthetic(TEST["0-30kb"], seed=1)
    c_grid = [1.0, 5.0, 10.0]
    before_aurocs, before = measure(lambda: [_fit_score_per_c(X, y, X_test, y_test, C) for C in c_grid])

    def after_unit():
        with ev.blas_threads(1):
            decisions, classes = ev.rbf_svm_grid(X, y, X_test, c_grid)
        return [float(roc_auc_score(y_test, ev.hard_labels(decisions[:, j], classes))) for j in range(len(c_grid))]

    after_aurocs, after = measure(after_unit)
    print("\nOne paper (bucket, seed) unit, 1 thread: 5,000 training rows, C in {1, 5, 10}, `predict()` on the 5,852 test "
          "rows of 0-30 kb, hard-label AUROC per C.\n")
    print("| implementation | wall s | CPU s | load before -> after |\n|---|---|---|---|")
    print(f"| before: one pipeline per C | {fmt(before)} |")
    print(f"| after: `evaluate.rbf_svm_grid` | {fmt(after)} |")
    print(f"\nratio before/after: wall {before['wall'] / after['wall']:.1f}x, CPU {before['cpu'] / after['cpu']:.1f}x; "
          f"hard-label AUROCs equal: {np.allclose(before_aurocs, after_aurocs, rtol=0, atol=1e-12)} "
          f"({', '.join(f'{a:.4f}' for a in after_aurocs)})\n", flush=True)


def bench_paper(jobs: int, frame: pd.DataFrame, m: dict[str, np.ndarray], skip_before: bool) -> None:
    kwargs = {"model": "bench", "rc_rule": "ps", "seeds": [1, 2, 3, 4, 5], "c_grid": [1.0, 5.0, 10.0], "train_subsample": 5000,
              "n_jobs": jobs}
    after_table, after = measure(lambda: ev.paper_protocol(frame, frame["variant_id"], m, **kwargs))
    print(f"## Whole paper protocol ({len(frame[frame.split == 'train']):,} train / {len(frame[frame.split == 'test']):,} test rows, "
          f"3 buckets x 5 seeds x 3 C, {jobs} jobs)\n")
    print("| implementation | wall s | CPU s | load before -> after |\n|---|---|---|---|")
    if not skip_before:
        before_table, before = measure(lambda: paper_protocol_per_c(frame, frame["variant_id"], m, **kwargs))
        print(f"| before: one pipeline per (bucket, seed, C), loky | {fmt(before)} |")
    print(f"| after: one kernel per (bucket, seed), threads | {fmt(after)} |")
    if not skip_before:
        same = np.allclose(before_table["auroc"], after_table["auroc"], rtol=0, atol=1e-12)
        print(f"\nratio before/after: wall {before['wall'] / after['wall']:.1f}x, CPU {before['cpu'] / after['cpu']:.1f}x; "
              f"all 45 per-seed AUROCs equal (|diff| <= 1e-12): {same}; mean AUROC {after_table['auroc'].mean():.4f}\n", flush=True)


def bench_sound(jobs: int, frame: pd.DataFrame, m: dict[str, np.ndarray]) -> None:
    settings = sound.SoundSettings()
    cv_times: list[dict] = []
    original = sound.choose_hyperparameters

    def timed(X, y, groups, s, n_jobs=1):
        out, t = measure(lambda: original(X, y, groups, s, n_jobs))
        cv_times.append({"rows": len(y), **t})
        return out

    sound.choose_hyperparameters = timed
    try:
        result, total = measure(lambda: sound.sound_protocol(frame, frame["variant_id"], m, model="bench", rc_rule="ps",
                                                             settings=settings, n_jobs=jobs))
    finally:
        sound.choose_hyperparameters = original
    print(f"## Whole sound protocol end to end ({jobs} jobs; {settings})\n")
    print(f"total: wall {total['wall']:.1f} s ({total['wall'] / 60:.1f} min), CPU {total['cpu']:.1f} s, "
          f"load {total['load'][0]:.2f} -> {total['load'][1]:.2f}\n")
    print("| bucket | training rows | grouped CV (45 fits on 15 kernels) wall s | CPU s | load before -> after | chosen C, gamma factor | test AUROC |")
    print("|---|---|---|---|---|---|---|")
    for (_, row), t in zip(result.table.iterrows(), cv_times):
        print(f"| {row['bucket']} | {t['rows']:,} | {fmt(t)} | {row['C']:g}, {row['gamma_factor']:g} | {row['auroc']:.3f} |")
    print(flush=True)


def bench_sound_unit(frame: pd.DataFrame, m: dict[str, np.ndarray], skip_before: bool) -> None:
    settings = sound.SoundSettings()
    rows = frame[sound.SOUND_BUCKETS[0].mask(frame["distance_to_nearest_TSS"]).to_numpy() & (frame["split"] == "train").to_numpy()]
    rows = rows.sample(n=settings.max_train_rows, random_state=1)
    features = ev.variant_features({k: v[rows.index.to_numpy()] for k, v in m.items()}, "avg")
    categories = sorted(frame["tissue"].unique())
    X = sound.sound_design(features, rows["tissue"], categories)
    y = rows["label"].to_numpy()
    train, val = next(GroupKFold(n_splits=settings.cv_folds).split(X, y, rows["chrom"].to_numpy()))
    gamma = 1.0 / X.shape[1]
    with ev.blas_threads(1):
        after_dec, after = measure(lambda: sound._fold_decisions(X, y, train, val, settings.c_grid, gamma))
    print(f"## One sound (fold, gamma) unit, 1 thread: {len(train):,} fold-training rows x {X.shape[1]} features, "
          f"{len(val):,} held-out rows, C in {settings.c_grid}\n")
    print("| implementation | wall s | CPU s | load before -> after |\n|---|---|---|---|")
    if not skip_before:
        with ev.blas_threads(1):
            before_dec, before = measure(lambda: sound_unit_per_c(X, y, train, val, settings.c_grid, gamma))
        print(f"| before: one pipeline per C | {fmt(before)} |")
    print(f"| after: one kernel, every C | {fmt(after)} |")
    if not skip_before:
        rel = np.max(np.abs(before_dec - after_dec)) / np.max(np.abs(before_dec))
        print(f"\nratio before/after: wall {before['wall'] / after['wall']:.1f}x, CPU {before['cpu'] / after['cpu']:.1f}x; "
              f"max |decision difference| / max |decision| = {rel:.1e}\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=[5_000, 10_000, 20_000])
    parser.add_argument("--full", action="store_true", help="the whole paper protocol before and after")
    parser.add_argument("--sound", action="store_true", help="the whole sound protocol end to end")
    parser.add_argument("--sound-unit", action="store_true", help="one sound (fold, gamma) unit before and after")
    parser.add_argument("--skip-before", action="store_true", help="measure the current implementation only")
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, jobs={args.jobs}; load {loadavg()}\n")
    if args.sizes:
        bench_fits(args.sizes)
    if args.full or args.sound or args.sound_unit:
        frame, m = paper_table()
        if args.full:
            bench_paper(args.jobs, frame, m, args.skip_before)
        if args.sound_unit:
            bench_sound_unit(frame, m, args.skip_before)
        if args.sound:
            bench_sound(args.jobs, frame, m)
    print(f"finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load {loadavg()}")


if __name__ == "__main__":
    main()
