"""Time the demo workflow end to end and per rule, in a fresh copy of the repository.

    .venv/bin/python benchmarks/time_demo.py [--cores 2]

Prints a Markdown table (wall seconds and peak RSS per job, from Snakemake's benchmark files) for
benchmarks/RESULTS.md. Measures this machine as it is: run it twice if the machine is busy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_workflow import copy_workflow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", default="2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_workflow(Path(tmp) / "wf")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", args.cores, "--quiet"], cwd=workdir, check=True)
        wall = time.perf_counter() - started
        rows = []
        for path in sorted((workdir / "results/demo/benchmarks").rglob("*.tsv")):
            bench = pd.read_csv(path, sep="\t")
            rows.append((str(path.relative_to(workdir / "results/demo/benchmarks")).removesuffix(".tsv"), bench["s"].iloc[0], bench["max_rss"].iloc[0]))
    print(f"snakemake --cores {args.cores} on the demo: {wall:.1f} s wall\n")
    print("| job | wall s | peak RSS MB |\n|---|---|---|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
