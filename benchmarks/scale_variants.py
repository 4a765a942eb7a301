"""Time, CPU and peak memory of the variants -> windows -> score path at 100k, 300k and 1M SNVs.

    .venv/bin/python benchmarks/scale_variants.py --sizes 100000 300000 1000000 --out benchmarks/results/scale.md

Issue 9, item 9 ("Memory and speed"): peak RSS under 2 GB at 1,000,000 SNVs and time linear in the
number of variants. The embedding is *not* measured: after the windows stage the script writes the
embeddings parquet itself (``feature_file.write_block``, width 8, seeded random float32, ids and
order exactly as ``windows.parquet``), a zero-shot parquet per model and a sound-protocol classifier
bundle per model (fitted on a small synthetic labelled set of the same width), so ``score_stage``
streams zero-shot scores *and* classifier probabilities into the parquet/TSV/scored VCF outputs.

Inputs (seeded, made once in ``--work``): a 30 Mb genome (3 contigs x 10 Mb, random ACGT, 1 kb-10 kb
N runs) with its ``.fai``, a synthetic GTF (one gene every ~20 kb), and a sorted VCF of the largest
size with a realistic ID column (rs numbers, some '.'), INFO AF/DP, ~0.5 % multi-allelic SNV
records, and ~3 % bad records: indels, positions inside N runs, records on a contig the FASTA lacks.
Smaller sizes are seeded random subsets of the same records (order kept). The same records also go
into a TSV table (chrom, pos, id, ref, alt) whose variants stage is measured alone.

Every stage runs in its own fresh process (``--child``), which reports its wall time and CPU seconds
(``getrusage`` before/after the stage call) and its peak RSS (``ru_maxrss``); a process that only
imports the library gives the baseline that the "above imports" column subtracts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONTIGS = {"chr1": 10_000_000, "chr2": 10_000_000, "chr3": 10_000_000}
UNKNOWN_CONTIG = "chrUn_KI270302v1"  # in the VCF header (as a caller's reference would have), not in the FASTA
CONTEXT, POOLING = 1536, 1536
FEATURE_WIDTH = 8
MODELS = [{"name": "ps", "path": "synthetic/caduceus-ps", "rc_rule": "ps"},
          {"name": "ph", "path": "synthetic/caduceus-ph", "rc_rule": "ph"}]
STAGES = ("variants", "variants_tsv", "windows", "score")


# ----------------------------------------------------------------------------- inputs


def _write_fasta(path: Path, seqs: dict[str, np.ndarray], width: int = 60) -> None:
    """FASTA with ``width``-column lines, written from uint8 arrays without per-line Python strings."""
    with open(path, "wb") as handle:
        for name, seq in seqs.items():
            handle.write(f">{name}\n".encode())
            full = len(seq) // width * width
            body = np.empty((full // width, width + 1), np.uint8)
            body[:, :width] = seq[:full].reshape(-1, width)
            body[:, width] = ord("\n")
            handle.write(body.tobytes())
            if full < len(seq):
                handle.write(seq[full:].tobytes() + b"\n")


def make_inputs(work: Path, n_max: int, seed: int = 9) -> dict[str, Path]:
    """Genome + .fai, GTF and the largest VCF/TSV (skipped when already there with the same size/seed)."""
    import pysam

    stamp = work / "inputs.json"
    files = {"fasta": work / "genome.fa", "gtf": work / "genes.gtf", "vcf": work / f"variants_{n_max}.vcf",
             "tsv": work / f"variants_{n_max}.tsv"}
    if stamp.exists() and json.loads(stamp.read_text()) == {"n": n_max, "seed": seed} and all(p.exists() for p in files.values()):
        return files
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", np.uint8)
    seqs, n_runs = {}, {}
    for name, length in CONTIGS.items():
        seq = bases[rng.integers(0, 4, size=length)]
        runs = []
        for start in rng.integers(10_000, length - 20_000, size=6):
            size = int(rng.integers(1_000, 10_000))
            seq[start:start + size] = ord("N")
            runs.append((int(start), int(start) + size))
        seqs[name], n_runs[name] = seq, runs
    _write_fasta(files["fasta"], seqs)
    pysam.faidx(str(files["fasta"]))

    with open(files["gtf"], "w") as gtf:
        gtf.write("##description: synthetic genes\n")
        for name, length in CONTIGS.items():
            for k, start in enumerate(np.sort(rng.integers(1, length - 50_000, size=length // 20_000))):
                end = int(start) + int(rng.integers(1_000, 40_000))
                strand = "+" if rng.random() < 0.5 else "-"
                gtf.write(f'{name}\tSYN\tgene\t{start}\t{end}\t.\t{strand}\t.\tgene_id "G{name}_{k}"; gene_name "g{k}";\n')

    # Unique (contig, position) pairs, sorted; 1.5 % go to the unknown contig at the end of the file.
    n_unknown = max(1, int(n_max * 0.005))
    n_known = n_max - n_unknown
    names = list(CONTIGS)
    contig_of = rng.integers(0, len(names), size=int(n_known * 1.02))
    pos_of = rng.integers(1, 10_000_000 + 1, size=len(contig_of))
    keys = np.unique(contig_of.astype(np.int64) * 100_000_000 + pos_of)
    keys = np.sort(rng.choice(keys, size=n_known, replace=False))
    chrom_idx, positions = keys // 100_000_000, keys % 100_000_000
    # ~1 % of the records are moved into N runs (their genome base is N: skipped by the windows stage).
    in_n = rng.random(n_known) < 0.01
    for i in np.flatnonzero(in_n):
        lo, hi = n_runs[names[chrom_idx[i]]][rng.integers(0, 6)]
        positions[i] = rng.integers(lo + 1, hi + 1)
    order = np.lexsort((positions, chrom_idx))
    chrom_idx, positions = chrom_idx[order], positions[order]
    kind = rng.random(n_known)
    rs = rng.permutation(np.arange(1, 10 * n_max))[:n_max] + 1_000_000
    with open(files["vcf"], "w") as vcf, open(files["tsv"], "w") as tsv:
        vcf.write("##fileformat=VCFv4.2\n##source=scale_variants.py\n")
        for name, length in CONTIGS.items():
            vcf.write(f"##contig=<ID={name},length={length}>\n")
        vcf.write(f"##contig=<ID={UNKNOWN_CONTIG},length=1000000>\n")
        vcf.write('##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">\n'
                  '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n'
                  '##FILTER=<ID=LowQual,Description="Low quality">\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n')
        tsv.write("chrom\tpos\tid\tref\talt\n")
        afs = rng.random(n_max)
        dps = rng.integers(5, 200, size=n_max)
        alt_shift = rng.integers(1, 4, size=n_max)
        for k in range(n_max):
            if k < n_known:
                chrom = names[chrom_idx[k]]
                pos = int(positions[k])
                base = chr(seqs[chrom][pos - 1])
                ref = "ACGT"[rng.integers(0, 4)] if base == "N" else base  # a caller's REF at an N base
            else:
                chrom, pos, ref = UNKNOWN_CONTIG, 1_000 + 97 * (k - n_known), "A"
            alt = "ACGT"[("ACGT".index(ref) + int(alt_shift[k])) % 4]
            af = f"{afs[k]:.4f}"
            if k < n_known and kind[k] < 0.01:
                alt = ref + "ACGT"[int(alt_shift[k])]           # insertion
            elif k < n_known and kind[k] < 0.015:
                ref, alt = ref + "T", ref                        # deletion (REF is longer than the genome base)
            elif k < n_known and kind[k] < 0.02:
                alt = alt + "," + "ACGT"[("ACGT".index(ref) + int(alt_shift[k]) % 3 + 1) % 4]  # multi-allelic SNV
                af = f"{afs[k] / 2:.4f},{afs[k] / 3:.4f}"
            vid = "." if k % 10 == 7 else f"rs{rs[k]}"
            flt = "LowQual" if k % 50 == 3 else "PASS"
            vcf.write(f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\t{30 + k % 70}\t{flt}\tAF={af};DP={dps[k]}\n")
            tsv.write(f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\n")
    stamp.write_text(json.dumps({"n": n_max, "seed": seed}))
    return files


def subset(files: dict[str, Path], n: int, n_max: int, seed: int = 5) -> dict[str, Path]:
    """The VCF/TSV of ``n`` records: a seeded random subset of the largest files' records, order kept."""
    if n == n_max:
        return files
    out = {**files, "vcf": files["vcf"].with_name(f"variants_{n}.vcf"), "tsv": files["tsv"].with_name(f"variants_{n}.tsv")}
    keep = np.zeros(n_max, bool)
    keep[np.random.default_rng(seed + n).choice(n_max, size=n, replace=False)] = True
    for kind in ("vcf", "tsv"):
        with open(files[kind]) as src, open(out[kind], "w") as dst:
            k = 0
            for line in src:
                if line.startswith("#") or (kind == "tsv" and line.startswith("chrom\t")):
                    dst.write(line)
                    continue
                if keep[k]:
                    dst.write(line)
                k += 1
    return out


def make_score_inputs(folder: Path, windows: Path) -> dict[str, list[str]]:
    """Embeddings, zero-shot scores and a classifier bundle per model, for the kept variants of ``windows``."""
    import pandas as pd
    import pyarrow.parquet as pq

    from caduceus_vep import bundle, sound
    from caduceus_vep.feature_file import FEATURE_COLUMNS, FeatureBlock, write_block

    ids = pq.read_table(windows, columns=["variant_id"]).column("variant_id").to_pylist()
    n = len(ids)
    rng = np.random.default_rng(17)
    out: dict[str, list[str]] = {"embeddings": [], "zero_shot": [], "classifiers": []}
    for model in MODELS:
        name = model["name"]
        emb = folder / "embeddings" / f"{name}.parquet"
        emb.parent.mkdir(parents=True, exist_ok=True)
        digests = [f"{i:032x}" for i in range(n)]
        block = FeatureBlock(ids, digests, {c: rng.standard_normal((n, FEATURE_WIDTH), dtype=np.float32) for c in FEATURE_COLUMNS})
        write_block(block, emb, {"model": {"name": name, "weights_sha256": None}, "synthetic": True})
        zs = folder / "zero_shot" / f"{name}.parquet"
        zs.parent.mkdir(parents=True, exist_ok=True)
        fwd, rc = rng.standard_normal(n), rng.standard_normal(n)
        pd.DataFrame({"variant_id": ids, "llr_fwd": fwd, "llr_rc": rc, "llr": (fwd + rc) / 2, "llr_masked": rng.standard_normal(n),
                      "l2": rng.random(n), "cosine": rng.random(n) / 10}).to_parquet(zs, index=False)
        # The classifier: the sound protocol on 600 synthetic labelled rows of the same width
        # (the label is readable from ref features, fwd and rc alike, as tests/test_evaluate.synthetic).
        m_rows = 600
        label = rng.integers(0, 2, m_rows)
        matrices = {c: rng.normal(size=(m_rows, FEATURE_WIDTH)) for c in FEATURE_COLUMNS}
        matrices["ref_fwd"] = matrices["ref_fwd"] + 2.0 * label[:, None]
        matrices["ref_rc"] = matrices["ref_fwd"] + 0.1 * rng.normal(size=(m_rows, FEATURE_WIDTH))
        train_ids = pd.Series([f"t{i}" for i in range(m_rows)])
        rows = pd.DataFrame({
            "variant_id": train_ids, "label": label, "split": np.where(np.arange(m_rows) % 3 == 0, "test", "train"),
            "tissue": np.where(np.arange(m_rows) % 2 == 0, "Liver", "Blood"),
            "chrom": np.array(["chr1", "chr2", "chr9"])[np.arange(m_rows) % 3],
            "distance_to_nearest_TSS": rng.choice([1_000, 50_000, 200_000], size=m_rows)})
        result = sound.sound_protocol(rows, train_ids, matrices, model=name, rc_rule=model["rc_rule"],
                                      settings=sound.SoundSettings(c_grid=(1.0,), gamma_grid=(1.0,), cv_folds=3, bootstrap=0,
                                                                   max_train_rows=None))
        path = folder / "classifiers" / f"{name}.cvep.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        bundle.save_bundle(result, path, {"model": {"name": name, "weights_sha256": None},
                                          "windows": {"context_length": CONTEXT, "pooling_window": POOLING},
                                          "feature_width": FEATURE_WIDTH, "protocol": "sound"})
        out["embeddings"].append(str(emb))
        out["zero_shot"].append(str(zs))
        out["classifiers"].append(str(path))
    return out


# ----------------------------------------------------------------------------- one stage per process


def _config() -> dict:
    from caduceus_vep import settings as config_schema

    return config_schema.with_defaults({
        "run_name": "scale", "genome": {"fasta": "genome.fa"}, "models": MODELS,
        "datasets": {"user": {"path": "variants.vcf", "format": "auto"}},
        "windows": {"context_length": CONTEXT, "pooling_window": POOLING}, "embed": {"cache_dir": None}})


def child(stage: str, spec: dict) -> dict:
    """Run one stage in this process; its wall/CPU time and this process's peak RSS."""
    from caduceus_vep import scoring, stages  # noqa: F401  (scoring: the score stage imports it; counted in the baseline)

    out = Path(spec.get("out", "."))
    config = _config() if stage != "imports" else {}
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if stage == "imports":
        summary: dict = {}
    elif stage in ("variants", "variants_tsv"):
        suffix = "_tsv" if stage == "variants_tsv" else ""
        summary = stages.variants_stage(source=spec["source"], options=config["datasets"]["user"],
                                        out_variants=out / f"variants{suffix}.parquet", out_skipped=out / f"variants_skipped{suffix}.tsv",
                                        tss=spec["gtf"], dataset="user")
    elif stage == "windows":
        summary = stages.windows_stage(variants=out / "variants.parquet", fasta=spec["fasta"], spec=config["windows"],
                                       out_windows=out / "windows.parquet", out_skipped=out / "windows_skipped.tsv",
                                       source=spec["source"], out_flags=out / "flags.tsv")
    elif stage == "score":
        base = out / "scores" / "user"
        base.parent.mkdir(parents=True, exist_ok=True)
        outputs = {k: f"{base}.{suffix}" for k, suffix in (
            ("parquet", "scores.parquet"), ("tsv", "scores.tsv"), ("vcf", "scored.vcf.gz"), ("tbi", "scored.vcf.gz.tbi"),
            ("skipped", "skipped.tsv"), ("auroc", "auroc.tsv"), ("provenance", "provenance.json"))}
        summary = stages.score_stage(
            source=spec["source"], variants=out / "variants.parquet", variants_skipped=out / "variants_skipped.tsv",
            windows=out / "windows.parquet", windows_skipped=out / "windows_skipped.tsv", models=config["models"],
            options=config["datasets"]["user"], settings=config["evaluate"], zero_shot=spec["zero_shot"],
            embeddings=spec["embeddings"], classifiers=spec["classifiers"], model_records=None, dataset="user",
            config=config, threads=1, **{f"out_{k}": v for k, v in outputs.items()})
    else:
        raise SystemExit(f"unknown stage {stage}")
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"stage": stage, "wall_s": round(seconds, 3), "cpu_s": round(cpu, 3), "peak_rss_mb": round(_peak_rss_kb() / 1024, 1),
            "ru_maxrss_mb": round(after.ru_maxrss / 1024, 1), "summary": summary}


def _peak_rss_kb() -> int:
    """This process's peak RSS (kB): ``VmHWM``, the high-water mark of its own address space.

    Not ``ru_maxrss`` alone: Linux carries the larger of the parent's and the child's peak across
    fork+exec (``signal_struct.maxrss``), so a child of a big parent would report the parent's
    peak; ``VmHWM`` belongs to the address space that exec created. Equal to ``ru_maxrss`` whenever
    the stage itself is the larger.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(stage: str, spec: dict) -> dict:
    """``stage`` in a fresh interpreter (so its peak RSS is its own); its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", stage, json.dumps(spec)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report


def _versions() -> str:
    import pandas
    import pyarrow
    import pysam

    return f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, pysam {pysam.__version__}"


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def write_report(path: Path, rows: list[dict], baseline: dict, meta: dict) -> None:
    lines = [
        "# Variants -> windows -> score: time and peak memory at 100k-1M SNVs", "",
        f"Measured {meta['date']} on `{platform.node()}` ({os.cpu_count()} cores, shared with other sessions), {_versions()}.",
        f"`/proc/loadavg` at start: `{meta['load_start']}`; at end: `{_loadavg()}`. On a loaded machine wall time",
        "exceeds CPU time; read CPU seconds for the cost of the code.", "",
        "```bash", meta["command"], "```", "",
        f"Synthetic inputs (seeded, `benchmarks/scale_variants.py`): a {sum(CONTIGS.values()) / 1e6:.0f} Mb genome "
        f"({len(CONTIGS)} x 10 Mb, random ACGT, 1-10 kb N runs), a GTF with a gene every ~20 kb, and a sorted VCF with rs IDs "
        "(10 % '.'), INFO AF/DP, ~0.5 % multi-allelic SNV records and ~3 % bad records (indels, positions in N runs, an "
        "unknown contig). Smaller sizes are random subsets of the 1M records. Context 1,536 bp, pooling 1,536. "
        f"Two models; embeddings (width {FEATURE_WIDTH}), zero-shot scores and one sound-protocol classifier bundle per model "
        "are written by the script (embedding is not measured), so `score_stage` streams zero-shot scores and classifier "
        "probabilities into parquet, TSV and the bgzipped, tabix-indexed scored VCF.", "",
        "Each stage runs alone in a fresh process; peak RSS is that process's `VmHWM` (its own high-water mark: `ru_maxrss` "
        "would carry the parent's peak across fork+exec), CPU is user+system seconds of the "
        f"stage call. A process that only imports the library peaks at **{baseline['peak_rss_mb']:.0f} MB** "
        "(\"above imports\" subtracts it). `variants (tsv)` reads the same records from a TSV table.", "",
        "| SNVs | stage | wall s | CPU s | peak RSS MB | above imports MB | µs / SNV (wall) | µs / SNV (CPU) | output |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r["summary"]
        if r["stage"].startswith("variants"):
            what = f"{s['rows']:,} rows, {s['skipped']:,} skipped"
        elif r["stage"] == "windows":
            what = f"{s['kept']:,} kept, {s['skipped']:,} skipped"
        else:
            what = f"{s['rows']:,} rows, {s['scored_vcf_records']:,} VCF records"
        label = "variants (tsv)" if r["stage"] == "variants_tsv" else r["stage"]
        lines.append(f"| {r['n']:,} | {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] - baseline['peak_rss_mb']:.0f} | {1e6 * r['wall_s'] / r['n']:.1f} | "
                     f"{1e6 * r['cpu_s'] / r['n']:.1f} | {what} |")
    lines += ["", meta.get("notes", "").strip(), ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--records", type=int, default=1_000_000,
                        help="records of the generated VCF/TSV; every size is a subset of them (so sizes share one input)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/caduceus_vep_scale"), help="inputs and outputs (kept between runs)")
    parser.add_argument("--out", type=Path, help="write the markdown table here (e.g. benchmarks/results/scale.md)")
    parser.add_argument("--json", type=Path, help="append every measurement as a JSON line here")
    parser.add_argument("--notes", type=Path, help="markdown appended under the table")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1])), default=str))
        return
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "load_start": _loadavg(),
            "command": shlex.join([".venv/bin/python", "benchmarks/scale_variants.py", *sys.argv[1:]])}
    args.work.mkdir(parents=True, exist_ok=True)
    if max(args.sizes) > args.records:
        parser.error(f"--sizes must be at most --records ({args.records})")
    n_max = args.records
    started = time.perf_counter()
    files = make_inputs(args.work, n_max)
    print(f"inputs ready in {time.perf_counter() - started:.0f} s: {files['vcf']} {files['vcf'].stat().st_size / 1e6:.0f} MB", flush=True)
    baseline = run_child("imports", {})
    print(f"imports only: peak RSS {baseline['peak_rss_mb']:.0f} MB", flush=True)
    rows = []
    for n in sorted(args.sizes):
        these = subset(files, n, n_max)
        out = args.work / f"run_{n}"
        out.mkdir(exist_ok=True)
        common = {"out": str(out), "fasta": str(these["fasta"]), "gtf": str(these["gtf"])}
        for stage in args.stages:
            spec = {**common, "source": str(these["tsv"] if stage == "variants_tsv" else these["vcf"])}
            if stage == "score":
                spec.update(make_score_inputs(out, out / "windows.parquet"))
            result = {"n": n, **run_child(stage, spec), "load": _loadavg()}
            rows.append(result)
            print(f"{n:>9,} {stage:13s} wall {result['wall_s']:8.1f} s  cpu {result['cpu_s']:8.1f} s  "
                  f"peak RSS {result['peak_rss_mb']:7.0f} MB  load {result['load']}", flush=True)
            if args.json:
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(result, default=str) + "\n")
    if args.out:
        meta["notes"] = args.notes.read_text() if args.notes else ""
        write_report(args.out, rows, baseline, meta)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
