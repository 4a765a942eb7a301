"""Speed of the evaluation stage on synthetic features of the paper's shape (513 = 2 x 256 + tissue).

    .venv/bin/python benchmarks/evaluate_speed.py --jobs 2 [--full]

Prints Markdown rows: one RBF SVC fit per training size (5,000 = the paper's subsample; larger sizes
for the sound protocol's max_train_rows), and with --full the whole paper protocol (3 buckets x 5 seeds
x 3 C) on ~88k train / ~8.8k test rows with the published bucket sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from caduceus_vep import evaluate as ev
from caduceus_vep.sound import _fit

TRAIN = {"0-30kb": 67_359, "30-100kb": 15_351, ">100kb": 5_138}
TEST = {"0-30kb": 5_852, "30-100kb": 1_405, ">100kb": 1_315}


def synthetic(n: int, d: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 2 * d + 1)).astype(np.float64)
    X[:, :8] += 0.3 * y[:, None]  # a weak signal, so the SVM is not trivially separable
    return X, y


def fit_seconds(n: int) -> float:
    X, y = synthetic(n)
    started = time.perf_counter()
    _fit(X, y, 1.0, "scale")
    return time.perf_counter() - started


def paper_stage(jobs: int) -> float:
    rows, start = [], 0
    for bucket, low in zip(TRAIN, (0, 30_001, 100_001)):
        for split, n in (("train", TRAIN[bucket]), ("test", TEST[bucket])):
            rows.append(pd.DataFrame({"variant_id": [f"v{i}" for i in range(start, start + n)], "split": split,
                                      "distance_to_nearest_TSS": low + 1, "tissue": "T"}))
            start += n
    frame = pd.concat(rows, ignore_index=True)
    rng = np.random.default_rng(1)
    frame["label"] = rng.integers(0, 2, len(frame))
    m = {k: rng.normal(size=(len(frame), 256)).astype(np.float32) for k in ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc")}
    started = time.perf_counter()
    ev.paper_protocol(frame, frame["variant_id"], m, model="bench", rc_rule="ps", seeds=[1, 2, 3, 4, 5], c_grid=[1, 5, 10],
                      train_subsample=5000, n_jobs=jobs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 10_000, 20_000])
    parser.add_argument("--full", action="store_true", help="also time the whole paper protocol (45 fits)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jobs={args.jobs}")
    print("| training rows x 513 features | one StandardScaler + RBF SVC fit (s) |\n|---|---|")
    for n in args.sizes:
        print(f"| {n:,} | {fit_seconds(n):.1f} |", flush=True)
    if args.full:
        print(f"\nwhole paper protocol (88k train / 8.6k test, 45 fits + predictions), {args.jobs} jobs: {paper_stage(args.jobs):.0f} s")


if __name__ == "__main__":
    main()
