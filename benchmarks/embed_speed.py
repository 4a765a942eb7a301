"""Embedding speed and memory of the full-size Caduceus shape (d_model 256, 16 layers) on this machine.

    .venv/bin/python benchmarks/embed_speed.py [--lengths 1536 16384] [--threads 2] [--batches 2]

Random weights (caduceus_vep.model.build_caduceus) in the released 131k checkpoints' shape; speed
does not depend on the weights. Each (model, context length) runs in its own subprocess so that its
peak RSS is its own. One batch = one variant (ref + alt, and for Ph their reverse complements in
the same model call), exactly as ``caduceus_vep.embed.pooled_features`` runs it. Prints a Markdown
table and the projected wall time of the paper run for benchmarks/results/embed.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout, installed or not
PAPER_CONTEXT = 131_072
# The paper's eQTL set: (variant, tissue) rows and unique variants (windows kept by the workflow;
# the Long-Range Benchmark table has ~97k rows over ~47k unique SNVs per the README).
PAPER_ROWS, PAPER_UNIQUE = 97_000, 47_000


def full_config(rcps: bool) -> dict:
    from caduceus_vep.demo import tiny_config

    return {**tiny_config(rcps=rcps), "d_model": 256, "n_layer": 16}


def worker(length: int, rcps: bool, threads: int, batches: int) -> dict:
    """Time ``batches`` one-variant batches at ``length``; returns seconds per variant and peak RSS."""
    import numpy as np
    import torch

    from caduceus_vep.embed import pooled_features
    from caduceus_vep.model import CaduceusConfig, build_caduceus, tokenize
    from caduceus_vep.windows import WindowSpec

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as the embedding driver does
    model = build_caduceus(CaduceusConfig.from_dict(full_config(rcps)), seed=0).eval()
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(0)
    pool = WindowSpec(length, 1536).pool_bounds()
    with torch.inference_mode():
        pooled_features(model, tokenize(["ACGT" * 64] * 2), (0, 256))  # warm-up (allocator, kernels)
        times = []
        for _ in range(batches):
            ref = "".join(rng.choice(list("ACGT"), length))
            alt = ref[: length // 2] + ("A" if ref[length // 2] != "A" else "C") + ref[length // 2 + 1:]
            ids = tokenize([ref, alt])
            started = time.perf_counter()
            pooled_features(model, ids, pool)
            times.append(time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"length": length, "model": "ps" if rcps else "ph", "params": n_params, "threads": threads,
            "seconds_per_variant": sum(times) / len(times), "times": times, "peak_rss_mb": peak_mb}


def disk_per_variant(width: int = 256, n: int = 2000) -> float:
    """Parquet bytes per variant of an embeddings/cache file at ``width`` (random features: incompressible, like real ones)."""
    import tempfile

    import numpy as np

    from caduceus_vep.embed import FEATURE_COLUMNS, FeatureBlock, write_block

    rng = np.random.default_rng(0)
    block = FeatureBlock([f"chr1:{i}:A:C" for i in range(n)], [f"{i:032x}" for i in range(n)],
                         {c: rng.standard_normal((n, width)).astype(np.float32) for c in FEATURE_COLUMNS})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.parquet"
        write_block(block, path, {"model": {"name": "x"}})
        return path.stat().st_size / n


def projection(rows: list[dict]) -> list[str]:
    """Paper-run wall time from the longest measured context, assuming cost linear in L."""
    lines = []
    longest = max(r["length"] for r in rows)
    total = 0.0
    for r in (r for r in rows if r["length"] == longest):
        per_token = r["seconds_per_variant"] / longest
        per_variant = per_token * PAPER_CONTEXT
        total += per_variant * PAPER_UNIQUE
        lines.append(f"- {r['model'].upper()}: {per_token * 1e6:.1f} µs per context token per variant → "
                     f"{per_variant:.0f} s per variant at {PAPER_CONTEXT:,} bp → "
                     f"{per_variant * PAPER_UNIQUE / 86400:.0f} days for {PAPER_UNIQUE:,} unique variants "
                     f"({per_variant * PAPER_ROWS / 86400:.0f} days if every one of the {PAPER_ROWS:,} rows were embedded)")
    lines.append(f"- both models: {total / 86400:.0f} days ({total / 86400 / 365:.1f} years) on this CPU")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1536, 16384])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2, help="one-variant batches timed per setting")
    parser.add_argument("--disk-only", action="store_true", help="only the disk figure (seconds)")
    parser.add_argument("--worker", nargs=2, metavar=("LENGTH", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1] == "ps", args.threads, args.batches)))
        return
    if args.disk_only:
        print(f"{disk_per_variant():,.0f} bytes per variant at d_model 256")
        return
    rows = []
    for length in args.lengths:
        for name in ("ps", "ph"):
            out = subprocess.run([sys.executable, __file__, "--worker", str(length), name, "--threads", str(args.threads),
                                  "--batches", str(args.batches)], cwd=REPO, check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"# {rows[-1]}", file=sys.stderr, flush=True)
    print(f"{rows[0]['params']:,} parameters (PS), {rows[1]['params']:,} (Ph); {args.threads} threads\n")
    print("| model | context bp | s per variant (ref+alt) | variants/s | µs per token | peak RSS MB |\n|---|---|---|---|---|---|")
    for r in rows:
        s = r["seconds_per_variant"]
        print(f"| {r['model'].upper()} | {r['length']:,} | {s:.2f} | {1 / s:.3f} | {s / r['length'] * 1e6:.1f} | {r['peak_rss_mb']:.0f} |")
    print()
    print("\n".join(projection(rows)))
    per_variant = disk_per_variant()
    print(f"\n- disk: {per_variant:,.0f} bytes per variant per model in parquet at d_model 256 "
          f"(embeddings/<model>.parquet; the cache holds one more copy) → {per_variant * PAPER_UNIQUE / 1e6:,.0f} MB "
          f"per model for {PAPER_UNIQUE:,} variants")


if __name__ == "__main__":
    main()
