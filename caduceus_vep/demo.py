"""Generate the bundled demo (resources/demo/): a synthetic genome, an eQTL table with a planted
signal, a matching GTF and VCF, two tiny untrained Caduceus checkpoints (PS and Ph) and tiny untrained
HyenaDNA, NT-v2 and Enformer checkpoints in their released layouts.

    python -m caduceus_vep.demo resources/demo

Deterministic: the same seed gives byte-identical files.

The planted signal. The background genome has 40 % GC. Around every causal (label 1) variant,
and around a minority of non-causal ones, a region of +-1,000 bp is redrawn at 62 % GC, so the
label can be read from the local sequence composition that a 1,536 bp window sees - but only at
the right place in the genome: shuffled labels, misplaced windows or a broken model score 0.5.
``LABEL_NOISE`` of the variants get the opposite region type, so a perfect pipeline scores about
0.8, not 1.0. The signal is independent of the TSS bucket and the tissue.
"""

from __future__ import annotations

import argparse
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caduceus_vep.atomic import atomic_path, write_text_atomic

SEED = 20240301
BACKGROUND_GC = 0.40
ISLAND_GC = 0.62
ISLAND_HALF_WIDTH = 1_000
LABEL_NOISE = 0.15
MIN_SPACING = 2_600
TISSUES = ("Adipose_Subcutaneous", "Brain_Cortex", "Liver", "Whole_Blood")
TEST_CHROMOSOMES = ("chr9", "chr10")
HYENA_DEMO_MAX_SEQ_LEN = 4_098  # the stored positional tensors: demo contexts up to 4,096 bp
#: Cropped output bins of the tiny Enformer: the demo's 1,536 bp context is 12 bins of 128 bp, the central 8 kept.
ENFORMER_DEMO_TARGET_LENGTH = 8


@dataclass(frozen=True)
class ChromosomePlan:
    """A synthetic chromosome: its length and gene TSSs (position, strand)."""

    name: str
    length: int
    genes: tuple[tuple[int, str], ...]


# Gene deserts make the >100 kb bucket reachable on a small genome.
PLAN = (
    ChromosomePlan("chr1", 260_000, ((15_000, "+"), (52_000, "-"))),
    ChromosomePlan("chr2", 100_000, ((20_000, "-"),)),
    ChromosomePlan("chr9", 230_000, ((12_000, "+"), (45_000, "+"))),
    ChromosomePlan("chr10", 100_000, ((25_000, "-"),)),
)


def _random_bases(rng: np.random.Generator, n: int, gc: float) -> np.ndarray:
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return rng.choice(np.array(list("ACGT")), size=n, p=p)


def _variant_positions(rng: np.random.Generator, plan: ChromosomePlan, edge: int) -> list[int]:
    """Jittered grid of 1-based positions, >= MIN_SPACING apart, away from the chromosome ends."""
    grid = np.arange(edge, plan.length - edge, MIN_SPACING + 300)
    jitter = rng.integers(0, 300, size=len(grid))
    return [int(p + j) for p, j in zip(grid, jitter)]


def nearest_tss_distance(pos: int, genes: tuple[tuple[int, str], ...]) -> int:
    """Distance in bp from ``pos`` to the closest TSS."""
    return min(abs(pos - tss) for tss, _ in genes)


def build_demo(rng: np.random.Generator) -> tuple[dict[str, str], list[dict]]:
    """The genome sequences and the (variant, tissue) rows."""
    genome: dict[str, str] = {}
    rows: list[dict] = []
    for plan in PLAN:
        seq = _random_bases(rng, plan.length, BACKGROUND_GC)
        positions = _variant_positions(rng, plan, edge=1_500)
        for pos in positions:
            label = int(rng.random() < 0.5)
            island = label if rng.random() >= LABEL_NOISE else 1 - label
            if island:
                lo, hi = pos - 1 - ISLAND_HALF_WIDTH, pos - 1 + ISLAND_HALF_WIDTH
                seq[lo:hi] = _random_bases(rng, hi - lo, ISLAND_GC)
            ref = str(seq[pos - 1])
            alt = str(rng.choice([b for b in "ACGT" if b != ref]))
            n_tissues = int(rng.integers(1, 4))
            for tissue in sorted(rng.choice(TISSUES, size=n_tissues, replace=False)):
                rows.append({
                    "CHROM": plan.name, "POS": pos, "SNP": f"{plan.name}_{pos}_{ref}_{alt}_b38", "REF": ref, "ALT": alt,
                    "label": label, "split": "test" if plan.name in TEST_CHROMOSOMES else "train", "tissue": str(tissue),
                    "distance_to_nearest_TSS": nearest_tss_distance(pos, plan.genes),
                })
        _add_hazards(rng, seq, positions)
        genome[plan.name] = "".join(seq)
    return genome, rows


def _add_hazards(rng: np.random.Generator, seq: np.ndarray, positions: list[int]) -> None:
    """Soft-masked (lowercase) stretches, and one N run over the first variant's window so the
    windows stage has a real N-filter skip to record."""
    for start in rng.integers(0, len(seq) - 400, size=6):
        seq[start:start + 300] = np.char.lower(seq[start:start + 300].astype(str))
    first = positions[0] - 1
    seq[first + 100:first + 140] = "N"


def write_fasta(genome: dict[str, str], path: Path, width: int = 60) -> None:
    """FASTA with fixed line width, plus a .fai index written by pysam."""
    import pysam

    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            for name, seq in genome.items():
                handle.write(f">{name}\n")
                for i in range(0, len(seq), width):
                    handle.write(seq[i:i + width] + "\n")
    Path(str(path) + ".fai").unlink(missing_ok=True)
    pysam.faidx(str(path))


def write_table(rows: list[dict], path: Path) -> None:
    """The All_Tissues.csv schema, same column order."""
    header = ["CHROM", "POS", "SNP", "REF", "ALT", "label", "split", "tissue", "distance_to_nearest_TSS"]
    lines = [",".join(header)] + [",".join(str(r[c]) for c in header) for r in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_gtf(path: Path) -> None:
    """A minimal GENCODE-like GTF: one gene record per planned TSS (1 kb genes)."""
    lines = []
    for plan in PLAN:
        for i, (tss, strand) in enumerate(plan.genes, start=1):
            start, end = (tss, tss + 999) if strand == "+" else (tss - 999, tss)
            gene_id = f"DEMO{plan.name.removeprefix('chr')}G{i:02d}"
            attrs = f'gene_id "{gene_id}.1"; gene_type "protein_coding"; gene_name "{gene_id}";'
            lines.append("\t".join([plan.name, "DEMO", "gene", str(start), str(end), ".", strand, ".", attrs]))
    with atomic_path(path) as tmp:
        # Fixed name and mtime in the gzip header keep the file byte-identical between runs.
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="genes.gtf", fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(("\n".join(lines) + "\n").encode())


def write_checkpoints(folder: Path, seed: int = SEED) -> None:
    """Tiny random-weight Caduceus PS and Ph checkpoints in the released Hugging Face layout."""
    from caduceus_vep.model import CaduceusConfig, build_caduceus, save_caduceus

    for name, rcps in (("caduceus-ps-tiny", True), ("caduceus-ph-tiny", False)):
        config = CaduceusConfig.from_dict(tiny_config(rcps))
        model = build_caduceus(config, seed=seed)
        out = folder / name
        save_caduceus(model, out, weights_format="safetensors", tied="once", masked_lm=True)
        write_text_atomic(out / "README.md", (
            f"# {name}: NOT PRETRAINED\n\nRandom weights (seed {seed}) in the released Caduceus checkpoint layout "
            f"(config.json + model.safetensors, same key names, tied tensors stored once), d_model "
            f"{config.d_model}, n_layer {config.n_layer}, rcps {rcps}. Made by `python -m caduceus_vep.demo`. "
            "For the demo and tests only: its embeddings carry no biology.\n"))


def write_baseline_checkpoints(folder: Path, seed: int = SEED) -> None:
    """Tiny random-weight HyenaDNA and NT-v2 checkpoints (NOT PRETRAINED) in their released layouts."""
    from caduceus_vep.model.hyenadna import build_hyenadna, save_hyenadna
    from caduceus_vep.model.hyenadna import tiny_config as hyena_tiny
    from caduceus_vep.model.ntv2 import build_ntv2, save_ntv2
    from caduceus_vep.model.ntv2 import tiny_config as nt_tiny

    hyena = build_hyenadna(hyena_tiny(max_seq_len=HYENA_DEMO_MAX_SEQ_LEN), seed=seed, lm_head=True)
    hyena.config.extra["_comment"] = "tiny random-weight HyenaDNA in the released layout: NOT PRETRAINED"
    save_hyenadna(hyena, folder / "hyenadna-tiny", tied="once")
    nt = build_ntv2(nt_tiny(), seed=seed, lm_head=True)
    nt.config.extra.update(model_type="esm", _comment="tiny random-weight NT-v2 in the released layout: NOT PRETRAINED "
                           "(the real model's weights are CC BY-NC-SA 4.0)")
    save_ntv2(nt, folder / "ntv2-tiny", tied="once", unused_keys=True)
    notes = {
        "hyenadna-tiny": (f"HyenaDNA (`model_type: hyenadna`, `HyenaDNAForCausalLM` key names), d_model {hyena.config.d_model}, "
                          f"n_layer {hyena.config.n_layer}, max_seq_len {hyena.config.max_seq_len} (contexts up to that many bp), "
                          "sine frequency stored once as in the released file"),
        "ntv2-tiny": (f"NT-v2 (`model_type: esm`, `EsmForMaskedLM` key names, the real 4,107-token 6-mer vocabulary), "
                      f"hidden_size {nt.config.hidden_size}, {nt.config.num_hidden_layers} layers, rotary, SwiGLU, MLM decoder "
                      "tied to the embeddings (stored once), plus the unused absolute position table the port may carry. "
                      "The real NT-v2 weights are CC BY-NC-SA 4.0 (non-commercial); these random ones carry no licence terms"),
    }
    for name, text in notes.items():
        write_text_atomic(folder / name / "README.md", (
            f"# {name}: NOT PRETRAINED\n\nRandom weights (seed {seed}) in the released checkpoint layout of {text}. "
            "Made by `python -m caduceus_vep.demo`. For the demo and tests only: its embeddings carry no biology.\n"))


def write_enformer_checkpoint(folder: Path, seed: int = SEED) -> Path:
    """A tiny random-weight Enformer (NOT PRETRAINED) in the released enformer-pytorch layout, at ``folder/enformer-tiny``."""
    from caduceus_vep.model.enformer import read_settings, write_tiny_checkpoint

    out = folder / "enformer-tiny"
    weights = write_tiny_checkpoint(out, seed=seed, target_length=ENFORMER_DEMO_TARGET_LENGTH)
    settings = read_settings(out)
    write_text_atomic(out / "README.md", (
        f"# enformer-tiny: NOT PRETRAINED\n\nRandom weights (seed {seed}) in the released checkpoint layout of "
        f"Enformer as enformer-pytorch stores it (`model_type: enformer`, config.json + {weights.name} with the "
        "state-dict names of `enformer_pytorch.Enformer`, aliases included), dim "
        f"{settings.dim}, depth {settings.depth}, heads {settings.heads}, {settings.num_downsamples} downsamplings "
        f"({settings.bin_bp} bp bins), target_length {settings.target_length} (a 1,536 bp context is "
        f"{1536 // settings.bin_bp} bins, the central {settings.target_length} kept), output heads "
        f"{dict(settings.output_heads)}. Made by `python -m caduceus_vep.demo`. For the demo and tests only: "
        "its embeddings carry no biology (and it is not the EleutherAI/DeepMind weights).\n"))
    return weights


def tiny_config(rcps: bool) -> dict:
    """The released config.json with a tiny width and depth."""
    return {
        "model_type": "caduceus", "architectures": ["CaduceusForMaskedLM"], "d_model": 32, "n_layer": 2,
        "vocab_size": 16, "pad_vocab_size_multiple": 8, "rms_norm": True, "fused_add_norm": True,
        "residual_in_fp32": False, "norm_epsilon": 1e-5, "bidirectional": True, "bidirectional_strategy": "add",
        "bidirectional_weight_tie": True, "rcps": rcps,
        "complement_map": {str(i): j for i, j in enumerate([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15])},
        "ssm_cfg": {"d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto", "dt_min": 0.001, "dt_max": 0.1,
                    "dt_init": "random", "dt_scale": 1.0, "dt_init_floor": 1e-4, "conv_bias": True, "bias": False,
                    "use_fast_path": True},
        "initializer_cfg": {"initializer_range": 0.02, "rescale_prenorm_residual": True, "n_residuals_per_layer": 1},
        "torch_dtype": "float32",
    }


def _bad_vcf_records(rows: list[dict], genome: dict[str, str]) -> list[tuple[str, int, str]]:
    """A handful of records that the custom-VCF path must skip with a reason (or split), placed
    between the good ones (1,300 bp after a variant: no collision with the 2,600 bp grid)."""
    anchors = {}
    for r in rows:
        anchors.setdefault(r["CHROM"], []).append(r["POS"])

    def site(chrom: str, k: int) -> tuple[int, str]:
        pos = sorted(set(anchors[chrom]))[k] + 1_300
        return pos, genome[chrom][pos - 1].upper()

    records = []
    pos, ref = site("chr1", 3)
    records.append(("chr1", pos, f"demo_indel\t{ref}\t{ref}T"))
    pos, ref = site("chr1", 6)
    alts = [b for b in "ACGT" if b != ref][:2]
    records.append(("chr1", pos, f"demo_multiallelic\t{ref}\t{','.join(alts)}"))
    pos, ref = site("chr2", 4)
    records.append(("chr2", pos, f"demo_spanning_deletion\t{ref}\t*"))
    pos, ref = site("chr9", 5)
    records.append(("chr9", pos, f"demo_symbolic\t{ref}\t<DEL>"))
    pos, ref = site("chr9", 8)
    nxt = genome["chr9"][pos].upper()
    records.append(("chr9", pos, f"demo_mnv\t{ref}{nxt}\t{'A' if ref != 'A' else 'C'}{'G' if nxt != 'G' else 'T'}"))
    pos, ref = site("chr10", 4)
    wrong = next(b for b in "ACGT" if b != ref)
    records.append(("chr10", pos, f"demo_ref_mismatch\t{wrong}\t{next(b for b in 'ACGT' if b not in (ref, wrong))}"))
    records.append(("chrUn_demo", 5_000, "demo_unknown_contig\tA\tC"))
    return records


def write_demo_vcf(rows: list[dict], genome: dict[str, str], path: Path) -> None:
    """Every demo SNV once as a VCF (labels in INFO/CAUSAL, distances in INFO/TSSDIST), plus a few
    bad or tricky records (see :func:`_bad_vcf_records`), sorted: the custom-VCF path's demo."""
    seen, records = set(), []
    for r in rows:
        key = (r["CHROM"], r["POS"])
        if key not in seen:
            seen.add(key)
            info = f"CAUSAL={r['label']};TSSDIST={r['distance_to_nearest_TSS']}"
            records.append((r["CHROM"], r["POS"], f"{r['SNP']}\t{r['REF']}\t{r['ALT']}", info))
    for chrom, pos, body in _bad_vcf_records(rows, genome):
        records.append((chrom, pos, body, "CAUSAL=0"))  # no TSSDIST: the demo computes it from the GTF
    order = {name: i for i, name in enumerate([*genome, "chrUn_demo"])}
    records.sort(key=lambda rec: (order[rec[0]], rec[1]))
    header = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={n},length={len(s)}>" for n, s in genome.items()] + [
        "##contig=<ID=chrUn_demo,length=10000>",
        '##INFO=<ID=CAUSAL,Number=1,Type=Integer,Description="1 = fine-mapped causal eQTL, 0 = not">',
        '##INFO=<ID=TSSDIST,Number=1,Type=Integer,Description="Distance to the nearest TSS (bp)">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    lines = [f"{chrom}\t{pos}\t{body}\t.\tPASS\t{info}" for chrom, pos, body, info in records]
    write_text_atomic(path, "\n".join(header + lines) + "\n")


def generate(folder: str | Path, seed: int = SEED) -> None:
    """Write every demo file into ``folder``."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    genome, rows = build_demo(rng)
    write_fasta(genome, folder / "genome.fa")
    write_table(rows, folder / "All_Tissues.csv")
    write_gtf(folder / "genes.gtf.gz")
    write_demo_vcf(rows, genome, folder / "variants.vcf")
    write_checkpoints(folder / "checkpoints", seed=seed)
    write_baseline_checkpoints(folder / "checkpoints", seed=seed)
    write_enformer_checkpoint(folder / "checkpoints", seed=seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="resources/demo")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    generate(args.folder, args.seed)


if __name__ == "__main__":
    main()
