"""CPU speed of the Enformer baseline (enformer-pytorch's Enformer through caduceus_vep.model.enformer),
its FLOPs per 196,608 bp pass, the projected paper-run cost, and the peak RSS of one full-size pass.

    .venv/bin/python benchmarks/enformer_speed.py [--threads 1] [--repeats 3] [--full-l 12288] [--rss]
        [--out benchmarks/results/enformer.md]

- tiny: the demo's random checkpoint (``tiny_settings()``, ~91k parameters, NOT PRETRAINED) at the
  demo context of 1,536 bp, batch 1 and 8, through ``pooled_features`` (one-hot, trunk, pooling);
- full: the released architecture (dim 1,536, depth 11, 251M parameters) with random weights at a
  short context (``--full-l`` bp, no crop: the 896-bin crop needs >= 114,688 bp), trunk only;
- FLOPs: counted by ``torch.utils.flop_counter`` on a meta-device model (no compute), convolutions
  and matmuls only (2 per multiply-add), at 196,608 bp and at ``--full-l``;
- ``--rss``: one forward at 196,608 bp (the paper's context, 896 bins, full size) in a fresh child
  process; its peak RSS from ``VmHWM`` (``ru_maxrss`` would keep a parent's peak across fork + exec).

Speed does not depend on the weights. Wall time is best of N (the machine is shared: /proc/loadavg
before and after is recorded); CPU seconds are the process time of the timed passes (all threads).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from caduceus_vep.model.enformer import (
    PAPER_CONTEXT_BP,
    EnformerSettings,
    build_enformer,
    build_random_enformer,
    one_hot,
    pooled_features,
    tiny_settings,
)

#: Variants of the paper run as given in the task brief (ref and alt each one pass, forward strand only).
PAPER_VARIANTS = 97_000
#: Unique variants assumed by benchmarks/results/baselines.md, for comparison.
UNIQUE_VARIANTS = 47_000
# Dense fp16/bf16 tensor-core peaks (TFLOP/s, no sparsity) of the GPUs a user is likely to have.
GPU_PEAK_TFLOPS = {"A100 (fp16)": 312.0, "H100 SXM (fp16)": 989.0}
ASSUMED_UTILISATION = 0.35  # conv-heavy, batch 1, fp16 autocast: a guess, not a measurement


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def random_sequences(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def count_flops(settings: EnformerSettings, length: int) -> dict[str, float]:
    """Trunk FLOPs of one sequence by op type, on a meta-device model (nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_enformer(settings)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, length, 4, device="meta"), return_only_embeddings=True)
    by_op = {str(op).removeprefix("aten."): float(n) for op, n in counter.get_flop_counts()["Global"].items()}
    by_op["total"] = float(counter.get_total_flops())
    return by_op


def timed(fn, repeats: int) -> tuple[float, list[float], float]:
    """(best wall s, all walls, CPU s over all timed passes) after one warm-up call."""
    fn()
    walls, cpu0 = [], time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return min(walls), walls, time.process_time() - cpu0


def rss_child(threads: int) -> None:
    """Child: one full-size forward at the paper context; prints a JSON line."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = build_random_enformer(EnformerSettings(), seed=0)
    build_s = time.perf_counter() - t0
    after_build = vm_kib("VmRSS")
    seq = random_sequences(1, PAPER_CONTEXT_BP, seed=1)
    cpu0, t0 = time.process_time(), time.perf_counter()
    feats = pooled_features(model, seq)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"build_s": build_s, "rss_after_build_gib": after_build / 2**20, "peak_rss_gib": vm_kib("VmHWM") / 2**20,
                      "wall_s": wall, "cpu_s": cpu, "shape": list(feats.shape), "finite": bool(np.isfinite(feats).all())}))


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-l", type=int, default=12_288, help="short context (bp) for the full-size timing")
    parser.add_argument("--rss", action="store_true", help="also run one full-size pass at 196,608 bp in a child process")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.threads)
        return
    torch.set_num_threads(args.threads)
    started, load0, wall0 = datetime.datetime.now(datetime.UTC), loadavg(), time.perf_counter()
    lines = ["# Enformer baseline: CPU speed, FLOPs and projected paper-run cost", ""]
    cmd = " ".join([".venv/bin/python", "benchmarks/enformer_speed.py", *sys.argv[1:]])
    try:
        from importlib import metadata
        version = metadata.version("enformer-pytorch")
    except Exception:  # noqa: BLE001 - report, do not fail
        version = "?"
    lines += [f"- command: `{cmd}`", f"- date: {started:%Y-%m-%dT%H:%M}Z; torch {torch.__version__}; enformer-pytorch {version}; "
              f"threads: {args.threads}; best of {args.repeats}",
              f"- machine: {os.cpu_count()} CPUs ({cpu_name()}); /proc/loadavg at start {load0}",
              "- random weights (NOT PRETRAINED; speed does not depend on them), fp32, inference mode", ""]

    rows = []
    tiny = build_random_enformer(tiny_settings(), seed=0)
    for batch in (1, 8):
        seqs = random_sequences(batch, 1_536, seed=batch)
        best, walls, cpu = timed(lambda s=seqs, b=batch: pooled_features(tiny, s, batch_size=b), args.repeats)
        rows.append((f"tiny ({tiny.settings.parameter_count():,} params), pooled_features", 1_536, batch, best, walls, cpu))
    full_settings = EnformerSettings(target_length=-1)
    t0 = time.perf_counter()
    full = build_random_enformer(full_settings, seed=0)
    full_build = time.perf_counter() - t0
    x = one_hot(random_sequences(1, args.full_l, seed=3))
    with torch.inference_mode():
        best, walls, cpu = timed(lambda m=full: m(x, return_only_embeddings=True), max(1, args.repeats - 1))
    rows.append((f"full size ({full_settings.parameter_count():,} params), trunk, no crop", args.full_l, 1, best, walls, cpu))
    del full  # 1 GB: free it before the child process builds its own
    load1 = loadavg()

    flops_paper = count_flops(EnformerSettings(), PAPER_CONTEXT_BP)
    flops_short = count_flops(full_settings, args.full_l)
    flops_tiny = count_flops(tiny_settings(), 1_536)
    lines += [f"Full-size model built (random weights) in {full_build:.1f} s; /proc/loadavg after the timed runs {load1}", "",
              "| model | L (bp) | batch | best wall (s) | walls (s) | CPU s (timed passes) | bp/s (best wall) | bp per CPU s | GFLOP/s (best wall) |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, length, batch, best, walls, cpu in rows:
        flops = (flops_tiny if length == 1_536 and "tiny" in name else flops_short)["total"] * batch
        n_passes = len(walls)
        lines.append(f"| {name} | {length:,} | {batch} | {best:.3f} | {', '.join(f'{w:.3f}' for w in walls)} | {cpu:.3f} | "
                     f"{length * batch / best:,.0f} | {length * batch * n_passes / cpu:,.0f} | {flops / best / 1e9:.1f} |")
    lines += ["", "## FLOPs (convolutions + matmuls, 2 per multiply-add; trunk only, the output heads are not run)", "",
              "| model | L (bp) | conv GFLOP | matmul GFLOP | total GFLOP | conv share |", "|---|---:|---:|---:|---:|---:|"]
    for name, length, f in (("full size, 896 bins", PAPER_CONTEXT_BP, flops_paper), (f"full size, {args.full_l // 128} bins", args.full_l, flops_short),
                            ("tiny, 8 bins", 1_536, flops_tiny)):
        conv = f.get("convolution", 0.0)
        lines.append(f"| {name} | {length:,} | {conv / 1e9:,.2f} | {(f['total'] - conv) / 1e9:,.2f} | {f['total'] / 1e9:,.2f} | {conv / f['total']:.0%} |")

    rss_lines: list[str] = []
    rss: dict | None = None
    if args.rss:
        proc = subprocess.run([sys.executable, __file__, "--rss-child", "--threads", str(args.threads)],
                              capture_output=True, text=True, check=False)
        rss_lines += ["## One full-size pass at 196,608 bp on CPU (fresh child process)", ""]
        if proc.returncode == 0:
            r = rss = json.loads(proc.stdout.strip().splitlines()[-1])
            rss_lines += ["| RSS after build (GiB) | peak RSS, VmHWM (GiB) | wall of the pass (s) | CPU s of the pass | bp/s | output |",
                      "|---:|---:|---:|---:|---:|---|",
                      f"| {r['rss_after_build_gib']:.2f} | {r['peak_rss_gib']:.2f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                      f"{PAPER_CONTEXT_BP / r['wall_s']:,.0f} | {r['shape']} features, finite {r['finite']} |", "",
                      f"Model build (random weights) in the child: {r['build_s']:.1f} s. GFLOP per CPU s at 196,608 bp: "
                      f"{flops_paper['total'] / r['cpu_s'] / 1e9:.1f}.", ""]
        else:
            rss_lines += [f"failed (exit {proc.returncode}): `{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}`", ""]
    per_seq = flops_paper["total"]
    lines += ["", "## Projection for the paper run (196,608 bp, ref and alt one pass each, forward strand only)", "",
              f"{per_seq / 1e12:.2f} TFLOP per sequence. GPU times assume {ASSUMED_UTILISATION:.0%} of the dense fp16 peak "
              "(a guess for a conv-heavy model at batch 1 under fp16 autocast; not measured: no GPU here). "
              + ("CPU-core days: the CPU seconds of the measured 196,608 bp pass below." if args.rss else
               f"CPU-core days: the measured GFLOP per CPU second at {args.full_l:,} bp applied to the 196,608 bp FLOPs "
               "(--rss measures the real pass)."), "",
              "| variants | passes | PFLOP | " + " | ".join(f"{g} GPU-hours" for g in GPU_PEAK_TFLOPS) + " | CPU-core days |",
              "|---:|---:|---:|" + "---:|" * (len(GPU_PEAK_TFLOPS) + 1)]
    full_row = rows[-1]
    gflop_per_cpu_s = flops_short["total"] * len(full_row[4]) / full_row[5] / 1e9
    for variants in (PAPER_VARIANTS, UNIQUE_VARIANTS):
        passes = 2 * variants
        total = passes * per_seq
        gpu = " | ".join(f"{total / (peak * 1e12 * ASSUMED_UTILISATION) / 3600:,.1f}" for peak in GPU_PEAK_TFLOPS.values())
        cpu_s_per_pass = rss["cpu_s"] if rss else per_seq / (gflop_per_cpu_s * 1e9)
        lines.append(f"| {variants:,} | {passes:,} | {total / 1e15:,.0f} | {gpu} | {passes * cpu_s_per_pass / 86400:,.0f} |")
    lines += ["", f"Measured full-size CPU throughput: {gflop_per_cpu_s:.1f} GFLOP per CPU second at {args.full_l:,} bp.",
              "Paper setup per baselines.md: fp16 autocast, batch 1, 8 GPUs (type not stated); 3-5 GB of GPU memory per pass.",
              "Threads: on this shared 2-core machine (load ~4) two OpenMP threads spin-wait on each other: the tiny model's "
              "pass took 0.8 CPU s at 2 threads against 0.02 s at 1 thread, so use --threads 1 here.", ""]

    lines += rss_lines
    lines.append(f"Whole script: {time.perf_counter() - wall0:.0f} s wall; /proc/loadavg at the end {loadavg()}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
