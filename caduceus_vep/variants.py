"""Read variants into one normalised table: the benchmark's ``All_Tissues.csv``, a user's table
(TSV/CSV/parquet with ``chrom,pos,ref,alt``), or a VCF / VCF.gz / BCF.

Output: one row per (variant, tissue) with a stable ``variant_id = chrom:pos:ref:alt`` and the
user's own id in ``snp``. Nothing is dropped silently: a record that cannot be scored goes to a
skipped-records table with the input file, line and reason; a file that cannot be read as a whole
raises :class:`VariantInputError` naming the file and line. Files are read in chunks, so memory
grows with the kept variants, not with the raw text (or a VCF's sample columns).

Every reader produces "raw" chunks of strings with the columns of :data:`RAW_COLUMNS` (``''`` =
not given) plus ``line``; :func:`_normalise` turns them into variants and skips the same way for
every format.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from caduceus_vep.genome import contig_key
from caduceus_vep.settings import dataset_defaults

EQTL_COLUMNS = ["CHROM", "POS", "SNP", "REF", "ALT", "label", "split", "tissue", "distance_to_nearest_TSS"]
NORMALISED_COLUMNS = [
    "variant_id", "chrom", "pos", "ref", "alt", "snp", "label", "split", "tissue",
    "distance_to_nearest_TSS", "source_line",
]
SKIPPED_COLUMNS = ["source", "line", "id", "chrom", "pos", "ref", "alt", "reason"]
RAW_COLUMNS = ["chrom", "pos", "id", "ref", "alt", "label", "split", "tissue", "distance"]
TABLE_REQUIRED = ["chrom", "pos", "ref", "alt"]
# Column names accepted in a user's table (case-insensitive) -> raw column.
TABLE_ALIASES = {"chrom": "chrom", "chr": "chrom", "#chrom": "chrom", "pos": "pos", "ref": "ref", "alt": "alt",
                 "id": "id", "snp": "id", "tissue": "tissue", "split": "split", "distance_to_nearest_tss": "distance"}
BASES = frozenset("ACGT")
SPLITS = frozenset({"train", "test"})
MISSING = frozenset({"", "."})
CHUNK_ROWS = 200_000
_PARSER_LINE = re.compile(r"line (\d+)")


class VariantInputError(ValueError):
    """An input file that cannot be read as a whole (names the file and, where known, the line)."""


@dataclass
class VariantTable:
    """Normalised variants plus the records that were skipped, with reasons.

    ``n_input_records`` counts data lines (VCF records, table rows); ``n_input_alleles`` counts them
    after multi-allelic records are split, so ``len(variants) + len(skipped) == n_input_alleles``.
    """

    variants: pd.DataFrame
    skipped: pd.DataFrame
    n_input_records: int
    notes: list[str] = field(default_factory=list)
    n_input_alleles: int = -1

    def __post_init__(self) -> None:
        if self.n_input_alleles < 0:
            self.n_input_alleles = self.n_input_records


_DEFAULTS = dataset_defaults()  # the schema's datasets.<name> defaults: the one place they live


@dataclass(frozen=True)
class ReadOptions:
    """How to read labels, tissues, splits and TSS distances that the file itself may not carry."""

    label_info: str | None = _DEFAULTS["label_info"]            # VCF INFO field with 0/1 labels
    distance_info: str | None = _DEFAULTS["distance_info"]      # VCF INFO field with the distance to the nearest TSS
    label_column: str = _DEFAULTS["label_column"]               # table column with 0/1 labels
    tissue: str = _DEFAULTS["tissue"]                           # tissue for records without one
    test_chromosomes: tuple[str, ...] = tuple(_DEFAULTS["test_chromosomes"])
    strict_labels: bool = False          # the benchmark table: every row needs 0/1 (no unlabelled rows)


def read_options_from_config(options: dict) -> ReadOptions:
    """:class:`ReadOptions` from a ``datasets.<name>`` config entry (complete: the schema filled it)."""
    return ReadOptions(label_info=options["label_info"], distance_info=options["distance_info"],
                       label_column=options["label_column"], tissue=options["tissue"],
                       test_chromosomes=tuple(options["test_chromosomes"]))


def make_variant_id(chrom: str, pos: int, ref: str, alt: str) -> str:
    """The stable key used by every stage: ``chrom:pos:ref:alt`` with a 1-based position."""
    return f"{chrom}:{int(pos)}:{ref}:{alt}"


# ----------------------------------------------------------------------------- readers


def _open_text(path: Path) -> io.TextIOBase:
    """Text handle for a plain or gzip/bgzip file; newline=None turns CRLF into LF."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline=None)
    return open(path, encoding="utf-8", errors="replace", newline=None)


def _read_chunks(handle, path: Path, line_offset: int, **kwargs) -> Iterator[pd.DataFrame]:
    """pandas' chunked reader with errors turned into messages naming the file and (file) line.

    Every chunk gets a ``line`` column: the 1-based line in the file (``line_offset`` lines precede
    the first row). Blank lines are kept as rows of ``''`` so line numbers stay exact.
    """
    last = line_offset
    try:
        reader = pd.read_csv(handle, dtype=str, keep_default_na=False, skip_blank_lines=False, quoting=csv.QUOTE_NONE,
                             chunksize=CHUNK_ROWS, **kwargs)
        for chunk in reader:
            chunk["line"] = np.arange(last + 1, last + 1 + len(chunk), dtype=np.int64)
            last += len(chunk)
            yield chunk
    except pd.errors.EmptyDataError:
        return  # a header and no records: nothing to read, not an error
    except pd.errors.ParserError as err:
        match = _PARSER_LINE.search(str(err))
        # pandas counts from the first line it reads, the header included when it parses one.
        counted_header = 1 if kwargs.get("header") == 0 else 0
        where = f"line {int(match.group(1)) + line_offset - counted_header}" if match else f"after line {last}"
        raise VariantInputError(f"{path}, {where}: wrong number of columns ({str(err).strip()})") from err
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeDecodeError) as err:
        raise VariantInputError(f"{path}, after line {last}: cannot read on (truncated or corrupt file? {err})") from err


def _table_separator(path: Path, header: str) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".tsv", ".txt", ".tab")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return "\t" if "\t" in header else ","


def _read_header_line(path: Path) -> str:
    try:
        with _open_text(path) as handle:
            return handle.readline()
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise VariantInputError(f"{path}, line 1: cannot read ({err})") from err


def _table_chunks(path: Path, eqtl: bool, options: ReadOptions) -> Iterator[pd.DataFrame]:
    """A CSV/TSV (optionally gzipped) or parquet table -> raw chunks."""
    if path.name.lower().endswith((".parquet", ".pq")):
        yield from _parquet_chunks(path, eqtl, options)
        return
    header = _read_header_line(path)
    if not header.strip():
        expected = ",".join(EQTL_COLUMNS) if eqtl else ",".join(TABLE_REQUIRED)
        raise VariantInputError(f"{path}: empty file, expected a header line {expected}")
    sep = _table_separator(path, header)
    columns = [c.strip() for c in header.rstrip("\r\n").split(sep)]
    mapping = _column_mapping(columns, path, eqtl, options)
    with _open_text(path) as handle:
        for chunk in _read_chunks(handle, path, line_offset=1, sep=sep, header=0, names=columns):
            yield _raw_from_table(chunk, mapping)


def _parquet_chunks(path: Path, eqtl: bool, options: ReadOptions) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a non-parquet file
        raise VariantInputError(f"{path}: not a readable parquet file ({err})") from err
    mapping = _column_mapping(parquet.schema_arrow.names, path, eqtl, options)
    row = 0
    for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
        # Parquet has no lines: "line" is the 1-based row number.
        chunk = batch.to_pandas().astype(str).replace({"None": "", "nan": "", "<NA>": ""})
        chunk["line"] = np.arange(row + 1, row + 1 + len(chunk), dtype=np.int64)
        row += len(chunk)
        yield _raw_from_table(chunk, mapping)


def _column_mapping(columns: list[str], path: Path, eqtl: bool, options: ReadOptions) -> dict[str, str]:
    """Raw column -> the file's column name; raises naming the missing ones."""
    if eqtl:
        missing = [c for c in EQTL_COLUMNS if c not in columns]
        if missing:
            raise VariantInputError(f"{path}, line 1: missing column(s) {missing}; expected {EQTL_COLUMNS}")
        return dict(zip(["chrom", "pos", "id", "ref", "alt", "label", "split", "tissue", "distance"], EQTL_COLUMNS))
    mapping: dict[str, str] = {}
    for name in columns:
        raw = TABLE_ALIASES.get(name.lower())
        if raw and raw not in mapping:
            mapping[raw] = name
    if options.label_column in columns:
        mapping["label"] = options.label_column
    missing = [c for c in TABLE_REQUIRED if c not in mapping]
    if missing:
        raise VariantInputError(
            f"{path}, line 1: missing column(s) {missing}; a variant table needs {TABLE_REQUIRED} "
            f"(optional: {options.label_column}, tissue, split, distance_to_nearest_TSS, id); found {columns}")
    return mapping


def _raw_from_table(chunk: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    raw = pd.DataFrame({c: chunk[mapping[c]].str.strip() if c in mapping else "" for c in RAW_COLUMNS}, index=chunk.index)
    raw["line"] = chunk["line"].to_numpy()
    return raw


def _vcf_header(handle, path: Path, meta: list[str] | None = None) -> tuple[int, list[str]]:
    """Consume the header; return (header line count, #CHROM columns); ``meta`` collects the ## lines."""
    n = 0
    for line in handle:
        n += 1
        if line.startswith("##"):
            if meta is not None:
                meta.append(line.rstrip("\n"))
            continue
        if line.startswith("#CHROM"):
            return n, line.rstrip("\n").split("\t")
        raise VariantInputError(f"{path}, line {n}: expected a '#CHROM POS ID REF ALT QUAL FILTER INFO' header line "
                                f"before the first record, got {line[:60]!r}")
    if n == 0:
        raise VariantInputError(f"{path}: empty file, expected a VCF header (##fileformat=VCFv4.x ... #CHROM ...)")
    raise VariantInputError(f"{path}, line {n}: no '#CHROM' header line")


def _vcf_text_chunks(path: Path, options: ReadOptions) -> Iterator[pd.DataFrame]:
    """A plain or bgzipped VCF, parsed with pandas (exact line numbers; sample columns ignored)."""
    meta: list[str] = []
    try:
        handle = _open_text(path)
        n_header, columns = _vcf_header(handle, path, meta)
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        raise VariantInputError(f"{path}: cannot read the VCF header (truncated or corrupt file? {err})") from err
    numbers = _info_numbers(meta, path, options)
    with handle:
        if len(columns) < 8:
            raise VariantInputError(f"{path}, line {n_header}: the #CHROM line has {len(columns)} columns, a VCF needs at least 8")
        for chunk in _read_chunks(handle, path, line_offset=n_header, sep="\t", header=None):
            if chunk.shape[1] - 1 != len(columns):  # -1: the added "line" column
                raise VariantInputError(f"{path}, line {int(chunk['line'].iloc[0])}: {chunk.shape[1] - 1} columns, "
                                        f"the #CHROM header line has {len(columns)}")
            info = chunk[7]
            yield pd.DataFrame({
                "chrom": chunk[0], "pos": chunk[1], "id": chunk[2], "ref": chunk[3], "alt": chunk[4],
                "label": _info_values(info, options.label_info, numbers.get("label")), "split": "", "tissue": "",
                "distance": _info_values(info, options.distance_info, numbers.get("distance")), "line": chunk["line"],
                "_short": (chunk[list(range(8))] == "").any(axis=1) & ~(chunk[list(range(8))] == "").all(axis=1),
                "_per_allele": ",".join(f"{k}={v}" for k, v in numbers.items() if v in ("A", "R")),
            })


def _info_numbers(meta: list[str], path: Path, options: ReadOptions) -> dict[str, str]:
    """How the label/distance INFO fields are laid out: ``Flag``, ``A``/``R`` (one value per ALT /
    per allele, REF first) or ``1``, from the header's INFO definitions as htslib (pysam) parses them."""
    import pysam

    header = pysam.VariantHeader()
    for line in meta:
        if line.startswith("##INFO="):
            try:
                header.add_line(line)
            except ValueError as err:
                raise VariantInputError(f"{path}: cannot parse the header line {line[:80]!r} ({err})") from err
    numbers = {}
    for raw, key in (("label", options.label_info), ("distance", options.distance_info)):
        if key and key in header.info:
            info = header.info[key]
            numbers[raw] = "Flag" if info.type == "Flag" else str(info.number)
    if numbers.get("distance") == "Flag":
        raise VariantInputError(f"{path}: INFO/{options.distance_info} is a Flag; distance_info needs an Integer field")
    return numbers


def _info_values(info: pd.Series, key: str | None, number: str | None = None) -> pd.Series | str:
    """The raw value of INFO/``key`` per record ('' = absent); a Flag gives '1' when present, else '0'."""
    if not key:
        return ""
    if number == "Flag":
        return info.str.contains(rf"(?:^|;){re.escape(key)}(?:;|=|$)", regex=True).map({True: "1", False: "0"})
    return info.str.extract(rf"(?:^|;){re.escape(key)}=([^;]*)", expand=False).fillna("")


def _split_per_allele(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Multi-allelic records -> one row per ALT allele; Number=A/R INFO values split with their alleles."""
    per_allele = dict(item.split("=") for item in raw["_per_allele"].iloc[0].split(",") if item) if "_per_allele" in raw and len(raw) else {}
    raw = raw.drop(columns=[c for c in ("_per_allele",) if c in raw])
    alts = raw["alt"].str.split(",")
    raw = raw.assign(alt=alts)
    n_alts = alts.str.len()
    for column, number in per_allele.items():
        values = raw[column].str.split(",")
        present = raw[column] != ""
        expected = n_alts + (1 if number == "R" else 0)
        bad = present & (values.str.len() != expected)
        if bad.any():
            first = raw[bad].iloc[0]
            raise VariantInputError(f"{path}, line {int(first['line'])}: INFO value {first[column]!r} has {len(values[bad].iloc[0])} "
                                    f"value(s); Number={number} in the header needs one per "
                                    f"{'ALT allele' if number == 'A' else 'allele (REF first)'}, here {int(expected[bad].iloc[0])}")
        if number == "R":
            values = values.map(lambda v: v[1:])
        raw[column] = values.where(present, n_alts.map(lambda k: [""] * k))
    return raw.explode(["alt", *per_allele], ignore_index=True)


def _bcf_chunks(path: Path, options: ReadOptions) -> Iterator[pd.DataFrame]:
    """A BCF (or anything else pysam reads) -> raw chunks; ``line`` is the 1-based record number."""
    import pysam

    try:
        vcf = pysam.VariantFile(str(path))
    except (ValueError, OSError) as err:
        raise VariantInputError(f"{path}: not a readable VCF/BCF ({err})") from err
    rows: list[tuple] = []
    record_no = 0
    numbers = {raw: ("Flag" if vcf.header.info[key].type == "Flag" else str(vcf.header.info[key].number))
               for raw, key in (("label", options.label_info), ("distance", options.distance_info)) if key and key in vcf.header.info}
    per_allele = ",".join(f"{k}={v}" for k, v in numbers.items() if v in ("A", "R"))

    def frame(rows: list[tuple]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=[*RAW_COLUMNS, "line"]).assign(_per_allele=per_allele)

    with vcf:
        try:
            for record_no, rec in enumerate(vcf, start=1):
                rows.append((rec.chrom, str(rec.pos), rec.id or "", rec.ref or "", ",".join(rec.alts or ()) or ".",
                             _pysam_info(rec, options.label_info), "", "", _pysam_info(rec, options.distance_info), record_no))
                if len(rows) >= CHUNK_ROWS:
                    yield frame(rows)
                    rows = []
        except (ValueError, OSError) as err:
            raise VariantInputError(f"{path}, after record {record_no}: cannot read on ({err})") from err
    yield frame(rows)


def _pysam_info(rec, key: str | None) -> str:
    """INFO/``key`` as the text reader sees it: a Flag as '1'/'0', per-allele values comma-joined."""
    if not key:
        return ""
    if key in rec.header.info and rec.header.info[key].type == "Flag":
        return "1" if key in rec.info else "0"
    value = rec.info.get(key)
    if isinstance(value, tuple):
        return ",".join("" if v is None else str(v) for v in value)
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- normalisation


def _allele_reasons(ref: pd.Series, alt: pd.Series, pos: pd.Series) -> pd.Series:
    """Why each (REF, ALT) cannot be scored ('' = a scorable SNV); first matching reason wins."""
    checks = [
        (pos < 1, "POS must be >= 1"),
        (alt.isin(MISSING), "no ALT allele"),
        (alt == "*", "spanning-deletion allele '*' (not a sequence change at this position)"),
        (alt.str.startswith("<"), "symbolic allele " + alt + " (structural variant; the protocol is SNV-only)"),
        (alt.str.contains(r"[\[\]]", regex=True), "breakend allele (the protocol is SNV-only)"),
        (ref.isin(MISSING), "no REF allele"),
        (ref.str.len() != alt.str.len(), "indel (REF and ALT lengths differ; the protocol is SNV-only)"),
        (ref.str.len() > 1, "MNV (multi-base substitution; the protocol is SNV-only)"),
        (~(ref.isin(BASES) & alt.isin(BASES)), "non-ACGT base in REF/ALT (IUPAC code or N; the protocol is SNV-only)"),
        (ref == alt, "ALT equals REF"),
    ]
    reason = pd.Series("", index=ref.index, dtype=object)
    for mask, text in checks:
        fill = (reason == "") & mask
        reason[fill] = text[fill] if isinstance(text, pd.Series) else text
    return reason


def _first_bad(raw: pd.DataFrame, bad: pd.Series, column: str, path: Path, message: str) -> None:
    if bad.any():
        first = raw[bad].iloc[0]
        raise VariantInputError(f"{path}, line {int(first['line'])}: {message}, got {first[column]!r} "
                                f"({int(bad.sum())} row(s) in this chunk affected)")


def _normalise(raw: pd.DataFrame, path: Path, options: ReadOptions, test_keys: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One raw chunk -> (variants, skipped). Raises for whole-file problems, skips per-record ones."""
    if raw.empty:
        return pd.DataFrame(columns=NORMALISED_COLUMNS), pd.DataFrame(columns=SKIPPED_COLUMNS)
    blank = (raw[["chrom", "pos", "ref", "alt"]] == "").all(axis=1)
    if "_short" in raw:
        if raw["_short"].any():
            first = raw[raw["_short"]].iloc[0]
            raise VariantInputError(f"{path}, line {int(first['line'])}: fewer than 8 tab-separated columns or an empty "
                                    f"field (wrong column count?): {chr(9).join(first[RAW_COLUMNS[:5]])!r}...")
        raw = raw.drop(columns="_short")
    skips = [_skips(raw[blank], path, "blank line")]
    raw = raw[~blank]
    _first_bad(raw, raw["chrom"] == "", "chrom", path, "empty chromosome (wrong column count?)")
    _first_bad(raw, ~raw["pos"].str.fullmatch(r"-?\d+"), "pos", path, "POS is not an integer")
    # Multi-allelic records: one row per ALT allele, all keeping the record's line (values checked per allele).
    raw = _split_per_allele(raw, path)
    label_ok = {"0", "1"} if options.strict_labels else {"0", "1", "", ".", "-1"}
    _first_bad(raw, ~raw["label"].isin(label_ok), "label", path,
               f"label must be one of {sorted({'0', '1'})}" + ("" if options.strict_labels else " (or empty: unlabelled)"))
    _first_bad(raw, ~raw["split"].isin(SPLITS | {""}), "split", path, f"split must be one of {sorted(SPLITS)}")
    distance_ok = raw["distance"].str.fullmatch(r"-?\d+") | (False if options.strict_labels else raw["distance"].isin(MISSING))
    _first_bad(raw, ~distance_ok, "distance", path, "distance_to_nearest_TSS is not an integer")

    raw["ref"] = raw["ref"].str.upper()
    raw["alt"] = raw["alt"].str.strip().str.upper()
    pos = raw["pos"].astype("int64")
    reason = _allele_reasons(raw["ref"], raw["alt"], pos)
    bad = reason != ""
    skips.append(_skips(raw[bad], path, reason[bad]))
    kept, pos = raw[~bad], pos[~bad]
    split = kept["split"].where(kept["split"] != "", np.where(kept["chrom"].map(contig_key).isin(test_keys), "test", "train"))
    variants = pd.DataFrame({
        "variant_id": kept["chrom"] + ":" + pos.astype(str) + ":" + kept["ref"] + ":" + kept["alt"],
        "chrom": kept["chrom"], "pos": pos, "ref": kept["ref"], "alt": kept["alt"],
        "snp": kept["id"].where(kept["id"] != ".", ""),
        "label": kept["label"].replace({"": "-1", ".": "-1"}).astype("int8"),
        "split": split, "tissue": kept["tissue"].where(kept["tissue"] != "", options.tissue),
        "distance_to_nearest_TSS": kept["distance"].replace({"": "-1", ".": "-1"}).astype("int64"),
        "source_line": kept["line"].astype("int64"),
    })
    return variants, pd.concat(skips, ignore_index=True)


def _skips(rows: pd.DataFrame, path: Path, reason: pd.Series | str) -> pd.DataFrame:
    frame = pd.DataFrame({"source": str(path), "line": rows["line"], "id": rows["id"].where(rows["id"] != ".", ""),
                          "chrom": rows["chrom"], "pos": rows["pos"], "ref": rows["ref"], "alt": rows["alt"], "reason": reason},
                         columns=SKIPPED_COLUMNS)
    return frame


def detect_format(path: str | os.PathLike[str]) -> str:
    """``vcf`` by extension (.vcf, .vcf.gz, .vcf.bgz, .bcf); ``eqtl_table`` when the header is the
    benchmark's; otherwise ``table``."""
    name = str(path).lower()
    if name.endswith((".vcf", ".vcf.gz", ".bcf", ".vcf.bgz")):
        return "vcf"
    if name.endswith((".parquet", ".pq")):
        return "table"
    header = _read_header_line(Path(path)) if Path(path).exists() else ""
    return "eqtl_table" if all(c in header for c in EQTL_COLUMNS) else "table"


def read_variants(path: str | os.PathLike[str], fmt: str = "auto", options: ReadOptions | None = None,
                  **option_kwargs) -> VariantTable:
    """Read any supported variant file (``fmt``: ``auto``, ``eqtl_table``, ``table`` or ``vcf``).

    Keyword arguments build a :class:`ReadOptions` when ``options`` is not given.
    """
    path = Path(path)
    if fmt not in ("auto", "eqtl_table", "table", "vcf"):
        raise ValueError(f"unknown variant format {fmt!r}; expected 'auto', 'eqtl_table', 'table' or 'vcf'")
    if not path.exists():
        raise VariantInputError(f"{path}: variant file not found")
    if options is None:
        if "test_chromosomes" in option_kwargs:
            option_kwargs["test_chromosomes"] = tuple(option_kwargs["test_chromosomes"])
        options = ReadOptions(**option_kwargs)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "eqtl_table":
        options = ReadOptions(**{**options.__dict__, "strict_labels": True})
        chunks = _table_chunks(path, eqtl=True, options=options)
    elif fmt == "table":
        chunks = _table_chunks(path, eqtl=False, options=options)
    elif str(path).lower().endswith(".bcf"):
        chunks = _bcf_chunks(path, options)
    else:
        chunks = _vcf_text_chunks(path, options)
    return _collect(chunks, path, options)


def _collect(chunks: Iterator[pd.DataFrame], path: Path, options: ReadOptions) -> VariantTable:
    test_keys = {contig_key(c) for c in options.test_chromosomes}
    kept, skipped, lines = [], [], 0
    for raw in chunks:
        lines += len(raw)
        variants, skips = _normalise(raw, path, options, test_keys)
        kept.append(variants)
        skipped.append(skips)
    variants = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=NORMALISED_COLUMNS)
    skipped_frame = pd.concat(skipped, ignore_index=True) if skipped else pd.DataFrame(columns=SKIPPED_COLUMNS)
    notes = []
    duplicate = variants.duplicated(["variant_id", "tissue"], keep="first")
    if duplicate.any():
        dup = variants[duplicate]
        skipped_frame = pd.concat([skipped_frame, pd.DataFrame({
            "source": str(path), "line": dup["source_line"], "id": dup["snp"], "chrom": dup["chrom"], "pos": dup["pos"].astype(str),
            "ref": dup["ref"], "alt": dup["alt"], "reason": "duplicate (variant, tissue) row; first occurrence kept"})],
            ignore_index=True)
        variants = variants[~duplicate]
        notes.append(f"{int(duplicate.sum())} duplicate (variant, tissue) rows skipped")
    variants = variants.reset_index(drop=True).astype(
        {"pos": "int64", "label": "int8", "distance_to_nearest_TSS": "int64", "source_line": "int64"})[NORMALISED_COLUMNS]
    skipped_frame = skipped_frame.sort_values("line", kind="stable").reset_index(drop=True)
    return VariantTable(variants=variants, skipped=skipped_frame, n_input_records=lines, notes=notes,
                        n_input_alleles=len(variants) + len(skipped_frame))


def read_eqtl_table(path: str | os.PathLike[str]) -> VariantTable:
    """A table in the ``All_Tissues.csv`` schema; labels must be 0/1 and splits train/test."""
    return read_variants(path, "eqtl_table")


def read_vcf(path: str | os.PathLike[str], **options) -> VariantTable:
    """A VCF / VCF.gz / BCF; see :class:`ReadOptions` for ``label_info``, ``distance_info``, ``tissue``."""
    return read_variants(path, "vcf", **options)


def unique_variants(variants: pd.DataFrame) -> pd.DataFrame:
    """One row per variant id (a variant appears once per tissue in the eQTL table); keeps the user's id."""
    cols = [c for c in ["variant_id", "chrom", "pos", "ref", "alt", "snp", "source_line"] if c in variants.columns]
    return variants[cols].drop_duplicates("variant_id").sort_values(["chrom", "pos", "alt"]).reset_index(drop=True)
