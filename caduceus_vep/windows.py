"""Sequence windows around each SNV, following the Long-Range Benchmark's centring convention.

For a 1-based position ``pos`` the 0-based SNP index is ``i = pos - 1`` and a context of even
length L is ``chrom[i - L/2 : i + L/2]``: the SNP sits at string index L/2. Hidden states are
mean-pooled over token positions ``L/2 - W/2 .. L/2 + W/2`` inclusive (W = pooling window),
clamped to the sequence. Only coordinates and the short pooling window are stored; the embedding
stage reads the long context from the indexed FASTA (storing 131 kb per variant costs ~800 GB).

Policies (see config/README.md, ``windows``): a context running off a chromosome end is dropped
(the benchmark, whose test ``start < 0 or end >= len(chrom)`` also drops a context ending exactly at
the last base) or padded with N (``edge_policy: pad``; then read it with :func:`fetch_context`);
a REF that disagrees with the genome is skipped, flagged or an error (``ref_mismatch``), and a
high mismatch rate stops the run because it almost always means the wrong genome build.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from caduceus_vep.atomic import atomic_path
from caduceus_vep.genome import Genome
from caduceus_vep.settings import section_defaults

WINDOW_COLUMNS = [
    "variant_id", "snp", "chrom", "pos", "ref", "alt", "contig", "context_start", "context_end",
    "pool_start", "pool_end", "n_fraction", "pad_left", "pad_right", "ref_mismatch", "genome_ref", "ref_pool_seq",
]
SKIPPED_COLUMNS = ["source", "line", "id", "chrom", "pos", "ref", "alt", "reason"]
_STRING = ("variant_id", "snp", "chrom", "ref", "alt", "contig", "genome_ref", "ref_pool_seq")
_TYPES = {"n_fraction": pa.float64(), "ref_mismatch": pa.bool_()}
# Fixed so that chunks (and an empty result) always write the same parquet schema.
WINDOW_SCHEMA = pa.schema([(c, pa.string() if c in _STRING else _TYPES.get(c, pa.int64())) for c in WINDOW_COLUMNS])
CHUNK_VARIANTS = 20_000
METADATA_KEY = b"caduceus_vep_window_spec"
_DEFAULTS = section_defaults("windows")  # the schema's defaults: the one place they live
EDGE_POLICIES = ("drop", "pad")
REF_POLICIES = ("skip", "flag", "error")


class WindowError(ValueError):
    """The windows stage must stop: a REF mismatch under ``ref_mismatch: error``, or a mismatch rate
    that points at a genome-build mix-up."""


@dataclass(frozen=True)
class WindowSpec:
    """Context length and pooling window (bp) plus the hygiene policies of the windows stage."""

    context_length: int
    pooling_window: int
    max_n_fraction: float = _DEFAULTS["max_n_fraction"]
    edge_policy: str = _DEFAULTS["edge_policy"]
    ref_mismatch: str = _DEFAULTS["ref_mismatch"]
    max_ref_mismatch_fraction: float = _DEFAULTS["max_ref_mismatch_fraction"]
    min_ref_checked: int = _DEFAULTS["min_ref_checked"]

    def __post_init__(self) -> None:
        if self.context_length < 2 or self.context_length % 2:
            raise ValueError(f"context_length must be an even number >= 2, got {self.context_length}")
        if self.pooling_window < 0:
            raise ValueError(f"pooling_window must be >= 0, got {self.pooling_window}")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError(f"max_n_fraction must be in [0, 1], got {self.max_n_fraction}")
        if self.edge_policy not in EDGE_POLICIES:
            raise ValueError(f"edge_policy must be one of {EDGE_POLICIES}, got {self.edge_policy!r}")
        if self.ref_mismatch not in REF_POLICIES:
            raise ValueError(f"ref_mismatch must be one of {REF_POLICIES}, got {self.ref_mismatch!r}")
        if not 0.0 <= self.max_ref_mismatch_fraction <= 1.0:
            raise ValueError(f"max_ref_mismatch_fraction must be in [0, 1], got {self.max_ref_mismatch_fraction}")

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> WindowSpec:
        """From the config's ``windows`` section (missing keys take the schema's defaults)."""
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown windows key(s) {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**{**_DEFAULTS, **{k: v for k, v in section.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def snp_index(self) -> int:
        """Index of the SNP inside the context string."""
        return self.context_length // 2

    def context_bounds(self, pos: int) -> tuple[int, int]:
        """0-based half-open genome interval of the context for a 1-based ``pos``."""
        i = pos - 1
        half = self.context_length // 2
        return i - half, i + half

    def pool_bounds(self) -> tuple[int, int]:
        """Half-open token range of the pooling window inside the context (clamped)."""
        v, half = self.snp_index, self.pooling_window // 2
        return max(0, v - half), min(self.context_length, v + half + 1)


@dataclass
class WindowResult:
    """Kept windows, skipped records, flagged (kept) records, and the REF-check counts."""

    windows: pd.DataFrame
    skipped: pd.DataFrame
    flags: pd.DataFrame
    n_ref_checked: int = 0
    n_ref_mismatch: int = 0
    n_kept: int = -1
    unknown_contigs: set[str] = field(default_factory=set)
    n_unknown_contig: int = 0

    def __post_init__(self) -> None:
        if self.n_kept < 0:
            self.n_kept = len(self.windows)


def alt_sequence(ref_context: str, alt: str, snp_index: int) -> str:
    """The ref context with the SNP base replaced by ``alt``."""
    return ref_context[:snp_index] + alt + ref_context[snp_index + 1:]


def _field(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, dict) else getattr(row, name)


def fetch_context(genome: Genome, row: Any) -> str:
    """The context of a windows row (``contig``, ``context_start``, ``context_end``), padded with N
    where it runs off a chromosome end (``edge_policy: pad``); identical to ``genome.fetch`` otherwise."""
    contig, start, end = _field(row, "contig"), int(_field(row, "context_start")), int(_field(row, "context_end"))
    length = genome.contig_lengths[contig]
    lo, hi = max(0, start), min(length, end)
    if lo >= hi:
        return "N" * (end - start)
    return "N" * (lo - start) + genome.fetch(contig, lo, hi) + "N" * (end - hi)


def check_mismatch_rate(n_checked: int, n_mismatch: int, spec: WindowSpec, fasta: str, source: str) -> None:
    """Stop when too many REF alleles disagree with the genome: that is a build mix-up, not noise."""
    if n_checked < max(1, spec.min_ref_checked):
        return
    rate = n_mismatch / n_checked
    if rate > spec.max_ref_mismatch_fraction:
        raise WindowError(
            f"{source}: {n_mismatch} of {n_checked} checked variants ({rate:.1%}) have a REF allele that does not "
            f"match the genome {fasta} (limit windows.max_ref_mismatch_fraction = {spec.max_ref_mismatch_fraction:.1%}). "
            "This usually means the variants and the genome are different builds (e.g. hg19/GRCh37 variants against "
            "hg38, or the reverse); use the matching FASTA or lift the variants over. Raise the limit only if the "
            "mismatches are expected.")


def build_windows(variants: pd.DataFrame, genome: Genome, spec: WindowSpec, source: str = "") -> WindowResult:
    """Check each unique variant against the genome and compute its window coordinates.

    Every input row lands in exactly one of ``windows`` and ``skipped``. Skipped: unknown contig,
    POS beyond the contig, REF not matching the genome (``ref_mismatch: skip``), a context running
    off a chromosome end or ending exactly at its last base (``edge_policy: drop``; the benchmark's
    ``end >= len(chrom)``), and contexts whose genomic bases are at least
    ``max_n_fraction`` N (padding is not counted: it is recorded in ``pad_left``/``pad_right``).
    """
    kept: dict[str, list] = {c: [] for c in WINDOW_COLUMNS}
    skipped: list[tuple] = []
    flags: list[tuple] = []
    pool_start, pool_end = spec.pool_bounds()
    half, checked, mismatched = spec.context_length // 2, 0, 0
    resolved: dict[str, str | None] = {}
    unknown: set[str] = set()
    n_unknown = 0
    cols = {c: variants[c].to_numpy() for c in ("variant_id", "chrom", "pos", "ref", "alt")}
    lines = variants["source_line"].to_numpy() if "source_line" in variants else np.full(len(variants), "")
    snps = variants["snp"].to_numpy() if "snp" in variants else np.full(len(variants), "")
    for k in range(len(variants)):
        chrom, pos, ref, alt = cols["chrom"][k], int(cols["pos"][k]), cols["ref"][k], cols["alt"][k]
        record = (source, lines[k], snps[k], chrom, pos, ref, alt)
        if chrom not in resolved:
            resolved[chrom] = genome.resolve_contig(chrom)
        contig = resolved[chrom]
        if contig is None:
            skipped.append((*record, f"contig {chrom!r} not in the genome FASTA"))
            unknown.add(str(chrom))
            n_unknown += 1
            continue
        length = genome.contig_lengths[contig]
        if pos > length:
            skipped.append((*record, f"POS beyond the end of {contig} (length {length})"))
            continue
        start, end = pos - 1 - half, pos - 1 + half
        lo, hi = max(0, start), min(length, end)
        genomic = genome.fetch(contig, lo, hi)
        base = genomic[pos - 1 - lo]
        if base == "N":
            # Nothing to compare REF with: its own reason, and not evidence of a build mix-up.
            skipped.append((*record, f"the genome base at {contig}:{pos} is N (unknown sequence; REF {ref} cannot be checked)"))
            continue
        checked += 1
        mismatch = base != ref
        if mismatch:
            mismatched += 1
            text = f"REF {ref} does not match the genome base {base} at {contig}:{pos} (genome build?)"
            if spec.ref_mismatch == "error":
                raise WindowError(f"{source}, line {lines[k]}: {text}; windows.ref_mismatch is 'error'")
            if spec.ref_mismatch == "skip":
                skipped.append((*record, text))
                continue
            flags.append((*record, f"kept with ref_mismatch: {text}"))
        pad_left, pad_right = lo - start, end - hi
        if (pad_left or pad_right) and spec.edge_policy == "drop":
            skipped.append((*record, f"{spec.context_length} bp context runs off the end of {contig} (length {length})"))
            continue
        if end == length and spec.edge_policy == "drop":
            # The benchmark's test is `end >= len(chrom)`: a context ending exactly at the last base is
            # dropped too (conservative by one base); reproduced so that the kept variants match.
            skipped.append((*record, f"{spec.context_length} bp context ends at the last base of {contig} (length {length}); "
                                     "the benchmark drops end >= chromosome length"))
            continue
        n_fraction = genomic.count("N") / len(genomic)
        if n_fraction >= spec.max_n_fraction and spec.max_n_fraction < 1.0:
            skipped.append((*record, f"context is {n_fraction:.2%} N (threshold {spec.max_n_fraction:.2%})"))
            continue
        context = "N" * pad_left + genomic + "N" * pad_right if (pad_left or pad_right) else genomic
        for name, value in (("variant_id", cols["variant_id"][k]), ("snp", snps[k]), ("chrom", chrom), ("pos", pos),
                            ("ref", ref), ("alt", alt), ("contig", contig), ("context_start", start),
                            ("context_end", end), ("pool_start", pool_start), ("pool_end", pool_end),
                            ("n_fraction", n_fraction), ("pad_left", pad_left), ("pad_right", pad_right),
                            ("ref_mismatch", mismatch), ("genome_ref", base),
                            ("ref_pool_seq", context[pool_start:pool_end])):
            kept[name].append(value)
    windows = pd.DataFrame(kept, columns=WINDOW_COLUMNS).astype(
        {"pos": "int64", "context_start": "int64", "context_end": "int64", "pool_start": "int64", "pool_end": "int64",
         "n_fraction": "float64", "pad_left": "int64", "pad_right": "int64", "ref_mismatch": "bool"})
    return WindowResult(windows=windows, skipped=pd.DataFrame(skipped, columns=SKIPPED_COLUMNS),
                        flags=pd.DataFrame(flags, columns=SKIPPED_COLUMNS), n_ref_checked=checked, n_ref_mismatch=mismatched,
                        unknown_contigs=unknown, n_unknown_contig=n_unknown)


def write_windows(variants: pd.DataFrame, genome: Genome, spec: WindowSpec, out: str | os.PathLike[str],
                  source: str = "", chunk: int = CHUNK_VARIANTS) -> WindowResult:
    """:func:`build_windows` in chunks, streaming kept windows into one parquet file (written atomically).

    Memory stays flat in the number of variants apart from the skipped/flagged records. The
    mismatch-rate check runs before the file is committed, so a stopped run leaves no output.
    """
    skipped, flags, checked, mismatched, kept, unknown, n_unknown = [], [], 0, 0, 0, set(), 0
    schema = WINDOW_SCHEMA.with_metadata({METADATA_KEY: json.dumps(spec.to_dict(), sort_keys=True)})
    with atomic_path(out, suffix=".parquet") as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for first in range(0, max(len(variants), 1), chunk):
            part = build_windows(variants.iloc[first:first + chunk], genome, spec, source=source)
            writer.write_table(pa.Table.from_pandas(part.windows, schema=WINDOW_SCHEMA, preserve_index=False).replace_schema_metadata(schema.metadata))
            skipped.append(part.skipped)
            flags.append(part.flags)
            checked, mismatched, kept = checked + part.n_ref_checked, mismatched + part.n_ref_mismatch, kept + part.n_kept
            unknown, n_unknown = unknown | part.unknown_contigs, n_unknown + part.n_unknown_contig
        if len(variants) and n_unknown == len(variants):
            theirs, ours = sorted(unknown), sorted(genome.contig_lengths)
            raise WindowError(
                f"{source}: none of the variants' contigs is in the genome FASTA {genome.path}: variants use "
                f"{theirs[:10]}{' ...' if len(theirs) > 10 else ''}, the FASTA has {ours[:10]}{' ...' if len(ours) > 10 else ''}. "
                "Use the FASTA of the variants' genome build (chr1 and 1 spellings are matched automatically).")
        check_mismatch_rate(checked, mismatched, spec, str(genome.path), source)
    by_line = {"by": "line", "kind": "stable", "ignore_index": True}  # input order, as a person reads the file
    return WindowResult(windows=pd.DataFrame(columns=WINDOW_COLUMNS),
                        skipped=pd.concat(skipped, ignore_index=True).sort_values(**by_line),
                        flags=pd.concat(flags, ignore_index=True).sort_values(**by_line), n_ref_checked=checked, n_ref_mismatch=mismatched,
                        n_kept=kept)


def read_window_spec(windows_path: str | os.PathLike[str]) -> WindowSpec:
    """The window spec a windows file was made with (from its parquet metadata)."""
    metadata = pq.read_schema(windows_path).metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{windows_path}: no window spec in its metadata (written by an older version?); re-run the windows rule")
    return WindowSpec(**json.loads(metadata[METADATA_KEY]))
