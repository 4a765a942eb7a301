"""Read variants (the benchmark's ``All_Tissues.csv`` table or a VCF) into one normalised table.

Output: one row per (variant, tissue) with a stable ``variant_id = chrom:pos:ref:alt``. Records
that cannot be scored are never dropped silently: they go to a skipped-records table with the
input file, line (or record number) and a reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

EQTL_COLUMNS = ["CHROM", "POS", "SNP", "REF", "ALT", "label", "split", "tissue", "distance_to_nearest_TSS"]
NORMALISED_COLUMNS = [
    "variant_id", "chrom", "pos", "ref", "alt", "snp", "label", "split", "tissue",
    "distance_to_nearest_TSS", "source_line",
]
SKIPPED_COLUMNS = ["source", "line", "chrom", "pos", "ref", "alt", "reason"]
BASES = frozenset("ACGT")
SPLITS = frozenset({"train", "test"})


class VariantInputError(ValueError):
    """An input file that cannot be read as a whole (names the file and, where known, the line)."""


@dataclass
class VariantTable:
    """Normalised variants plus the records that were skipped, with reasons."""

    variants: pd.DataFrame
    skipped: pd.DataFrame
    n_input_records: int
    notes: list[str] = field(default_factory=list)


def make_variant_id(chrom: str, pos: int, ref: str, alt: str) -> str:
    """The stable key used by every stage: ``chrom:pos:ref:alt`` with a 1-based position."""
    return f"{chrom}:{int(pos)}:{ref}:{alt}"


def _skip_frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=SKIPPED_COLUMNS)


def read_eqtl_table(path: str | os.PathLike[str]) -> VariantTable:
    """Read a table in the ``All_Tissues.csv`` schema (comma-separated, header line first).

    Whole-file problems (missing file, missing columns, labels other than 0/1, splits other than
    train/test) raise :class:`VariantInputError` naming the file and the first offending line;
    per-record problems that only make one variant unscorable (not an SNV, ALT equal to REF) are
    recorded as skips.
    """
    path = Path(path)
    if not path.exists():
        raise VariantInputError(f"{path}: variant table not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise VariantInputError(f"{path}: empty file, expected a header line {','.join(EQTL_COLUMNS)}") from err
    missing = [c for c in EQTL_COLUMNS if c not in raw.columns]
    if missing:
        raise VariantInputError(f"{path}, line 1: missing column(s) {missing}; expected {EQTL_COLUMNS}")
    raw = raw[EQTL_COLUMNS].apply(lambda col: col.str.strip())
    # Line numbers as a person sees them in an editor: the header is line 1.
    raw["source_line"] = range(2, len(raw) + 2)

    _require_values(raw, "label", {"0", "1"}, path)
    _require_values(raw, "split", SPLITS, path)
    for column in ("POS", "distance_to_nearest_TSS"):
        bad = ~raw[column].str.fullmatch(r"-?\d+")
        if bad.any():
            line = int(raw.loc[bad, "source_line"].iloc[0])
            raise VariantInputError(f"{path}, line {line}: {column} is not an integer: {raw.loc[bad, column].iloc[0]!r}")

    raw["REF"] = raw["REF"].str.upper()
    raw["ALT"] = raw["ALT"].str.upper()
    reason = pd.Series("", index=raw.index)
    reason[raw["POS"].astype(int) < 1] = "POS must be >= 1"
    reason[(reason == "") & ~(raw["REF"].isin(BASES) & raw["ALT"].isin(BASES))] = "not an SNV of A/C/G/T (the protocol is SNV-only)"
    reason[(reason == "") & (raw["REF"] == raw["ALT"])] = "ALT equals REF"
    bad = reason != ""
    skipped = _skip_frame(
        [
            {"source": str(path), "line": int(r.source_line), "chrom": r.CHROM, "pos": r.POS,
             "ref": r.REF, "alt": r.ALT, "reason": reason[i]}
            for i, r in raw[bad].iterrows()
        ]
    )
    kept = raw[~bad]
    variants = pd.DataFrame(
        {
            "chrom": kept["CHROM"].astype(str),
            "pos": kept["POS"].astype("int64"),
            "ref": kept["REF"],
            "alt": kept["ALT"],
            "snp": kept["SNP"],
            "label": kept["label"].astype("int8"),
            "split": kept["split"],
            "tissue": kept["tissue"],
            "distance_to_nearest_TSS": kept["distance_to_nearest_TSS"].astype("int64"),
            "source_line": kept["source_line"].astype("int64"),
        }
    )
    variants.insert(0, "variant_id", [make_variant_id(*t) for t in zip(variants.chrom, variants.pos, variants.ref, variants.alt)])
    variants = variants.reset_index(drop=True)
    _warn_duplicates = variants.duplicated(["variant_id", "tissue"], keep="first")
    notes = []
    if _warn_duplicates.any():
        dup = variants[_warn_duplicates]
        skipped = pd.concat(
            [skipped, _skip_frame([
                {"source": str(path), "line": int(r.source_line), "chrom": r.chrom, "pos": r.pos,
                 "ref": r.ref, "alt": r.alt, "reason": "duplicate (variant, tissue) row; first occurrence kept"}
                for r in dup.itertuples()
            ])],
            ignore_index=True,
        )
        variants = variants[~_warn_duplicates].reset_index(drop=True)
        notes.append(f"{int(_warn_duplicates.sum())} duplicate (variant, tissue) rows skipped")
    return VariantTable(variants=variants[NORMALISED_COLUMNS], skipped=skipped, n_input_records=len(raw), notes=notes)


def _require_values(frame: pd.DataFrame, column: str, allowed: set[str] | frozenset[str], path: Path) -> None:
    bad = ~frame[column].isin(allowed)
    if bad.any():
        line = int(frame.loc[bad, "source_line"].iloc[0])
        value = frame.loc[bad, column].iloc[0]
        raise VariantInputError(
            f"{path}, line {line}: {column} must be one of {sorted(allowed)}, got {value!r} "
            f"({int(bad.sum())} row(s) affected)"
        )


def unique_variants(variants: pd.DataFrame) -> pd.DataFrame:
    """One row per variant id (a variant appears once per tissue in the eQTL table)."""
    cols = ["variant_id", "chrom", "pos", "ref", "alt", "source_line"]
    return variants[cols].drop_duplicates("variant_id").sort_values(["chrom", "pos", "alt"]).reset_index(drop=True)


def read_vcf(
    path: str | os.PathLike[str],
    *,
    label_info: str | None = None,
    distance_info: str | None = None,
    tissue: str = "NA",
    test_chromosomes: tuple[str, ...] = ("chr9", "chr10"),
) -> VariantTable:
    """Read a VCF / VCF.gz / BCF with pysam; one output row per ALT allele that is an SNV.

    Multi-allelic records are split. ``label_info`` names an INFO field holding 0/1 labels (absent:
    label -1, scoring only); ``distance_info`` an INFO field with the distance to the nearest TSS
    (absent: -1). The split comes from the chromosome, as in the benchmark (chr9 and chr10 test).
    """
    import pysam

    path = Path(path)
    if not path.exists():
        raise VariantInputError(f"{path}: VCF not found")
    try:
        vcf = pysam.VariantFile(str(path))
    except (ValueError, OSError) as err:
        raise VariantInputError(f"{path}: not a readable VCF/BCF ({err})") from err
    rows: list[dict] = []
    skips: list[dict] = []
    n_records = 0
    test_set = {c.removeprefix("chr") for c in test_chromosomes}
    with vcf:
        for record_no, rec in enumerate(vcf, start=1):
            n_records += 1
            alts = rec.alts or ()
            base = {"source": str(path), "line": record_no, "chrom": rec.chrom, "pos": rec.pos, "ref": rec.ref}
            if not alts:
                skips.append({**base, "alt": ".", "reason": "no ALT allele"})
                continue
            label = _info_int(rec, label_info, path, record_no) if label_info else -1
            if label not in (-1, 0, 1):
                raise VariantInputError(f"{path}, record {record_no}: INFO/{label_info} must be 0 or 1, got {label}")
            distance = _info_int(rec, distance_info, path, record_no) if distance_info else -1
            for alt in alts:
                ref, alt_u = rec.ref.upper(), alt.upper()
                if not (ref in BASES and alt_u in BASES):
                    skips.append({**base, "alt": alt, "reason": "not an SNV of A/C/G/T (the protocol is SNV-only)"})
                    continue
                if ref == alt_u:
                    skips.append({**base, "alt": alt, "reason": "ALT equals REF"})
                    continue
                rows.append({
                    "variant_id": make_variant_id(rec.chrom, rec.pos, ref, alt_u), "chrom": rec.chrom,
                    "pos": int(rec.pos), "ref": ref, "alt": alt_u, "snp": rec.id or "",
                    "label": label, "split": "test" if rec.chrom.removeprefix("chr") in test_set else "train",
                    "tissue": tissue, "distance_to_nearest_TSS": distance, "source_line": record_no,
                })
    variants = pd.DataFrame(rows, columns=NORMALISED_COLUMNS).astype(
        {"pos": "int64", "label": "int8", "distance_to_nearest_TSS": "int64", "source_line": "int64"}
    )
    return VariantTable(variants=variants, skipped=_skip_frame(skips), n_input_records=n_records)


def _info_int(rec, key: str, path: Path, record_no: int) -> int:
    value = rec.info.get(key)
    if isinstance(value, tuple):
        value = value[0] if value else None
    if value is None:
        raise VariantInputError(f"{path}, record {record_no}: INFO/{key} missing")
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise VariantInputError(f"{path}, record {record_no}: INFO/{key} is not an integer: {value!r}") from err


def read_variants(path: str | os.PathLike[str], fmt: str = "auto", **vcf_options) -> VariantTable:
    """Dispatch on the format: ``eqtl_table`` (CSV in the All_Tissues schema) or ``vcf``.

    ``vcf_options`` (see :func:`read_vcf`) apply to VCF input only; the table carries those columns.
    """
    name = str(path).lower()
    if fmt == "auto":
        fmt = "vcf" if name.endswith((".vcf", ".vcf.gz", ".bcf", ".vcf.bgz")) else "eqtl_table"
    if fmt == "eqtl_table":
        return read_eqtl_table(path)
    if fmt == "vcf":
        return read_vcf(path, **vcf_options)
    raise ValueError(f"unknown variant format {fmt!r}; expected 'auto', 'eqtl_table' or 'vcf'")
