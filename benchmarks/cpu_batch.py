"""Variants per model call on the CPU: which batch is fastest per variant (the embed stage's own code path).

    .venv/bin/python benchmarks/cpu_batch.py [--length 1536] [--variants 8] [--batches 1 2 4 8] [--threads 1] [--out FILE]

Random weights in the released 131k checkpoints' shape (d_model 256, 16 layers; speed does not
depend on the weights), PS and Ph, through ``caduceus_vep.embed.embed_sequences`` with
``EmbedSettings(cpu_batch_size=k)`` -- what an embed job runs. Every setting embeds the same
``--variants`` random ref/alt pairs; CPU-seconds (``time.process_time``) and wall seconds per variant,
the best of ``--repeats`` runs (the machine is shared: the least-disturbed run is the cost), and
the ratio to the previous default (8 variants per call on every device). Settings are interleaved so a
burst of load hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=1536)
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from caduceus_vep.demo import tiny_config
    from caduceus_vep.embed import EmbedSettings, embed_sequences
    from caduceus_vep.model import CaduceusConfig, build_caduceus

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(0)
    refs = ["".join(rng.choice(list("ACGT"), args.length)) for _ in range(args.variants)]
    alts = [r[: args.length // 2] + ("A" if r[args.length // 2] != "A" else "C") + r[args.length // 2 + 1:] for r in refs]
    models = {name: build_caduceus(CaduceusConfig.from_dict({**tiny_config(rcps=name == "PS"), "d_model": 256, "n_layer": 16}),
                                   seed=0).eval() for name in ("PS", "Ph")}
    best: dict[tuple[str, int], tuple[float, float]] = {}
    reference: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            for k in args.batches:
                settings = EmbedSettings(cpu_batch_size=k, threads=args.threads)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                out = embed_sequences(refs, alts, model, settings, 1536)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                # Same features whatever the batch (the cache relies on it).
                ref = reference.setdefault(name, out)
                diff = max(float(np.abs(out[c] - ref[c]).max()) for c in out)
                assert diff < 1e-4, (name, k, diff)
                key = (name, k)
                best[key] = min(best.get(key, (np.inf, np.inf)), (cpu / args.variants, wall / args.variants))
    old = max(args.batches)
    lines = [
        f"`.venv/bin/python benchmarks/cpu_batch.py --length {args.length} --variants {args.variants} --batches "
        f"{' '.join(map(str, args.batches))} --threads {args.threads} --repeats {args.repeats}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average at the end "
        f"{os.getloadavg()[0]:.1f} (shared machine: read the CPU-seconds).",
        "",
        f"Released-size Caduceus (d_model 256, 16 layers, random weights), {args.length:,} bp, ref + alt "
        f"(+ both reverse complements for Ph) per variant; best of {args.repeats}:",
        "",
        "| model | variants per call | sequences per call | CPU s per variant | wall s per variant | CPU vs "
        f"{old} per call |",
        "|---|---|---|---|---|---|",
    ]
    for name in models:
        for k in args.batches:
            cpu, wall = best[(name, k)]
            rows = k * (2 if name == "PS" else 4)
            lines.append(f"| {name} | {k} | {rows} | {cpu:.3f} | {wall:.3f} | {cpu / best[(name, old)][0]:.2f}x |")
    fastest = {name: min(args.batches, key=lambda k, n=name: best[(n, k)][0]) for name in models}
    lines += ["", "Fastest per variant (CPU-seconds): " + ", ".join(f"{n} at {k} per call" for n, k in fastest.items()) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
