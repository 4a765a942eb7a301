"""The lean CPU forward against the previous one, the scan-skipped bound, and other scans in the same model.

    .venv/bin/python benchmarks/forward_speed.py [--lengths 1536 16384] [--repeats 5] [--long-repeats 3]

Prints a Markdown report (the source of benchmarks/results/forward.md). Random weights of the released
7.7M configuration (d_model 256, 16 layers, d_state 16). Everything is measured in this one run,
the variants alternating round by round, and reported as medians of CPU-seconds
(``time.process_time``, all threads of this process) and of wall seconds: the machine is shared,
and CPU-seconds are the least sensitive to other people's load.

1. Forward variants (issue 13, item 4): "before" is the frozen copy of the previous forward
   (tests/frozen_forward.py) with the compiled scan, "after" the model's forward, "after, scan
   skipped" the model's forward with a free scan (zeros in the layout the compiled kernel returns),
   the lower bound of the non-scan work. Plus this machine's fp32 matmul rate, same run.
   ``--before-scan-isa portable`` runs "before" on the compiled kernel's portable (auto-vectorised)
   path, the code every non-AVX-512 CPU ran before the AVX2 step existed, so that "before" is the
   previous forward with the previous scan.
2. Scans in the same model (issue 13, item 6): the model's forward with the compiled kernel, with
   mambapy's parallel scan (``mambapy.mamba.MambaBlock.selective_scan``: Blelloch pscan over the
   [B, L, D, N] state, from PyPI, the ``bench`` extra) and with the per-position loop
   (``selective_scan_reference``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from caduceus_vep.model import CaduceusConfig, build_caduceus, scan_backend
from caduceus_vep.model import mamba as mamba_mod
from caduceus_vep.model.scan import selective_scan, selective_scan_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import frozen_forward  # noqa: E402

D_MODEL, N_LAYER, D_STATE = 256, 16, 16


def config(rcps: bool, n_layer: int) -> CaduceusConfig:
    return CaduceusConfig(d_model=D_MODEL, n_layer=n_layer, vocab_size=12, rcps=rcps)


def model_flops_per_token(rcps: bool, n_layer: int) -> float:
    """Matmul FLOPs per token (2 per multiply-add) of the projections: in_proj and out_proj once per
    layer, x_proj and dt_proj per direction; conv, scan and norms not counted. PS: both strands."""
    d_inner, dt_rank = 2 * D_MODEL, -(-D_MODEL // 16)
    per_layer = 2 * D_MODEL * 2 * d_inner + 2 * d_inner * D_MODEL
    per_layer += 2 * (2 * d_inner * (dt_rank + 2 * D_STATE) + 2 * dt_rank * d_inner)
    return per_layer * n_layer * (2 if rcps else 1)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU-seconds of this process, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (CPU s, wall s) per variant over ``rounds`` rounds, the variants alternating."""
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(timed(fn))
    return {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in samples.items()}


def matmul_rate(threads: int, n: int = 2048, rounds: int = 7) -> tuple[float, float]:
    """fp32 torch.mm GFLOP per CPU-second and per wall second (medians)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    cpu, wall = interleaved({"mm": lambda: torch.mm(a, b)}, rounds)["mm"]
    flops = 2 * n**3
    return flops / cpu / 1e9, flops / wall / 1e9


# ------------------------------------------------------------------------------------------------
# Scans with selective_scan's signature, for swapping into the model.

def _flipped(scan: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``scan`` taught ``reverse``: flip the inputs along L, scan, flip back."""
    def run(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False):
        if not reverse:
            return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        fl = lambda t: None if t is None else t.flip(-1)  # noqa: E731
        return scan(fl(u), fl(delta), A, fl(B), fl(C), D, fl(z), delta_bias, delta_softplus).flip(-1)
    return run


def zero_scan(u, *args, **kwargs):
    """The scan skipped: zeros, [B, D, L] view of a [B, L, D] tensor as the compiled kernel returns."""
    batch, dim, length = u.shape
    return u.new_zeros(batch, length, dim).transpose(1, 2)


def _mambapy(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    from mambapy.mamba import MambaBlock

    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    # mambapy's own (parallel-scan) selective_scan, [B, L, *] layout; it does not use `self`.
    y = MambaBlock.selective_scan(None, u.transpose(1, 2), delta.transpose(1, 2), A,
                                  B.transpose(1, 2), C.transpose(1, 2), D)
    if z is not None:
        y = y * F.silu(z.transpose(1, 2))
    return y.transpose(1, 2)


SCANS = {
    "compiled kernel (fused C)": selective_scan,
    "mambapy parallel scan": _flipped(_mambapy),
    "per-position loop": _flipped(selective_scan_reference),
}


def with_scan(scan: Callable[..., torch.Tensor], fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        old = mamba_mod.selective_scan
        mamba_mod.selective_scan = scan
        try:
            return fn()
        finally:
            mamba_mod.selective_scan = old
    return run


@contextlib.contextmanager
def kernel_isa(name: str | None):
    """Run the compiled scan on its ``name`` code path (``_scan_kernel.use_isa``); None: unchanged."""
    if name is None:
        yield
        return
    from caduceus_vep.model import _scan_kernel

    previous = _scan_kernel.current_isa()
    if _scan_kernel.use_isa(name) != name:
        raise SystemExit(f"--before-scan-isa {name}: this CPU has no such code path")
    try:
        yield
    finally:
        _scan_kernel.use_isa(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1536, 16384])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5, help="rounds at lengths <= 4096")
    parser.add_argument("--long-repeats", type=int, default=3, help="rounds at longer lengths")
    parser.add_argument("--layers", type=int, default=N_LAYER)
    parser.add_argument("--long-layers", type=int, default=N_LAYER, help="layers at lengths > 4096 (ratios are per layer)")
    parser.add_argument("--scan-l", type=int, default=1536, help="length of the scans-in-the-model section (0: skip)")
    parser.add_argument("--scan-repeats", type=int, default=2)
    parser.add_argument("--scan-layers", type=int, default=N_LAYER, help="layers in the scans section")
    parser.add_argument("--scan-threads", type=int, default=1,
                        help="threads of the scans section (1: the per-position loop's many tiny ops do not scale)")
    parser.add_argument("--before-scan-isa", choices=["avx512", "avx2", "portable"], default=None,
                        help="code path of the compiled scan for 'before' (default: the same as 'after')")
    args = parser.parse_args()
    torch.manual_seed(0)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from importlib.metadata import version

    import mambapy  # noqa: F401 - the side-by-side section needs it: pip install -c constraints.txt -e .[bench]

    from caduceus_vep.model import _scan_kernel

    out = print
    t_start = time.perf_counter()
    out("# Lean CPU forward: before/after, scan-skipped bound, scans in the same model\n")
    out(f"- command: `{' '.join([Path(sys.executable).name] + sys.argv)}`")
    out(f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
    out(f"- machine: {os.cpu_count()} CPUs ({cpu}); load average at start {'/'.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min)")
    out(f"- torch {torch.__version__}, scan backend `{scan_backend()}`, kernel ISA `{_scan_kernel.ISA}`, mambapy {version('mambapy')}")
    if args.before_scan_isa:
        out(f"- 'before' (and 'before, scan skipped') run the compiled scan's `{args.before_scan_isa}` path, "
            f"'after' its default path (`{_scan_kernel.current_isa()}`)")
    out(f"- fp32, random weights, d_model {D_MODEL}, {args.layers} layers ({args.long_layers} above 4,096 bp), d_state {D_STATE}, batch 1; medians of "
        f"{args.repeats} rounds (L <= 4096) or {args.long_repeats} (longer), variants alternating\n")

    rates = {th: matmul_rate(th) for th in args.threads}
    out("## fp32 matmul rate of this machine (torch.mm 2048x2048, this run)\n")
    out("| threads | GFLOP per CPU-second | GFLOP/s wall |\n|---:|---:|---:|")
    for th, (per_cpu, per_wall) in rates.items():
        out(f"| {th} | {per_cpu:.0f} | {per_wall:.0f} |")

    out("\n## Whole forward: before (previous code) vs after (lean), and the scan-skipped bound\n")
    out("Medians per sequence, CPU-seconds unless marked wall. speed-up = before / after (wall in brackets); "
        "non-scan speed-up = the same with the scan skipped in both (what item 4 changes: everything but the "
        "scan); vs bound = after / after with the scan skipped. fraction of mm = the projections' matmul "
        "FLOPs per CPU-second / torch.mm's GFLOP per CPU-second at the same thread count (whole forward, "
        "before → after; and after with the scan skipped).\n")
    out("| model | L | layers | threads | before | after | speed-up | before, scan skipped | after, scan skipped | "
        "non-scan speed-up | vs bound | tokens/s (after, wall) | fraction of mm | fraction of mm, scan skipped |")
    out("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for rcps, name in ((True, "PS"), (False, "Ph")):
        for length in args.lengths:
            layers = args.layers if length <= 4096 else args.long_layers
            model = build_caduceus(config(rcps, layers), seed=0)
            ids = torch.randint(7, 11, (1, length), generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                diff = (model(ids) - frozen_forward.forward(model, ids)).abs().max().item()

            def after(ids=ids, model=model):
                with torch.inference_mode():
                    model(ids)

            def before(ids=ids, model=model):
                with torch.inference_mode(), kernel_isa(args.before_scan_isa):
                    frozen_forward.forward(model, ids)

            for th in args.threads:
                torch.set_num_threads(th)
                rounds = args.repeats if length <= 4096 else args.long_repeats
                t = interleaved({"before": before, "after": after, "before_skipped": with_scan(zero_scan, before),
                                 "skipped": with_scan(zero_scan, after)}, rounds)
                (bc, bw), (ac, aw), (bsc, _), (sc, _) = t["before"], t["after"], t["before_skipped"], t["skipped"]
                flops = model_flops_per_token(rcps, layers) * length / 1e9
                mm = rates[th][0]
                rows.append((name, length, th, bc / ac, bsc / sc, ac / sc, diff))
                out(f"| {name} | {length:,} | {layers} | {th} | {bc:.2f} | {ac:.2f} | **{bc / ac:.2f}x** ({bw / aw:.2f}x) | "
                    f"{bsc:.2f} | {sc:.2f} | **{bsc / sc:.2f}x** | {ac / sc:.2f}x | {length / aw:,.0f} | "
                    f"{flops / bc / mm:.0%} → {flops / ac / mm:.0%} | {flops / sc / mm:.0%} |")
    out(f"\nload average after this section: {'/'.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    out("Max |after - before| of the last hidden state (same weights): "
        + ", ".join(sorted({f"{n} L={L:,}: {d:.1e}" for n, L, _, _, _, _, d in rows})) + "\n")
    worst = min(r[3] for r in rows)
    worst_ns = min(r[4] for r in rows)
    worst_bound = max(r[5] for r in rows)
    out(f"Goals: whole forward >= 1.6x everywhere → worst **{worst:.2f}x, {'met' if worst >= 1.6 else 'MISSED'}** "
        f"(the non-scan part alone: worst {worst_ns:.2f}x); within 1.25x of the scan-skipped bound → worst "
        f"**{worst_bound:.2f}x, {'met' if worst_bound <= 1.25 else 'MISSED'}**.\n")

    if args.scan_l:
        length = args.scan_l
        out(f"## Scans in the same model (lean forward), L = {length:,}, {args.scan_layers} layers\n")
        out(f"Medians of {args.scan_repeats} rounds; slowdown vs the compiled kernel in CPU-seconds (wall in brackets).\n")
        out("| model | threads | scan | CPU-s per sequence | wall-s per sequence | vs compiled kernel |\n|---|---:|---|---:|---:|---:|")
        ids = torch.randint(7, 11, (1, length), generator=torch.Generator().manual_seed(0))
        for rcps, name in ((False, "Ph"), (True, "PS")):
            model = build_caduceus(config(rcps, args.scan_layers), seed=0)

            def after(ids=ids, model=model):
                with torch.inference_mode():
                    return model(ids)

            got = {k: with_scan(s, after)() for k, s in SCANS.items()}
            ref = got["compiled kernel (fused C)"]
            agree = max((v - ref).abs().max().item() for v in got.values())
            for th in (args.scan_threads,):
                torch.set_num_threads(th)
                t = interleaved({k: with_scan(s, after) for k, s in SCANS.items()}, args.scan_repeats)
                kc, kw = t["compiled kernel (fused C)"]
                for k, (c, w) in t.items():
                    out(f"| {name} | {th} | {k} | {c:.2f} | {w:.2f} | {c / kc:.1f}x ({w / kw:.1f}x) |")
            out(f"| {name} | | (max difference of the outputs between the three scans: {agree:.1e}) | | | |")
        out(f"\nload average at the end: {'/'.join(f'{x:.1f}' for x in os.getloadavg())}; "
            f"run time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
