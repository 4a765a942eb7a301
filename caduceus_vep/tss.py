"""Distance from each variant to the nearest gene TSS, from a GENCODE-style GTF.

Convention (the one that reproduces the benchmark table's ``distance_to_nearest_TSS`` on the demo):
a gene's TSS is its ``start`` on the + strand and its ``end`` on the - strand (GTF coordinates are
1-based, inclusive), only ``gene`` features count, and the distance is ``abs(pos - tss)`` with the
variant's 1-based VCF position. Chromosome names are matched on :func:`genome.contig_key`, so a
GENCODE GTF (``chr1``) serves an Ensembl-style VCF (``1``) and vice versa.

The GTF is streamed in chunks (GENCODE comprehensive is ~3.4 M lines, of which ~63 k are genes);
only the sorted TSS positions per chromosome are kept, and the nearest search is a vectorised
``numpy.searchsorted`` per chromosome.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from caduceus_vep.genome import contig_key

GTF_COLUMNS = [0, 2, 3, 4, 6]  # seqname, feature, start, end, strand
NO_TSS = -1  # distance recorded for a variant on a chromosome without any annotated gene


class AnnotationError(ValueError):
    """The GTF cannot be read (names the file and, where known, the line)."""


def read_tss(path: str | os.PathLike[str], feature: str = "gene", chunksize: int = 500_000) -> dict[str, np.ndarray]:
    """Sorted, unique 1-based TSS positions per chromosome key (see :func:`genome.contig_key`)."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: GTF not found")
    per_key: dict[str, list[np.ndarray]] = {}
    first_line = 1
    try:
        reader = pd.read_csv(
            path, sep="\t", header=None, comment="#", usecols=GTF_COLUMNS, dtype=str, chunksize=chunksize,
            # Attributes hold quotes; '#' only appears after the columns read here, so comment= is safe.
            quoting=csv.QUOTE_NONE, compression="infer", skip_blank_lines=True, keep_default_na=False,
        )
        for chunk in reader:
            genes = chunk[chunk[2] == feature]
            if genes.empty:
                first_line += len(chunk)
                continue
            start = pd.to_numeric(genes[3], errors="coerce")
            end = pd.to_numeric(genes[4], errors="coerce")
            strand = genes[6]
            bad = start.isna() | end.isna() | ~strand.isin(["+", "-"])
            if bad.any():
                # Line numbers are approximate when the GTF has comment lines (pandas drops them).
                row = genes.index[bad.to_numpy()][0]
                raise AnnotationError(
                    f"{path}, data line {int(row) + 1}: gene record needs integer start/end and strand +/-, "
                    f"got {genes.loc[row, 3]!r}, {genes.loc[row, 4]!r}, {genes.loc[row, 6]!r}"
                )
            tss = np.where(strand.to_numpy() == "+", start.to_numpy(np.int64), end.to_numpy(np.int64))
            keys = genes[0].map(contig_key).to_numpy()
            for key in np.unique(keys):
                per_key.setdefault(str(key), []).append(tss[keys == key])
            first_line += len(chunk)
    except (pd.errors.ParserError, ValueError, EOFError, OSError) as err:
        if isinstance(err, AnnotationError):
            raise
        raise AnnotationError(f"{path}: cannot read as a GTF near data line {first_line} ({err})") from err
    if not per_key:
        raise AnnotationError(f"{path}: no {feature!r} records; is this a GTF (GENCODE/Ensembl)?")
    return {key: np.unique(np.concatenate(parts)) for key, parts in per_key.items()}


def nearest_tss_distance(chroms: pd.Series | np.ndarray, positions: pd.Series | np.ndarray,
                         tss: dict[str, np.ndarray]) -> np.ndarray:
    """``abs(pos - nearest TSS)`` for each (chrom, 1-based pos); ``NO_TSS`` (-1) where the chromosome has no gene."""
    chroms = pd.Series(np.asarray(chroms, dtype=object)).map(contig_key).to_numpy()
    positions = np.asarray(positions, dtype=np.int64)
    out = np.full(len(positions), NO_TSS, dtype=np.int64)
    for key in np.unique(chroms):
        sites = tss.get(str(key))
        if sites is None or len(sites) == 0:
            continue
        mask = chroms == key
        pos = positions[mask]
        right = np.searchsorted(sites, pos, side="left")
        # Neighbours on both sides; clip so that the ends of the array compare with the one neighbour they have.
        left_site = sites[np.clip(right - 1, 0, len(sites) - 1)]
        right_site = sites[np.clip(right, 0, len(sites) - 1)]
        out[mask] = np.minimum(np.abs(pos - left_site), np.abs(pos - right_site))
    return out


def fill_tss_distances(variants: pd.DataFrame, gtf: str | os.PathLike[str]) -> tuple[pd.DataFrame, list[str]]:
    """Compute ``distance_to_nearest_TSS`` where it is missing (-1) from ``gtf``; returns the table and notes.

    Where the input already carries distances they are kept, and the agreement with the GTF is
    reported: a low agreement on the benchmark table means a different annotation release.
    """
    tss = read_tss(gtf)
    computed = nearest_tss_distance(variants["chrom"], variants["pos"], tss)
    given = variants["distance_to_nearest_TSS"].to_numpy()
    missing = given < 0
    notes = []
    if (~missing).any():
        agree = int((computed[~missing] == given[~missing]).sum())
        notes.append(f"distance_to_nearest_TSS given for {int((~missing).sum())} rows; the GTF {gtf} gives the same "
                     f"value for {agree}")
    if missing.any():
        variants = variants.copy()
        variants.loc[missing, "distance_to_nearest_TSS"] = computed[missing]
        notes.append(f"distance_to_nearest_TSS computed from {gtf} for {int(missing.sum())} rows")
    no_gene = int((variants["distance_to_nearest_TSS"] < 0).sum())
    if no_gene:
        notes.append(f"{no_gene} rows are on a chromosome without any gene in {gtf}: distance -1 (in no TSS bucket)")
    return variants, notes
