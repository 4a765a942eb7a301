"""Random access to an indexed reference FASTA (plain FASTA + ``.fai``, or bgzip + ``.fai``/``.gzi``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyfaidx

_NON_ACGT = re.compile(r"[^ACGT]")


class GenomeError(ValueError):
    """The FASTA cannot be opened or a requested region is invalid."""


def sanitise(sequence: str) -> str:
    """Uppercase and turn every character outside ACGT into N (the benchmark's convention)."""
    return _NON_ACGT.sub("N", sequence.upper())


class Genome:
    """A reference genome read lazily through pyfaidx; never loads whole chromosomes."""

    def __init__(self, fasta: str | os.PathLike[str]) -> None:
        self.path = Path(fasta)
        if not self.path.exists():
            raise GenomeError(f"{self.path}: FASTA not found")
        try:
            # build_index=True writes a .fai beside a FASTA that lacks one (pyfaidx's default).
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True, rebuild=False)
        except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat, OSError, ValueError) as err:
            raise GenomeError(f"{self.path}: cannot open as an indexed FASTA ({err})") from err
        self.contig_lengths: dict[str, int] = {name: len(rec) for name, rec in self._fasta.records.items()}

    def __enter__(self) -> Genome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fasta.close()

    def resolve_contig(self, name: str) -> str | None:
        """The FASTA's name for ``name`` (``1``/``chr1``, ``MT``/``chrM`` both match), or None."""
        if name in self.contig_lengths:
            return name
        bare = name.removeprefix("chr")
        candidates = [f"chr{bare}", bare]
        if bare in ("M", "MT"):
            candidates += ["chrM", "MT", "chrMT", "M"]
        for candidate in candidates:
            if candidate in self.contig_lengths:
                return candidate
        return None

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Sequence of ``contig[start:end]`` (0-based, half-open), uppercase, non-ACGT as N."""
        length = self.contig_lengths.get(contig)
        if length is None:
            raise GenomeError(f"{self.path}: unknown contig {contig!r}")
        if not 0 <= start <= end <= length:
            raise GenomeError(f"{self.path}: region {contig}:{start}-{end} outside 0-{length}")
        return sanitise(self._fasta[contig][start:end])
