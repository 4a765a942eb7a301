"""A catalogue of bad and tricky variant inputs. Each one either stops with an error that names the
file and line, or is read with every record accounted for: kept, or skipped with a reason
(variants stage, then windows stage), never lost."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import write_fasta

from caduceus_vep.genome import Genome
from caduceus_vep.variants import VariantInputError, read_variants, unique_variants
from caduceus_vep.windows import WindowSpec, build_windows

RNG = np.random.default_rng(11)
SEQS = {"chr1": "".join(RNG.choice(list("ACGT"), 5_000)), "chr2": "".join(RNG.choice(list("ACGT"), 3_000))}
HEADER = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=5000>", "##contig=<ID=chr2,length=3000>",
          '##INFO=<ID=Y,Number=1,Type=Integer,Description="label">', "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
TABLE_HEADER = "chrom\tpos\tref\talt\tlabel"
SPEC = WindowSpec(context_length=200, pooling_window=20)


def base(chrom: str, pos: int) -> str:
    return SEQS[chrom][pos - 1]


def other(*bases: str) -> str:
    return next(b for b in "ACGT" if b not in bases)


def snv(chrom: str = "chr1", pos: int = 1_000, ref: str | None = None, alt: str | None = None, ident: str = ".",
        info: str = "Y=1") -> str:
    ref = ref if ref is not None else base(chrom, pos)
    alt = alt if alt is not None else other(ref.upper())
    return f"{chrom}\t{pos}\t{ident}\t{ref}\t{alt}\t.\tPASS\t{info}"


def vcf(*records: str) -> str:
    return "\n".join([*HEADER, *records]) + "\n"


def row(chrom: str, pos: int, ref: str | None = None, alt: str | None = None, label: str = "1") -> str:
    ref = ref if ref is not None else base(chrom, pos)
    return f"{chrom}\t{pos}\t{ref}\t{alt or other(ref)}\t{label}"


def truncated_gzip() -> bytes:
    text = vcf(*(snv(pos=300 + k, info=f"Y={k % 2};PAD={'x' * 50}") for k in range(3_000))).encode()
    packed = gzip.compress(text)
    return packed[: len(packed) // 2]


@dataclass(frozen=True)
class Case:
    """One fixture: an error (regex; the file name is checked too) or the reasons of the skips."""

    name: str
    filename: str
    content: Callable[[], str | bytes]
    error: str | None = None
    kept: int | None = None
    reasons: tuple[str, ...] = ()
    options: dict = field(default_factory=lambda: {"label_info": "Y"})


CASES = [
    Case("empty_vcf", "e.vcf", lambda: "", error=r"empty file"),
    Case("empty_table", "e.tsv", lambda: "", error=r"empty file", options={}),
    Case("header_only_vcf", "h.vcf", lambda: vcf(), kept=0),
    Case("header_only_table", "h.tsv", lambda: TABLE_HEADER + "\n", kept=0, options={}),
    Case("truncated_gzip", "t.vcf.gz", truncated_gzip, error=r"truncated"),
    Case("missing_chrom_line", "m.vcf", lambda: "\n".join(HEADER[:-1] + [snv()]) + "\n",
         error=r"line 5: expected a '#CHROM"),
    Case("too_few_columns", "f.vcf", lambda: vcf(snv(), "chr1\t1200\t.\tA\tC\t."), error=r"line 7: fewer than 8"),
    Case("too_many_columns", "w.vcf", lambda: vcf(snv(), snv(pos=1_200) + "\textra"), error=r"line 7: wrong number of columns"),
    Case("space_separated", "s.vcf", lambda: vcf(snv().replace("\t", " ")), error=r"line 6: .*columns"),
    Case("non_numeric_pos", "p.vcf", lambda: vcf(snv(), "chr1\t12a\t.\tA\tC\t.\tPASS\tY=1"), error=r"line 7: POS is not an integer"),
    Case("zero_pos", "z.vcf", lambda: vcf("chr1\t0\t.\tA\tC\t.\tPASS\tY=1", snv()), kept=1, reasons=("POS must be >= 1",)),
    Case("pos_beyond_contig", "b.vcf", lambda: vcf(snv(), "chr2\t3500\t.\tA\tC\t.\tPASS\tY=1"), kept=1,
         reasons=("POS beyond the end of chr2",)),
    Case("unknown_contig", "u.vcf", lambda: vcf(snv(), "chrUn\t100\t.\tA\tC\t.\tPASS\tY=1"), kept=1,
         reasons=("contig 'chrUn' not in the genome",)),
    Case("ensembl_names", "n.vcf", lambda: vcf(snv().replace("chr1", "1", 1)), kept=1),
    Case("lowercase_bases", "l.vcf", lambda: vcf(snv(ref=base("chr1", 1_000).lower(), alt=other(base("chr1", 1_000)).lower())), kept=1),
    Case("iupac_bases", "i.vcf", lambda: vcf(snv(alt="R"), snv(pos=1_300)), kept=1, reasons=("non-ACGT base",)),
    Case("ref_mismatch", "r.vcf", lambda: vcf(snv(ref=other(base("chr1", 1_000)))), kept=0,
         reasons=("does not match the genome base",)),
    Case("alt_equals_ref", "a.vcf", lambda: vcf(snv(alt=base("chr1", 1_000))), kept=0, reasons=("ALT equals REF",)),
    Case("multi_allelic", "ma.vcf", lambda: vcf(snv(alt=",".join(b for b in "ACGT" if b != base("chr1", 1_000))[:3])), kept=2),
    Case("star_allele", "st.vcf", lambda: vcf(snv(alt=f"{other(base('chr1', 1_000))},*")), kept=1,
         reasons=("spanning-deletion allele '*'",)),
    Case("symbolic_del", "sv.vcf", lambda: vcf(snv(alt="<DEL>"), snv(pos=1_500)), kept=1, reasons=("symbolic allele <DEL>",)),
    Case("indel_and_mnv", "im.vcf", lambda: vcf(snv(alt=base("chr1", 1_000) + "T"), snv(pos=1_500, ref="AC", alt="GT")),
         kept=0, reasons=("indel", "MNV")),
    Case("duplicates", "d.vcf", lambda: vcf(snv(), snv()), kept=1, reasons=("duplicate (variant, tissue) row",)),
    Case("unsorted", "us.vcf", lambda: vcf(snv("chr2", 2_000), snv(pos=3_000), snv(pos=1_000)), kept=3),
    Case("crlf_vcf", "c.vcf", lambda: vcf(snv(), snv(pos=1_300)).replace("\n", "\r\n"), kept=2),
    Case("crlf_table", "c.tsv", lambda: "\r\n".join([TABLE_HEADER, row("chr1", 900), row("chr2", 800)]) + "\r\n", kept=2,
         options={}),
    Case("blank_line", "bl.tsv", lambda: "\n".join([TABLE_HEADER, row("chr1", 900), "", row("chr2", 800)]) + "\n", kept=2,
         reasons=("blank line",), options={}),
    Case("table_missing_columns", "mc.tsv", lambda: "chrom\tpos\tref\nchr1\t10\tA\n", error=r"line 1: missing column\(s\) \['alt'\]",
         options={}),
    Case("table_bad_labels", "bl2.tsv", lambda: "\n".join([TABLE_HEADER, row("chr1", 900), row("chr1", 950, label="yes")]) + "\n",
         error=r"line 3: label must be one of", options={}),
    Case("eqtl_table_label_2", "All_Tissues.csv", lambda: "CHROM,POS,SNP,REF,ALT,label,split,tissue,distance_to_nearest_TSS\n"
         f"chr1,900,x,{base('chr1', 900)},{other(base('chr1', 900))},2,train,Liver,5\n", error=r"line 2: label must be one of",
         options={}),
    Case("vcf_bad_label", "vl.vcf", lambda: vcf(snv(), snv(pos=1_200, info="Y=7")), error=r"line 7: label must be one of"),
    Case("huge_info", "hi.vcf", lambda: vcf(snv(info="Y=0;BIG=" + "x" * 1_000_000), snv(pos=1_300)), kept=2),
]


def data_lines(path: Path) -> list[int]:
    """1-based line numbers of the records (not header, not the trailing newline)."""
    text = path.read_bytes().decode().replace("\r\n", "\n")
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    first = 1 if path.suffix in (".tsv", ".csv") else sum(1 for ln in lines if ln.startswith("#"))
    return list(range(first + 1, len(lines) + 1))


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Genome:
    path = write_fasta(tmp_path_factory.mktemp("g") / "genome.fa", SEQS)
    with Genome(path) as opened:
        yield opened


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 20 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_input_is_read_or_rejected_clearly(case, tmp_path, genome):
    path = tmp_path / case.filename
    content = case.content()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.error:
        with pytest.raises(VariantInputError, match=case.error) as err:
            read_variants(path, **case.options)
        assert str(path) in str(err.value)
        assert re.search(r"line \d+", str(err.value)) or "empty file" in str(err.value)
        return
    table = read_variants(path, **case.options)
    windows = build_windows(unique_variants(table.variants), genome, SPEC, source=str(path))
    # Nothing lost: every allele of every input line is kept or skipped, and every line is accounted for.
    assert len(table.variants) + len(table.skipped) == table.n_input_alleles >= table.n_input_records
    assert len(windows.windows) + len(windows.skipped) == table.variants["variant_id"].nunique()
    assert set(table.variants["source_line"]) | set(table.skipped["line"]) == set(data_lines(path))
    assert len(windows.windows) == case.kept
    reasons = " | ".join([*table.skipped["reason"], *windows.skipped["reason"]])
    for reason in case.reasons:
        assert reason in reasons, reasons
    n_skipped = len(table.skipped) + len(windows.skipped)
    assert n_skipped == len(case.reasons) or case.name in ("indel_and_mnv",), reasons
    assert windows.windows["ref"].astype(str).isin(list("ACGT")).all()


def test_demo_vcf_config_skips_every_bad_record_with_a_reason(tmp_path):
    """The custom-VCF demo (config/demo_vcf.yaml) through Snakemake's variants and windows rules."""
    import pandas as pd
    from test_workflow import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path / "wf")
    out = "results/demo_vcf/my_vcf"
    snakemake(workdir, f"{out}/windows/windows.parquet", "--cores", "2", "--configfile", "config/demo_vcf.yaml")
    variants = pd.read_parquet(workdir / out / "variants/variants.parquet")
    skipped = pd.concat([pd.read_csv(workdir / out / f"{stage}/skipped.tsv", sep="\t") for stage in ("variants", "windows")])
    windows = pd.read_parquet(workdir / out / "windows/windows.parquet")
    by_pos = dict(zip(skipped["chrom"] + ":" + skipped["pos"].astype(str), skipped["reason"]))
    vcf = pd.read_csv(workdir / "resources/demo/variants.vcf", sep="\t", comment="#", header=None, dtype=str)
    bad = vcf[vcf[2].str.startswith("demo_")].set_index(2)
    expected = {"demo_indel": "indel", "demo_mnv": "MNV", "demo_spanning_deletion": "'*'", "demo_symbolic": "<DEL>",
                "demo_unknown_contig": "not in the genome", "demo_ref_mismatch": "does not match the genome"}
    for ident, reason in expected.items():
        assert reason in by_pos[f"{bad.loc[ident, 0]}:{bad.loc[ident, 1]}"], ident
    assert (windows["snp"] == "demo_multiallelic").sum() == 2  # split, both alleles kept, user id carried
    # Nothing lost: 243 records, 244 alleles; distances computed from the GTF match the INFO/TSSDIST ones.
    assert len(variants) + (skipped["reason"].str.contains("indel|MNV|'\\*'|<DEL>")).sum() == 244
    assert len(windows) + len(skipped) - 4 == variants["variant_id"].nunique()
    good = vcf[~vcf[2].str.startswith("demo_")]
    given = dict(zip(good[2], good[7].str.extract(r"TSSDIST=(\d+)", expand=False).astype(int)))
    computed = variants[variants["snp"].isin(given)]
    assert (computed["distance_to_nearest_TSS"] == computed["snp"].map(given)).all() and len(computed) == 236
