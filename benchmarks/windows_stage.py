"""Time and peak memory of the variants and windows stages on synthetic data.

    .venv/bin/python benchmarks/windows_stage.py --variants 100000 --context 1536

Writes a synthetic genome (4 contigs x 5 Mb, random bases, a few N runs) and a VCF of N variants
(uniform positions; 1 % indels, 1 % REF mismatches, 0.5 % unknown contig) into a temporary folder,
then runs ``stages.variants_stage`` and ``stages.windows_stage`` each in a fresh Python process
and reports wall time and that process's peak RSS (``ru_maxrss``), next to the RSS of a process
that only imports the library (the fixed cost). Results go to benchmarks/results/windows.md by hand.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONTIGS = {f"chr{i}": 5_000_000 for i in (1, 2, 3, 4)}


def make_inputs(folder: Path, n_variants: int, seed: int = 1) -> tuple[Path, Path]:
    """A FASTA (+ .fai) and a VCF with ``n_variants`` records."""
    import pysam

    rng = np.random.default_rng(seed)
    seqs = {}
    for name, length in CONTIGS.items():
        seq = rng.choice(np.frombuffer(b"ACGT", dtype=np.uint8), size=length)
        for start in rng.integers(0, length - 2_000, size=5):
            seq[start:start + 1_000] = ord("N")
        seqs[name] = seq
    fasta = folder / "genome.fa"
    with open(fasta, "wb") as handle:
        for name, seq in seqs.items():
            handle.write(f">{name}\n".encode())
            handle.write(b"\n".join(seq[i:i + 60].tobytes() for i in range(0, len(seq), 60)) + b"\n")
    pysam.faidx(str(fasta))
    names = np.array(list(CONTIGS))
    chroms = names[rng.integers(0, len(names), size=n_variants)]
    positions = rng.integers(70_000, 4_930_000, size=n_variants)
    order = np.lexsort((positions, chroms))
    chroms, positions = chroms[order], positions[order]
    kind = rng.random(n_variants)
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={n},length={n_}>" for n, n_ in CONTIGS.items()),
             '##INFO=<ID=Y,Number=1,Type=Integer,Description="label">', "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for k, (chrom, pos) in enumerate(zip(chroms, positions)):
        ref = chr(seqs[chrom][pos - 1])
        ref = "A" if ref == "N" else ref
        alt = "C" if ref != "C" else "G"
        if kind[k] < 0.01:
            alt = ref + "T"                               # indel
        elif kind[k] < 0.02:
            ref, alt = ("G", "T") if ref != "G" else ("C", "T")  # REF mismatch (1 %: under the 5 % stop)
        elif kind[k] < 0.025:
            chrom = "chrUn"                                # unknown contig
        lines.append(f"{chrom}\t{pos}\trs{k}\t{ref}\t{alt}\t.\tPASS\tY={k % 2}")
    vcf = folder / "variants.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    return fasta, vcf


def child(stage: str, args: list[str]) -> None:
    """Run one stage in this process and print its time and this process's peak RSS as JSON."""
    from caduceus_vep import stages

    started = time.perf_counter()
    if stage == "imports":
        summary = {}
    elif stage == "variants":
        vcf, out = Path(args[0]), Path(args[1])
        summary = stages.variants_stage(vcf, {"format": "vcf", "label_info": "Y"}, out / "variants.parquet",
                                        out / "variants_skipped.tsv")
    else:
        fasta, out, context = Path(args[0]), Path(args[1]), int(args[2])
        summary = stages.windows_stage(out / "variants.parquet", fasta, {"context_length": context, "pooling_window": 1536},
                                       out / "windows.parquet", out / "windows_skipped.tsv", out_flags=out / "flags.tsv")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    print(json.dumps({"stage": stage, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb), "summary": summary},
                     default=str))


def run_child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=100_000)
    parser.add_argument("--context", type=int, default=1536)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        fasta, vcf = make_inputs(folder, args.variants)
        print(f"inputs: {args.variants} variants, {sum(CONTIGS.values()) / 1e6:.0f} Mb genome, "
              f"VCF {vcf.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - started:.1f} s")
        for result in (run_child("imports"), run_child("variants", str(vcf), tmp),
                       run_child("windows", str(fasta), tmp, str(args.context))):
            print(f"{result['stage']:9s} {result['seconds']:8.2f} s  peak RSS {result['peak_rss_mb']:6d} MB  {result['summary']}")
        print(f"windows.parquet {(folder / 'windows.parquet').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
