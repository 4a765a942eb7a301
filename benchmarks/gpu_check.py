"""One-command GPU check: the GPU path against the CPU path, speed, memory and the largest batch.

    .venv/bin/python benchmarks/gpu_check.py              # a machine with a CUDA GPU; under 5 minutes
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke  # tiny sizes on CPU: keeps this script working (tests)

On random weights of the released 131k shape (d_model 256, 16 layers, d_state 16, the layout of
``resources/demo/checkpoints/*/config.json``), saved as checkpoints and loaded twice (CPU, GPU):

1. **accuracy** at 1,536, 16,384 and 131,072 bp, for PS and Ph: the GPU's last hidden state under
   fp32, bf16 and fp16 autocast (as the embed stage runs it) against the CPU path in fp32: max
   absolute difference, the same relative to max |h|, and the difference of the pooled features
   the classifiers see (mean over the 1,536-token window around the centre, forward and RC view);
2. **speed**: the embed stage's work (``embed.pooled_features``: PS one pass, Ph forward + RC pass)
   in sequences/s per batch size, doubling the batch, with peak GPU memory;
3. **the largest batch that fits**: the doubling stops at the first out-of-memory (then one
   bisection step) or when a step would exceed ``--step-seconds``; the result says which.

Writes ``benchmarks/results/gpu_check.json`` and ``.md`` (``--out-dir``) and prints the Markdown.
It also records which kernels ran: mamba-ssm's CUDA scan and fused norm and causal-conv1d when
installed (``pip install -e '.[gpu]'``), otherwise the model's PyTorch code on the GPU.
Exits with status 2 and a message when no CUDA GPU is visible (except with ``--cpu-smoke``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from caduceus_vep.embed import pooled_features
from caduceus_vep.model import (
    CaduceusConfig,
    build_caduceus,
    load_caduceus,
    ps_forward_hidden,
    ps_rc_hidden,
    reverse_complement_ids,
    save_caduceus,
)
from caduceus_vep.model.kernels import installed_kernels, kernels_for

REPO = Path(__file__).resolve().parents[1]
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
FULL = {"d_model": 256, "n_layer": 16, "lengths": (1536, 16384, 131072), "pool": 1536, "speed_dtypes": ("bfloat16",),
        "repeats": 2, "step_seconds": 15.0, "threads": os.cpu_count() or 1}
SMOKE = {"d_model": 32, "n_layer": 2, "lengths": (64, 256), "pool": 32, "speed_dtypes": ("bfloat16",),
         "repeats": 1, "step_seconds": 3.0, "threads": 1}


class OutOfMemory(Exception):
    """A batch that does not fit (CUDA OOM, or the simulated limit of --cpu-smoke)."""


def make_checkpoints(folder: Path, d_model: int, n_layer: int, seed: int) -> dict[str, Path]:
    """Random PS and Ph checkpoints in the released layout; norm weights and D jittered so that every parameter matters."""
    base = json.loads((REPO / "resources" / "demo" / "checkpoints" / "caduceus-ps-tiny" / "config.json").read_text())
    paths = {}
    for name, rcps in (("PS", True), ("Ph", False)):
        config = CaduceusConfig.from_dict({**base, "d_model": d_model, "n_layer": n_layer, "rcps": rcps})
        model = build_caduceus(config, seed)
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for key, p in model.named_parameters():
                if key.endswith(("norm.weight", "norm_f.weight")):
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
                elif key.endswith(".D"):
                    p.add_(0.5 * torch.randn(p.shape, generator=g))
        save_caduceus(model, folder / name)
        paths[name] = folder / name
    return paths


def random_ids(batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, 11, (batch, length), generator=g)  # A, C, G, T
    ids[:, ::97] = 11  # a few N
    return ids


def pool_window(length: int, pool: int) -> tuple[int, int]:
    """The embed stage's pooling window: ``pool`` tokens around L/2, clamped."""
    return max(0, length // 2 - pool // 2), min(length, length // 2 + pool // 2)


def autocast(device: torch.device, dtype_name: str) -> contextlib.AbstractContextManager:
    dtype = DTYPES[dtype_name]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def hidden_and_features(model, ids: torch.Tensor, pool: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward hidden state of ``ids`` and the pooled (forward, RC) features, as ``embed.pooled_features``
    computes them, with one model call (the Ph RC pass joins the batch, as there)."""
    lo, hi = pool
    if model.is_rcps:
        hidden = model(ids)
        fwd, rc = ps_forward_hidden(hidden), ps_rc_hidden(hidden, upstream_length_flip=True)
    else:
        both = model(torch.cat([ids, reverse_complement_ids(ids, model.config.complement_list)]))
        hidden, rc = both.chunk(2, dim=0)
        fwd, rc = hidden, rc.flip(-2)
    return hidden, fwd[:, lo:hi].float().mean(dim=1), rc[:, lo:hi].float().mean(dim=1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def accuracy(models_cpu: dict, models_dev: dict, device: torch.device, lengths, pool: int, dtypes, seed: int,
             log) -> list[dict]:
    rows = []
    for name, model_cpu in models_cpu.items():
        for length in lengths:
            n = 1 if length > 16384 else 2
            ids = random_ids(n, length, seed + length)
            window = pool_window(length, pool)
            t0 = time.perf_counter()
            with torch.inference_mode():
                ref_hidden, ref_fwd, ref_rc = hidden_and_features(model_cpu, ids, window)
            cpu_s = time.perf_counter() - t0
            ref_feat = torch.cat([ref_fwd, ref_rc], dim=-1)
            scale = ref_hidden.abs().max().item()
            for dtype_name in dtypes:
                with torch.inference_mode(), autocast(device, dtype_name):
                    hidden, fwd, rc = hidden_and_features(models_dev[name], ids.to(device), window)
                hidden_dtype = str(hidden.dtype).replace("torch.", "")
                hidden = hidden.float().cpu()
                feat = torch.cat([fwd, rc], dim=-1).float().cpu()
                diff = (hidden - ref_hidden).abs().max().item()
                feat_diff = (feat - ref_feat).abs().max().item()
                cosine = torch.nn.functional.cosine_similarity(feat, ref_feat, dim=-1).min().item()
                rows.append({"model": name, "length": length, "sequences": n, "dtype": dtype_name,
                             "hidden_dtype": hidden_dtype,
                             "max_abs_diff": diff, "max_abs_ref": scale, "rel_diff": diff / scale,
                             "pooled_max_abs_diff": feat_diff, "pooled_max_abs_ref": ref_feat.abs().max().item(),
                             "pooled_rel_diff": feat_diff / ref_feat.abs().max().item(), "pooled_min_cosine": cosine,
                             "cpu_seconds": round(cpu_s, 2), "finite": bool(torch.isfinite(hidden).all())})
                log(f"accuracy {name} L={length} {dtype_name}: max|dh| {diff:.3g} ({diff / scale:.2e} of max|h|), "
                    f"pooled {feat_diff:.3g}, min cosine {cosine:.6f}")
    return rows


def measure(model, device: torch.device, length: int, pool: tuple[int, int], dtype_name: str, batch: int, args) -> dict:
    """One batch size: best of ``args.repeats`` timed calls after a warm-up call; raises OutOfMemory."""
    ids = random_ids(batch, length, batch).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    elif args.smoke_oom_batch and batch > args.smoke_oom_batch:
        raise OutOfMemory(f"simulated: batch {batch} > {args.smoke_oom_batch}")
    times = []
    try:
        for _ in range(1 + args.repeats):  # the first call warms up (allocations, Triton autotuning)
            synchronize(device)
            t0 = time.perf_counter()
            with torch.inference_mode(), autocast(device, dtype_name):
                pooled_features(model, ids, pool)
            synchronize(device)
            times.append(time.perf_counter() - t0)
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(str(exc).splitlines()[0]) from None
    best = min(times[1:]) if len(times) > 1 else times[0]
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"batch": batch, "seconds": best, "sequences_per_s": batch / best, "variants_per_s": batch / best / 2,
            "peak_gpu_memory_gib": None if peak is None else peak / 2**30}


def batch_sweep(model, device: torch.device, length: int, pool: int, dtype_name: str, args, deadline: float, log) -> dict:
    """Doubling batch sizes until out of memory (then one bisection step), the step time limit or the budget."""
    window = pool_window(length, pool)
    batch, ok, failed, stop, points = 1, None, None, "--max-batch reached", []
    while True:
        if time.perf_counter() > deadline:
            stop = "time budget used up"
            break
        if points and points[-1]["seconds"] * 2 * (1 + args.repeats) > args.step_seconds:
            stop = f"the next step would take over --step-seconds {args.step_seconds:g} s"
            break
        if batch > args.max_batch:
            break
        try:
            point = measure(model, device, length, window, dtype_name, batch, args)
        except OutOfMemory as exc:
            failed, stop = batch, f"out of memory at batch {batch} ({exc})"
            break
        points.append(point)
        ok = batch
        memory = f", peak {point['peak_gpu_memory_gib']:.2f} GiB" if point["peak_gpu_memory_gib"] is not None else ""
        log(f"speed L={length} {dtype_name} batch {batch}: {point['sequences_per_s']:.2f} sequences/s{memory}")
        batch *= 2
    if failed is not None and ok is not None and failed - ok > 1 and time.perf_counter() < deadline:
        middle = (ok + failed) // 2
        try:
            points.append(measure(model, device, length, window, dtype_name, middle, args))
            ok = middle
        except OutOfMemory:
            failed = middle
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"length": length, "dtype": dtype_name, "points": points, "largest_batch_fitted": ok,
            "first_batch_out_of_memory": failed, "stopped": stop}


def speed(models_dev: dict, device: torch.device, lengths, pool: int, dtypes, args, deadline: float, log) -> list[dict]:
    """Sequences/s per batch size, peak memory, and where the doubling stopped, per model, length and dtype."""
    rows = []
    for name, model in models_dev.items():
        for length in lengths:
            for dtype_name in dtypes:
                row = batch_sweep(model, device, length, pool, dtype_name, args, deadline, lambda m, n=name: log(f"{n} {m}"))
                rows.append({"model": name, **row})
    return rows


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(), "cpu_threads": torch.get_num_threads(), "platform": platform.platform()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    return info


def kernel_report(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"path": "CPU (smoke run: no GPU kernels)"}
    kernels = installed_kernels()
    described = kernels.describe()
    all_there = all(v == "available" for v in described.values())
    probe = kernels_for(torch.empty(0, device=device))
    return {"path": "mamba-ssm kernels" if all_there else "partly or wholly the model's PyTorch code on the GPU",
            "source": kernels.source, "functions": described, "used": probe is not None}


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if (x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4)) else f"{x:.{digits}f}"
    return str(x)


def markdown(result: dict) -> str:
    m, k = result["machine"], result["kernels"]
    lines = [
        "# GPU check: GPU path vs CPU path, speed, memory" + (" (CPU SMOKE RUN: no GPU figures)" if result["smoke"] else ""),
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}; total {result['seconds']:.0f} s",
        (f"- machine: {m.get('gpu', 'no GPU')}"
         + (f" ({m['gpu_memory_gib']} GiB, compute capability {m['compute_capability']}, {m['gpu_count']} visible)" if "gpu" in m else "")
         + f"; {m['cpu_count']} CPUs ({m['cpu_threads']} torch threads for the CPU reference); torch {m['torch']} (CUDA {m['torch_cuda']})"),
        (f"- kernels: {k['path']}"
         + (f" — {k['source']}; " + ", ".join(f"`{n}` {v}" for n, v in k["functions"].items()) if "functions" in k else "")),
        (f"- model: random weights, d_model {result['config']['d_model']}, {result['config']['n_layer']} layers, d_state 16, "
         f"released config layout; pooling window {result['config']['pool']} tokens around the centre"),
        "",
        "## Accuracy: GPU (autocast as the embed stage) vs CPU fp32",
        "",
        "| model | length | dtype | max abs diff h | max abs h | relative | pooled max abs diff | pooled relative | pooled min cosine | CPU s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["accuracy"]:
        lines.append(f"| {r['model']} | {r['length']:,} | {r['dtype']} | {_fmt(r['max_abs_diff'])} | {_fmt(r['max_abs_ref'])} | "
                     f"{_fmt(r['rel_diff'])} | {_fmt(r['pooled_max_abs_diff'])} | {_fmt(r['pooled_rel_diff'])} | "
                     f"{r['pooled_min_cosine']:.6f} | {r['cpu_seconds']} |")
    lines += ["", "## Speed (embed work: PS one pass, Ph forward + RC pass; a variant is 2 sequences)", "",
              "| model | length | dtype | batch | sequences/s | variants/s | peak GPU memory GiB |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in result["speed"]:
        for p in r["points"]:
            lines.append(f"| {r['model']} | {r['length']:,} | {r['dtype']} | {p['batch']} | {p['sequences_per_s']:.2f} | "
                         f"{p['variants_per_s']:.2f} | {_fmt(p['peak_gpu_memory_gib'])} |")
    lines += ["", "## Largest batch", "", "| model | length | dtype | largest batch that ran | first out of memory | stopped because |",
              "|---|---:|---|---:|---:|---|"]
    for r in result["speed"]:
        lines.append(f"| {r['model']} | {r['length']:,} | {r['dtype']} | {_fmt(r['largest_batch_fitted'])} | "
                     f"{_fmt(r['first_batch_out_of_memory'])} | {r['stopped']} |")
    lines.append("")
    lines.append("A largest batch without an out-of-memory next to it is a lower bound (the doubling stopped for time).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model and lengths on CPU (no GPU figures)")
    parser.add_argument("--out-dir", type=Path, help="where gpu_check.json/.md go (default benchmarks/results; a temp dir for --cpu-smoke)")
    parser.add_argument("--lengths", type=lambda s: tuple(int(x) for x in s.split(",")), help="comma-separated lengths in bp")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16", help="autocast dtypes for the accuracy check")
    parser.add_argument("--speed-dtypes", help="autocast dtypes for the speed runs (default bfloat16, the embed default)")
    parser.add_argument("--repeats", type=int, help="timed calls per batch size after one warm-up call, best kept (default 2; smoke 1)")
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--step-seconds", type=float, help="stop doubling the batch once a step would take longer (default 15; smoke 3)")
    parser.add_argument("--budget-seconds", type=float, default=240.0, help="stop the speed runs after this much time in total")
    parser.add_argument("--threads", type=int, help="CPU threads for the CPU reference (default: all CPUs; smoke 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-oom-batch", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.cpu_smoke:
        device, preset = torch.device("cpu"), SMOKE
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False; "
                  f"torch {torch.__version__}, built with CUDA {torch.version.cuda}). This check compares a GPU with "
                  "the CPU; run it on a machine with an NVIDIA GPU and a CUDA build of torch (plus pip install -e '.[gpu]' "
                  "for the mamba-ssm kernels), or use --cpu-smoke for a quick CPU-only run of the script itself.",
                  file=sys.stderr)
            return 2
        device, preset = torch.device("cuda", torch.cuda.current_device()), FULL
        args.smoke_oom_batch = 0
    for key in ("repeats", "step_seconds", "threads"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    lengths = args.lengths or preset["lengths"]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    speed_dtypes = [d.strip() for d in args.speed_dtypes.split(",")] if args.speed_dtypes else list(preset["speed_dtypes"])
    unknown = sorted(set(dtypes + speed_dtypes) - set(DTYPES))
    if unknown:
        parser.error(f"unknown dtypes {unknown}; choose from {sorted(DTYPES)}")
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="gpu_check_smoke_")) if args.cpu_smoke else REPO / "benchmarks" / "results")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    kernels = kernel_report(device)
    if device.type == "cuda" and kernels["path"] != "mamba-ssm kernels":
        log(f"WARNING: not every mamba-ssm kernel is installed ({kernels['functions']}); the GPU runs the model's "
            "PyTorch code for those steps. pip install -e '.[gpu]' to check the kernel path.")
    with tempfile.TemporaryDirectory(prefix="gpu_check_ckpt_") as tmp:
        paths = make_checkpoints(Path(tmp), preset["d_model"], preset["n_layer"], args.seed)
        models_cpu = {n: load_caduceus(p, device="cpu") for n, p in paths.items()}
        models_dev = {n: load_caduceus(p, device=str(device)) for n, p in paths.items()}
    log(f"models built (d_model {preset['d_model']}, {preset['n_layer']} layers); device {device}; kernels: {kernels['path']}")
    acc = accuracy(models_cpu, models_dev, device, lengths, preset["pool"], dtypes, args.seed, log)
    del models_cpu
    deadline = started + args.budget_seconds
    spd = speed(models_dev, device, lengths, preset["pool"], speed_dtypes, args, deadline, log)
    result = {
        "smoke": args.cpu_smoke,
        "command": "python benchmarks/gpu_check.py" + ("" if argv is None and len(sys.argv) < 2 else " " + shlex.join(sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(device), "kernels": kernels,
        "config": {"d_model": preset["d_model"], "n_layer": preset["n_layer"], "lengths": list(lengths), "pool": preset["pool"],
                   "dtypes": dtypes, "speed_dtypes": speed_dtypes},
        "accuracy": acc, "speed": spd,
        "seconds": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    text = markdown(result)
    (out_dir / "gpu_check.md").write_text(text)
    print(text)
    log(f"wrote {out_dir / 'gpu_check.json'} and {out_dir / 'gpu_check.md'}")
    bad = [r for r in acc if not r["finite"] or not math.isfinite(r["max_abs_diff"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
