"""The demo's embed stage with 1 and 2 threads beside a competing CPU load (issue: no collapse under load).

    .venv/bin/python benchmarks/threads_under_load.py [--variants 96] [--repeats 3] [--out benchmarks/results/threads.md]

Builds the demo's eqtl windows once (the library's variants and windows stages on the bundled demo
data), then runs ``caduceus_vep.stages.embed_stage`` -- what an embed job runs -- in a fresh
subprocess per measurement, started the way a workflow job starts (``workflow_scripts/_adapter.py``
is imported first, so its thread-waiting policy applies), on the first ``--variants`` windows with
the demo's Caduceus-PS checkpoint and no feature cache. The competing load is one process spinning
on one core for the whole measurement (a busy neighbour on a shared node). Each configuration runs
``--repeats`` times, interleaved; medians of wall and CPU seconds are reported, and the goal
(2 threads under load no slower than 1.2x 1 thread under load) as a ratio from the same run.
``OMP_WAIT_POLICY=ACTIVE`` (spinning OpenMP workers, the policy before the fix) is measured beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {scripts!r})
import _adapter  # noqa: F401  (sets the thread-waiting policy before torch loads, as in a job)
from caduceus_vep import stages
t0 = time.perf_counter()
stages.embed_stage(windows={windows!r}, fasta={fasta!r}, model={model!r}, settings={settings!r},
                   out_embeddings={out!r}, threads={threads})
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}}))
"""


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def demo_windows(folder: Path, n: int) -> Path:
    """The demo eqtl windows (first ``n`` rows), through the library's own stages."""
    import pandas as pd
    import pyarrow.parquet as pq
    import yaml

    from caduceus_vep import stages
    from caduceus_vep.settings import dataset_defaults, with_defaults

    config = with_defaults(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    options = {**dataset_defaults(), **config["datasets"]["eqtl"]}
    stages.variants_stage(source=str(REPO / options["path"]), options=options, out_variants=folder / "variants.parquet",
                          out_skipped=folder / "variants.skipped.tsv", tss=str(REPO / config["tss"]["gtf"]), dataset="eqtl")
    stages.windows_stage(variants=folder / "variants.parquet", fasta=str(REPO / config["genome"]["fasta"]),
                         spec=config["windows"], out_windows=folder / "all.parquet", out_skipped=folder / "windows.skipped.tsv")
    table = pq.read_table(folder / "all.parquet")
    pq.write_table(table.slice(0, n).replace_schema_metadata(table.schema.metadata), folder / "windows.parquet")
    assert len(pd.read_parquet(folder / "windows.parquet")) == n
    return folder / "windows.parquet"


def measure(windows: Path, model: dict, settings: dict, threads: int, policy: str | None, out: Path) -> dict:
    code = CHILD.format(scripts=str(REPO / "workflow_scripts"), windows=str(windows), fasta=str(REPO / "resources/demo/genome.fa"),
                        model=model, settings=settings, out=str(out), threads=threads)
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    out.unlink(missing_ok=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import yaml

    from caduceus_vep.settings import with_defaults

    config = with_defaults(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    model = {**next(m for m in config["models"] if m["name"] == "caduceus_ps")}
    model["path"] = str(REPO / model["path"])
    settings = {**config["embed"], "cache_dir": None, "checkpoint_every": 10_000}
    cases = [("1 thread", 1, None), ("2 threads (passive waiting, as jobs run)", 2, None), ("2 threads, OMP_WAIT_POLICY=ACTIVE", 2, "ACTIVE")]
    with tempfile.TemporaryDirectory() as tmp:
        windows = demo_windows(Path(tmp), args.variants)
        results: dict[tuple[str, bool], list[dict]] = {}
        for loaded in (False, True):
            stop = multiprocessing.Event()
            spinner = multiprocessing.Process(target=spin, args=(stop,), daemon=True)
            if loaded:
                spinner.start()
                time.sleep(1)
            try:
                for _ in range(args.repeats):
                    for name, threads, policy in cases:
                        results.setdefault((name, loaded), []).append(
                            measure(windows, model, settings, threads, policy, Path(tmp) / "out.parquet"))
            finally:
                stop.set()
                if loaded:
                    spinner.join()
    med = {k: {m: statistics.median(r[m] for r in runs) for m in ("wall_s", "cpu_s")} for k, runs in results.items()}
    lines = [
        f"`.venv/bin/python benchmarks/threads_under_load.py --variants {args.variants} --repeats {args.repeats}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"load average at the end {os.getloadavg()[0]:.1f} (other engineers' jobs included).",
        "",
        f"Demo embed stage (Caduceus-PS tiny, {args.variants} variants, ref+alt, no cache), medians of {args.repeats}:",
        "",
        "| configuration | no added load: wall s | CPU s | beside 1 spinning core: wall s | CPU s | beside the load, vs 1 thread (wall) |",
        "|---|---|---|---|---|---|",
    ]
    base = med[("1 thread", True)]["wall_s"]
    for name, _, _ in cases:
        idle, busy = med[(name, False)], med[(name, True)]
        lines.append(f"| {name} | {idle['wall_s']:.2f} | {idle['cpu_s']:.2f} | {busy['wall_s']:.2f} | {busy['cpu_s']:.2f} | "
                     f"{busy['wall_s'] / base:.2f}x |")
    ratio = med[("2 threads (passive waiting, as jobs run)", True)]["wall_s"] / base
    lines += ["", f"Goal: 2 threads beside the load <= 1.2x the 1-thread time beside it: **{ratio:.2f}x, "
              f"{'met' if ratio <= 1.2 else 'missed'}**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
