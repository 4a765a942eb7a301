"""Sequence windows around each SNV, following the Long-Range Benchmark's centring convention.

For a 1-based position ``pos`` the 0-based SNP index is ``i = pos - 1`` and a context of even
length L is ``chrom[i - L/2 : i + L/2]``: the SNP sits at string index L/2. Hidden states are
mean-pooled over token positions ``L/2 - W/2 .. L/2 + W/2`` inclusive (W = pooling window),
clamped to the sequence. Only coordinates and the short pooling window are stored; the embedding
stage reads the long context from the indexed FASTA (storing 131 kb per variant costs ~800 GB).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from caduceus_vep.genome import Genome

WINDOW_COLUMNS = [
    "variant_id", "chrom", "pos", "ref", "alt", "contig", "context_start", "context_end",
    "pool_start", "pool_end", "n_fraction", "ref_pool_seq",
]
SKIPPED_COLUMNS = ["source", "line", "chrom", "pos", "ref", "alt", "reason"]


@dataclass(frozen=True)
class WindowSpec:
    """Context length and pooling window, both in bp; ``max_n_fraction`` drops N-rich windows."""

    context_length: int
    pooling_window: int
    max_n_fraction: float = 0.005

    def __post_init__(self) -> None:
        if self.context_length < 2 or self.context_length % 2:
            raise ValueError(f"context_length must be an even number >= 2, got {self.context_length}")
        if self.pooling_window < 0:
            raise ValueError(f"pooling_window must be >= 0, got {self.pooling_window}")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError(f"max_n_fraction must be in [0, 1], got {self.max_n_fraction}")

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


def alt_sequence(ref_context: str, alt: str, snp_index: int) -> str:
    """The ref context with the SNP base replaced by ``alt``."""
    return ref_context[:snp_index] + alt + ref_context[snp_index + 1:]


def build_windows(variants: pd.DataFrame, genome: Genome, spec: WindowSpec, source: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check each unique variant against the genome and compute its window coordinates.

    Returns ``(windows, skipped)``; every input row lands in exactly one of them. Skipped:
    unknown contig, context running off a chromosome end (the benchmark drops these), REF not
    matching the genome, and ref contexts with an N fraction at or above ``spec.max_n_fraction``.
    """
    kept: list[dict] = []
    skipped: list[dict] = []
    pool_start, pool_end = spec.pool_bounds()
    for row in variants.itertuples(index=False):
        def skip(reason: str) -> None:
            skipped.append({"source": source, "line": getattr(row, "source_line", ""), "chrom": row.chrom,
                            "pos": row.pos, "ref": row.ref, "alt": row.alt, "reason": reason})

        contig = genome.resolve_contig(row.chrom)
        if contig is None:
            skip(f"contig {row.chrom!r} not in the genome FASTA")
            continue
        start, end = spec.context_bounds(int(row.pos))
        length = genome.contig_lengths[contig]
        if row.pos > length:
            skip(f"POS beyond the end of {contig} (length {length})")
            continue
        if start < 0 or end > length:
            skip(f"{spec.context_length} bp context runs off the end of {contig} (length {length})")
            continue
        context = genome.fetch(contig, start, end)
        genome_base = context[spec.snp_index]
        if genome_base != row.ref:
            skip(f"REF {row.ref} does not match the genome base {genome_base} (genome build?)")
            continue
        n_fraction = context.count("N") / len(context)
        if n_fraction >= spec.max_n_fraction and spec.max_n_fraction < 1.0:
            skip(f"context is {n_fraction:.2%} N (threshold {spec.max_n_fraction:.2%})")
            continue
        kept.append({
            "variant_id": row.variant_id, "chrom": row.chrom, "pos": int(row.pos), "ref": row.ref, "alt": row.alt,
            "contig": contig, "context_start": start, "context_end": end, "pool_start": pool_start,
            "pool_end": pool_end, "n_fraction": n_fraction, "ref_pool_seq": context[pool_start:pool_end],
        })
    return pd.DataFrame(kept, columns=WINDOW_COLUMNS), pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)
