"""CPU speed and memory of the PyTorch Caduceus: the selective scans, the forward, tokens/s, peak RSS.

    .venv/bin/python benchmarks/model_speed.py [--long-l 16384] [--rss-l 131072] [--repeats 5]

Prints a Markdown report (the source of benchmarks/results/model.md). Random weights of the released
7.7M configuration (d_model 256, 16 layers, d_state 16): speed does not depend on the weights.
Every ratio is measured within this one run, alternating the variants, best of N (the machine is
shared, so best-of is the least noisy statistic). Peak RSS is measured in a fresh child process.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from caduceus_vep.model import CaduceusConfig, build_caduceus, scan_backend
from caduceus_vep.model import mamba as mamba_mod
from caduceus_vep.model.scan import (
    selective_scan,
    selective_scan_fused,
    selective_scan_reference,
    selective_scan_torch,
)

D_MODEL, N_LAYER, D_STATE = 256, 16, 16


def config(rcps: bool) -> CaduceusConfig:
    return CaduceusConfig(d_model=D_MODEL, n_layer=N_LAYER, vocab_size=12, rcps=rcps)


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(variants: dict, repeats: int) -> dict[str, float]:
    """Best-of-N wall time per variant, alternating the variants round by round."""
    best = {k: float("inf") for k in variants}
    for _ in range(repeats):
        for name, (fn, reps) in variants.items():
            if reps > 0:
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
                variants[name] = (fn, reps - 1)
    return best


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / best_of(lambda: torch.mm(a, b), repeats) / 1e9


def model_flops_per_token(rcps: bool) -> float:
    """Matmul FLOPs per token (2 per multiply-add): in_proj and out_proj once per layer (shared by
    both directions), x_proj and dt_proj per direction. Conv, scan and norms (O(d_inner * d_state)
    elementwise work per token) are not counted. PS runs the stack on both strands: twice."""
    d_inner, dt_rank = 2 * D_MODEL, -(-D_MODEL // 16)
    per_layer = 2 * D_MODEL * 2 * d_inner + 2 * d_inner * D_MODEL
    per_layer += 2 * (2 * d_inner * (dt_rank + 2 * D_STATE) + 2 * dt_rank * d_inner)
    return per_layer * N_LAYER * (2 if rcps else 1)


def scan_inputs(length: int, batch: int = 1, d_inner: int = 2 * D_MODEL, n: int = D_STATE):
    """Random scan inputs with the memory layouts Mamba.mix passes (views, not copies)."""
    g = torch.Generator().manual_seed(0)
    dt_rank = -(-D_MODEL // 16)
    u = torch.randn(batch, d_inner, length, generator=g)  # conv output: [B, D, L]
    x_dbl = torch.randn(batch, length, dt_rank + 2 * n, generator=g)  # x_proj output
    delta = (torch.randn(batch, length, d_inner, generator=g) - 3).transpose(1, 2)  # dt_proj output
    xz = torch.randn(batch, length, 2 * d_inner, generator=g)
    z = xz[..., d_inner:].transpose(1, 2)
    B = x_dbl[..., dt_rank:dt_rank + n].transpose(1, 2)
    C = x_dbl[..., dt_rank + n:].transpose(1, 2)
    A = -torch.exp(torch.rand(d_inner, n, generator=g) * 3)
    D = torch.randn(d_inner, generator=g)
    bias = torch.randn(d_inner, generator=g) * 0.1
    return (u, delta, A, B, C), dict(D=D, z=z, delta_bias=bias, delta_softplus=True)


def zero_scan(u, *args, **kwargs):
    """The scan "skipped": a free result of the right shape (the lower bound of the forward)."""
    return u.new_zeros(u.shape)


def forward_fn(model, ids):
    def run():
        with torch.inference_mode():
            model(ids)
    return run


def with_scan(scan, fn):
    def reversible(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False):
        # The model asks for the reverse direction with reverse=True (selective_scan's flag); scans
        # without that flag get flipped inputs, as the model's own fallback does.
        if not reverse:
            return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        fl = lambda t: None if t is None else t.flip(-1)  # noqa: E731
        return scan(fl(u), fl(delta), A, fl(B), fl(C), D, fl(z), delta_bias, delta_softplus).flip(-1)

    def run():
        old = mamba_mod.selective_scan
        mamba_mod.selective_scan = scan if scan is selective_scan else reversible
        try:
            fn()
        finally:
            mamba_mod.selective_scan = old
    return run


def rss_child(length: int, threads: int) -> None:
    torch.set_num_threads(threads)
    model = build_caduceus(config(rcps=True), seed=0)
    ids = torch.randint(7, 11, (1, length), generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model(ids)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"{length} {seconds:.3f} {peak} {before} {tuple(out.shape)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scan-l", type=int, default=1536)
    parser.add_argument("--long-l", type=int, default=16384, help="second length for tokens/s (0: skip)")
    parser.add_argument("--rss-l", type=int, default=131072, help="length for the peak-RSS run (0: skip)")
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.threads)
        return
    torch.manual_seed(0)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from caduceus_vep.model import _scan_kernel  # the benchmark is about the kernel: it must be built

    out = print
    out("# CPU speed of the PyTorch Caduceus\n")
    out(f"- command: `{' '.join([Path(sys.executable).name] + sys.argv)}`")
    out(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    out(f"- machine: {os.cpu_count()} CPUs ({cpu}); load average at start {os.getloadavg()[0]:.1f}")
    out(f"- torch {torch.__version__}, scan backend `{scan_backend()}`, kernel ISA `{_scan_kernel.ISA}`")
    out(f"- best of {args.repeats} (fewer for the slow variants), fp32, random weights, d_model {D_MODEL}, "
        f"{N_LAYER} layers, d_state {D_STATE}\n")

    # 1. The scans alone, on one direction of one layer of the Ph model (batch 1, d_inner 512).
    torch.set_num_threads(1)
    L = args.scan_l
    sargs, skw = scan_inputs(L)
    with torch.inference_mode():
        t = interleaved({
            "per-position loop (reference)": (lambda: selective_scan_reference(*sargs, **skw), 2),
            "chunked PyTorch scan": (lambda: selective_scan_torch(*sargs, **skw), 3),
            "compiled kernel": (lambda: selective_scan_fused(*sargs, **skw), args.repeats * 4),
        }, args.repeats * 4)
    loop = t["per-position loop (reference)"]
    out(f"## Selective scan alone (1 thread; u [1, 512, {L}], d_state 16, with D, z gate, softplus)\n")
    out("| scan | ms per call | speed-up vs loop |\n|---|---:|---:|")
    for name, sec in t.items():
        out(f"| {name} | {sec * 1e3:.2f} | {loop / sec:.1f}x |")
    out(f"\nTarget: kernel ≥ 15x faster than the loop → **{loop / t['compiled kernel']:.1f}x, "
        f"{'met' if loop / t['compiled kernel'] >= 15 else 'MISSED'}**.\n")

    # 2. The whole forward, Ph at L = scan_l, 1 thread, with each scan and with the scan skipped.
    model = build_caduceus(config(rcps=False), seed=0)
    ids = torch.randint(7, 11, (1, L), generator=torch.Generator().manual_seed(0))
    fwd = forward_fn(model, ids)
    fwd()
    t = interleaved({
        "scan skipped (zeros)": (with_scan(zero_scan, fwd), args.repeats),
        "compiled kernel": (with_scan(selective_scan, fwd), args.repeats),
        "chunked PyTorch scan": (with_scan(selective_scan_torch, fwd), 2),
        "per-position loop": (with_scan(selective_scan_reference, fwd), 1),
    }, args.repeats)
    skipped = t["scan skipped (zeros)"]
    out(f"## Whole forward, 7.7M Ph, L = {L}, 1 thread\n")
    out("| scan | s per sequence | sequences/s | vs scan skipped |\n|---|---:|---:|---:|")
    for name, sec in t.items():
        out(f"| {name} | {sec:.3f} | {1 / sec:.2f} | {sec / skipped:.2f}x |")
    ratio = t["compiled kernel"] / skipped
    out(f"\nTarget: forward within 1.3x of the scan skipped → **{ratio:.2f}x, {'met' if ratio <= 1.3 else 'MISSED'}**. "
        "The skipped variant also skips the work fused into the kernel (softplus, D skip, silu gate).\n")

    # 3. Tokens/s and the fraction of this machine's matmul throughput.
    gflops = {th: matmul_gflops(th) for th in (1, 2)}
    out("## Tokens/s (compiled kernel) and fraction of measured fp32 matmul throughput\n")
    out(f"torch.mm 2048x2048 fp32: {gflops[1]:.0f} GFLOP/s on 1 thread, {gflops[2]:.0f} GFLOP/s on 2 threads. "
        f"Model matmul FLOPs per token: Ph {model_flops_per_token(False) / 1e6:.1f} M, "
        f"PS {model_flops_per_token(True) / 1e6:.1f} M (projections only).\n")
    out("| model | L | threads | s per sequence | tokens/s | model GFLOP/s | fraction of mm |\n"
        "|---|---:|---:|---:|---:|---:|---:|")
    lengths = [L] + ([args.long_l] if args.long_l else [])
    for rcps, name in ((False, "Ph"), (True, "PS")):
        model = build_caduceus(config(rcps), seed=0)
        for length in lengths:
            ids = torch.randint(7, 11, (1, length), generator=torch.Generator().manual_seed(0))
            for threads in (1, 2):
                torch.set_num_threads(threads)
                reps = args.repeats if length <= 4096 else 2
                sec = best_of(forward_fn(model, ids), reps)
                tps = length / sec
                achieved = tps * model_flops_per_token(rcps) / 1e9
                out(f"| {name} | {length:,} | {threads} | {sec:.2f} | {tps:,.0f} | {achieved:.1f} | "
                    f"{achieved / gflops[threads]:.0%} |")
    torch.set_num_threads(1)

    # 4. Peak RSS of one PS forward at long context, fresh process.
    if args.rss_l:
        cmd = [sys.executable, __file__, "--rss-child", str(args.rss_l), "--threads", "2"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        length, seconds, peak_kib, before_kib, shape = res.stdout.split(maxsplit=4)
        peak_gb = int(peak_kib) * 1024 / 1e9
        out(f"\n## Peak memory, 7.7M PS, L = {int(length):,}, 2 threads, fresh process\n")
        out(f"- peak RSS (ru_maxrss): **{peak_gb:.2f} GB** (model built, before the forward: "
            f"{int(before_kib) * 1024 / 1e9:.2f} GB); target < 4 GB → **{'met' if peak_gb < 4 else 'MISSED'}**")
        out(f"- that forward took {float(seconds):.1f} s: {int(length) / float(seconds):,.0f} tokens/s "
            f"(PS, 2 threads, one run), output {shape.strip()}")


if __name__ == "__main__":
    main()
