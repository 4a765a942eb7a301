"""CPU speed of the paper's HyenaDNA and NT-v2 baselines (our PyTorch modules), FLOPs per token and
the projected cost of the paper run; optional peak RSS at each model's paper context.

    .venv/bin/python benchmarks/baselines_speed.py [--hyena-l 4096] [--nt-tokens 256] [--repeats 3]
        [--threads 2] [--rss] [--out benchmarks/results/baselines.md]

Random weights in the real-size configurations (HyenaDNA medium-160k: d_model 256, 8 layers,
max_seq_len 160,002; NT-v2 500M: hidden 1,024, 29 layers, SwiGLU 4,096): speed does not depend
on the weights. Wall time is best of N (the machine is shared); CPU seconds are those of the timed
passes (process time, all threads); /proc/loadavg is read before and after. ``--rss`` runs one
forward pass at the paper context (HyenaDNA 131,072 tokens, NT-v2 2,048 tokens) in a fresh child
process and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from caduceus_vep.model.hyenadna import HyenaDNAConfig, build_hyenadna
from caduceus_vep.model.ntv2 import NTv2Config, build_ntv2

#: Unique variants of the paper's eQTL set assumed by the other projections (README, "Scaling").
UNIQUE_VARIANTS = 47_000
HYENA_PAPER_TOKENS = 131_072
NT_PAPER_TOKENS = 2_048


def hyena_config() -> HyenaDNAConfig:
    return HyenaDNAConfig(d_model=256, n_layer=8, d_inner=1024, vocab_size=12, emb_dim=5, filter_order=64,
                          activation_freq=10, max_seq_len=160_002, extra={"tie_word_embeddings": False})


def hyena_flops_per_token(c: HyenaDNAConfig, length: int) -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) per token, plus the FFT long convolution and the filter MLP."""
    d = c.d_model
    linear = 2 * (d * 3 * d + d * d + d * c.d_inner + c.d_inner * d) * c.n_layer
    n = 2 * length  # three real FFTs of length 2L per channel, ~2.5 n log2 n FLOPs each
    fft = c.n_layer * d * 3 * 2.5 * n * torch.tensor(float(n)).log2().item() / length
    o = c.filter_order
    filt = c.n_layer * 2 * (c.emb_dim * o + c.num_inner_mlps * o * o + o * d)  # one filter value per position
    return {"linear": linear, "fft": fft, "filter": filt, "total": linear + fft + filt}


def nt_flops_per_token(c: NTv2Config, tokens: int) -> dict[str, float]:
    h, i = c.hidden_size, c.intermediate_size
    linear = 2 * (4 * h * h + h * 2 * i + i * h) * c.num_hidden_layers
    attention = 2 * 2 * tokens * h * c.num_hidden_layers  # QK^T and PV
    return {"linear": linear, "attention": attention, "total": linear + attention}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__().replace("'", "")


def time_forward(model: torch.nn.Module, ids: torch.Tensor, repeats: int) -> tuple[float, float, list[float]]:
    """(best wall seconds, CPU seconds of all timed passes, wall of each pass)."""
    walls = []
    with torch.inference_mode():
        model(ids)  # warm-up
        cpu0 = time.process_time()
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(ids)
            walls.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
    return min(walls), cpu, walls


def rss_child(which: str, threads: int) -> None:
    torch.set_num_threads(threads)
    if which == "hyena":
        model, ids = build_hyenadna(hyena_config(), seed=0), torch.randint(7, 11, (1, HYENA_PAPER_TOKENS))
    else:
        model, ids = build_ntv2(NTv2Config(), seed=0, lm_head=False), torch.randint(6, 4102, (1, NT_PAPER_TOKENS))
    before = vm_hwm_kib()
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(ids)
    wall = time.perf_counter() - t0
    print(f"{before / 2**20:.2f} {vm_hwm_kib() / 2**20:.2f} {wall:.1f}")


def vm_hwm_kib() -> int:
    """Peak RSS of this process image (VmHWM). Not ``ru_maxrss``: on Linux that keeps the parent's
    peak across fork + exec, so a child started by a 2 GiB parent would report 2 GiB at once."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hyena-l", type=int, default=4_096, help="HyenaDNA tokens per sequence (1 per bp)")
    parser.add_argument("--nt-tokens", type=int, default=256, help="NT-v2 tokens per sequence (6 bp each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rss", action="store_true", help="peak RSS of one pass at each paper context (child processes)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument("--rss-child", choices=["hyena", "nt"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.threads)
        return
    torch.set_num_threads(args.threads)
    lines: list[str] = []
    out = lines.append
    t_start, cpu_start = time.perf_counter(), time.process_time()
    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor())
    out("# Baselines (HyenaDNA, NT-v2): CPU speed and projected paper-run cost")
    out("")
    out(f"- date: {datetime.date.today().isoformat()}; torch {torch.__version__}; {args.threads} threads; best of {args.repeats}")
    out(f"- machine: {os.cpu_count()} CPUs ({cpu_name}); /proc/loadavg at start {loadavg()}")
    out(f"- command: `{' '.join(['.venv/bin/python', 'benchmarks/baselines_speed.py', *sys.argv[1:]])}`")
    out("- random weights in the real-size configurations (speed does not depend on the weights), batch 1, fp32, inference mode")
    out("")
    rows = []

    hc = hyena_config()
    t0 = time.perf_counter()
    hyena = build_hyenadna(hc, seed=0, lm_head=False)
    build_h = time.perf_counter() - t0
    ids = torch.randint(7, 11, (1, args.hyena_l))
    wall, cpu, walls = time_forward(hyena, ids, args.repeats)
    hf_short, hf_paper = hyena_flops_per_token(hc, args.hyena_l), hyena_flops_per_token(hc, HYENA_PAPER_TOKENS)
    n_params_h = sum(p.numel() for p in hyena.parameters())
    rows.append(("HyenaDNA medium-160k", n_params_h, args.hyena_l, wall, cpu, walls, hf_short, hf_paper, HYENA_PAPER_TOKENS))
    del hyena
    out(f"HyenaDNA built in {build_h:.1f} s; /proc/loadavg after its runs {loadavg()}")

    nc = NTv2Config()
    t0 = time.perf_counter()
    nt = build_ntv2(nc, seed=0, lm_head=False)
    build_n = time.perf_counter() - t0
    ids = torch.randint(6, 4102, (1, args.nt_tokens))
    wall, cpu, walls = time_forward(nt, ids, args.repeats)
    nf_short, nf_paper = nt_flops_per_token(nc, args.nt_tokens), nt_flops_per_token(nc, NT_PAPER_TOKENS)
    n_params_n = sum(p.numel() for p in nt.parameters())
    rows.append(("NT-v2 500M (encoder)", n_params_n, args.nt_tokens, wall, cpu, walls, nf_short, nf_paper, NT_PAPER_TOKENS))
    del nt
    out(f"NT-v2 built in {build_n:.1f} s; /proc/loadavg after its runs {loadavg()}")
    out("")
    out("| model | parameters | tokens/seq | best wall (s) | all passes wall (s) | CPU s (timed passes) | tokens/s (best wall) "
        "| tokens per CPU s | GFLOP/token (this L) | GFLOP per CPU s |")
    out("|---|---|---|---|---|---|---|---|---|---|")
    for name, n_params, length, wall, cpu, walls, f_short, _, _ in rows:
        per_cpu = len(walls) * length / cpu
        out(f"| {name} | {n_params / 1e6:.2f}M | {length:,} | {wall:.3f} | {', '.join(f'{w:.2f}' for w in walls)} | {cpu:.1f} | "
            f"{length / wall:,.0f} | {per_cpu:,.0f} | {f_short['total'] / 1e9:.4f} | {f_short['total'] * per_cpu / 1e9:.1f} |")
    out("")
    out(f"## Projection for the paper run (~{UNIQUE_VARIANTS:,} unique variants x ref/alt, forward strand only)")
    out("")
    out("FLOPs from the configurations (2 per multiply-add); HyenaDNA: projections + FFT long convolution "
        "(~2.5 n log2 n per real FFT) + implicit-filter MLP; NT-v2: projections + attention (QK^T, PV).")
    out("")
    out("| model | paper tokens/seq | GFLOP/token at paper L | TFLOP/sequence | PFLOP for the run | CPU-core days at the measured GFLOP per CPU s |")
    out("|---|---|---|---|---|---|")
    for name, _, length, _, cpu, walls, f_short, f_paper, paper_tokens in rows:
        per_seq = f_paper["total"] * paper_tokens
        run = per_seq * 2 * UNIQUE_VARIANTS
        # CPU time scaled by FLOPs (the measured FLOP per CPU second held constant), not just by
        # tokens; CPU seconds rather than wall, because the shared machine's wall time includes waiting.
        rate = f_short["total"] * length * len(walls) / cpu
        days = run / rate / 86_400
        out(f"| {name} | {paper_tokens:,} | {f_paper['total'] / 1e9:.4f} | {per_seq / 1e12:.2f} | {run / 1e15:.0f} | {days:,.0f} |")
    out("")
    out("HyenaDNA FLOP breakdown per token at 131,072: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in hf_paper.items()) + ".")
    out("NT-v2 FLOP breakdown per token at 2,048: " + ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in nf_paper.items()) + ".")
    out("On a GPU both are far from compute-bound at batch 1 (HyenaDNA is memory-bound: the FFTs and "
        "elementwise gates dominate its time, not its 12.6 MFLOP/token); the FLOPs are a lower bound on cost, "
        "not a wall-time prediction. No GPU was measured here.")
    if args.rss:
        out("")
        out("## Peak RSS of one pass at the paper context (fresh child process)")
        out("")
        out("| model | tokens | RSS after build (GiB) | peak RSS (GiB) | wall of the pass (s) |")
        out("|---|---|---|---|---|")
        for which, name, tokens in (("hyena", "HyenaDNA", HYENA_PAPER_TOKENS), ("nt", "NT-v2 500M", NT_PAPER_TOKENS)):
            res = subprocess.run([sys.executable, __file__, "--rss-child", which, "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            before, peak, wall = res.stdout.split()
            out(f"| {name} | {tokens:,} | {before} | {peak} | {wall} |")
    out("")
    out(f"Whole script: {time.perf_counter() - t_start:.0f} s wall, {time.process_time() - cpu_start:.0f} CPU s in this process; "
        f"/proc/loadavg at the end {loadavg()}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
