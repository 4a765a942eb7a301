"""Random access to an indexed reference FASTA: plain FASTA + ``.fai``, or bgzip + ``.fai``/``.gzi``.

Read through htslib (pysam), which handles both layouts and builds a missing index; a plain-gzip
(non-BGZF) FASTA cannot be read at random and is refused with a message saying how to fix it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pysam

from caduceus_vep.atomic import atomic_path

# A byte table instead of a regex: sanitising a 131 kb context per variant is on the hot path of
# the windows and embed stages, and bytes.translate is ~20x faster than re.sub here.
_TO_ACGTN = bytes(c if chr(c) in "ACGT" else ord("N") for c in range(256))


def contig_key(name: str) -> str:
    """A spelling-independent key for a chromosome name: ``chr1``/``1`` -> ``1``, ``chrM``/``MT`` -> ``M``.

    Variant files, annotations and FASTAs disagree on the ``chr`` prefix (UCSC vs Ensembl); matching
    on this key lets a GENCODE GTF, an Ensembl-style VCF and UCSC hg38 meet.
    """
    bare = name.removeprefix("chr")
    return "M" if bare in ("M", "MT") else bare


class GenomeError(ValueError):
    """The FASTA cannot be opened or a requested region is invalid."""


def sanitise(sequence: str) -> str:
    """Uppercase and turn every character outside ACGT into N (the benchmark's convention)."""
    return sequence.upper().encode("ascii", "replace").translate(_TO_ACGTN).decode("ascii")


def _is_plain_gzip(path: Path) -> bool:
    """gzip magic without the BGZF extra field (``BC``): compressed, but not at random-access blocks."""
    with open(path, "rb") as handle:
        head = handle.read(18)
    return head[:2] == b"\x1f\x8b" and not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC")


def index_fasta(fasta: str | os.PathLike[str]) -> list[Path]:
    """Write the ``.fai`` (and ``.gzi`` for bgzip) of a FASTA; returns the index paths."""
    path = Path(fasta)
    if not path.exists():
        raise GenomeError(f"{path}: FASTA not found")
    if _is_plain_gzip(path):
        raise GenomeError(f"{path}: gzip-compressed but not with bgzip, so it cannot be indexed for random access; "
                          f"recompress it with `zcat {path.name} | bgzip > {path.stem}.bgz.fa.gz` (or decompress it)")
    with open(path, "rb") as handle:
        bgzipped = handle.read(2) == b"\x1f\x8b"  # plain gzip was refused above
    fai, gzi = Path(str(path) + ".fai"), Path(str(path) + ".gzi")
    # Written under temporary names and renamed when complete: a killed job never leaves a truncated
    # index that a later run (or the Genome class) would take as valid.
    with atomic_path(fai) as tmp_fai, (atomic_path(gzi) if bgzipped else contextlib.nullcontext()) as tmp_gzi:
        args = [str(path), "--fai-idx", str(tmp_fai)] + (["--gzi-idx", str(tmp_gzi)] if bgzipped else [])
        try:
            pysam.faidx(*args)
        except pysam.SamtoolsError as err:
            raise GenomeError(f"{path}: cannot index as a FASTA ({str(err).strip()})") from err
    return [fai, gzi] if bgzipped else [fai]


class Genome:
    """A reference genome read lazily through htslib; never loads whole chromosomes.

    A FASTA without its index gets one written beside it (as samtools faidx would).
    """

    def __init__(self, fasta: str | os.PathLike[str]) -> None:
        self.path = Path(fasta)
        if not self.path.exists():
            raise GenomeError(f"{self.path}: FASTA not found")
        if not Path(str(self.path) + ".fai").exists():
            index_fasta(self.path)
        if _is_plain_gzip(self.path):
            index_fasta(self.path)  # raises with the bgzip advice
        try:
            self._fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as err:
            raise GenomeError(f"{self.path}: cannot open as an indexed FASTA ({err})") from err
        self.contig_lengths: dict[str, int] = dict(zip(self._fasta.references, self._fasta.lengths))
        # First FASTA name per key wins, so a FASTA holding both "1" and "chr1" still resolves exact names first.
        self._by_key: dict[str, str] = {}
        for name in self.contig_lengths:
            self._by_key.setdefault(contig_key(name), name)

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
        return self._by_key.get(contig_key(name))

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Sequence of ``contig[start:end]`` (0-based, half-open), uppercase, non-ACGT as N."""
        length = self.contig_lengths.get(contig)
        if length is None:
            raise GenomeError(f"{self.path}: unknown contig {contig!r}")
        if not 0 <= start <= end <= length:
            raise GenomeError(f"{self.path}: region {contig}:{start}-{end} outside 0-{length}")
        if start == end:
            return ""
        return sanitise(self._fasta.fetch(contig, start, end))
