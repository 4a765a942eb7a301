"""Enformer inputs and the paper's bin choice: one-hot encoding, contexts the trunk accepts, pooled bins.

One-hot (as enformer-pytorch's ``str_to_one_hot`` / ``seq_indices_to_one_hot`` and the paper's
``EnformerTokenizer``, ids A=0 C=1 G=2 T=3 N=4): channels in the order A, C, G, T; lowercase is the
same base; **N is all zeros**. The paper's tokenizer raises on any other character
(enformer-pytorch would silently give zeros, or 0.25 each for ``.``), so :func:`one_hot` refuses
them: the window builder maps non-ACGT characters to N before this point.

Bins: the trunk downsamples by ``2**num_downsamples`` (128 bp released), runs attention over all
``L / 128`` bins (1,536 at 196,608 bp), then crops ``target_length`` central bins (896: the
central 114,688 bp). The paper's script (kuleshov-group/caduceus ``vep_embeddings.py``) takes
window = 1536 // 128 = 12 and the bin offsets ``range(-12 // 2, 12 // 2 + 1)`` = -6..+6 around
bin ``T // 2`` = 448 of the cropped output, clamped to ``0..T - 1``: bins 442..454 (13 bins,
1,664 bp). With the SNP at string index ``L / 2`` this centre bin is the one holding the SNP (its
first base) whenever ``L / 128 - T`` is even, which :func:`output_bins` requires (an odd difference
makes enformer-pytorch's crop return ``T - 1`` bins, not ``T``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

#: The paper's Enformer context (``SEQUENCE_LENGTH`` of enformer-pytorch) and cropped output length.
PAPER_CONTEXT_BP = 196_608
PAPER_TARGET_LENGTH = 896
#: The paper's pooling window in base pairs (``WINDOW_SIZE_BP``), i.e. 12 bins of 128 bp -> offsets -6..+6.
PAPER_POOLING_WINDOW_BP = 1_536
#: Centre bin of the cropped 896-bin output (the paper overrides the variant index with ``size(1) // 2``).
PAPER_SNP_BIN = 448

CHANNELS = "ACGT"
_LUT = np.full(256, -2, dtype=np.int8)  # -2: refused character
for _i, _base in enumerate(CHANNELS):
    _LUT[ord(_base)] = _LUT[ord(_base.lower())] = _i
_LUT[ord("N")] = _LUT[ord("n")] = -1  # -1: N, all-zero row


def one_hot(sequences: Sequence[str]) -> Tensor:
    """``[B, L, 4]`` float32 one-hot of equal-length sequences (A, C, G, T channels; N all zeros).

    Raises ValueError naming the first character outside ACGTN (either case), or on unequal lengths.
    """
    if isinstance(sequences, str):
        raise TypeError("one_hot takes a list of sequences, not one string")
    if not sequences:
        raise ValueError("no sequences")
    length = len(sequences[0])
    out = np.zeros((len(sequences), length, 4), dtype=np.float32)
    for row, seq in enumerate(sequences):
        if len(seq) != length:
            raise ValueError(f"sequence {row} has length {len(seq)}, sequence 0 has {length}: a batch must share one length")
        try:
            codes = _LUT[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
        except UnicodeEncodeError:
            raise ValueError(f"sequence {row} holds a non-ASCII character; only A, C, G, T and N are allowed") from None
        bad = np.flatnonzero(codes == -2)
        if bad.size:
            raise ValueError(f"sequence {row} holds {seq[bad[0]]!r} at index {bad[0]}; only A, C, G, T and N "
                             "(either case) are allowed (map other characters to N first)")
        bases = np.flatnonzero(codes >= 0)
        out[row, bases, codes[bases]] = 1.0
    return torch.from_numpy(out)


def reverse_complement_one_hot(x: Tensor) -> Tensor:
    """One-hot of the reverse complement: flip the length axis and the ACGT channels (A<->T, C<->G; N stays zeros)."""
    return x.flip(dims=(-2, -1))


def output_bins(context_bp: int, target_length: int, bin_bp: int = 128) -> int:
    """Bins the trunk returns for a ``context_bp`` input; ValueError if the crop would not centre the SNP.

    ``target_length == -1`` means no crop (all ``context_bp / bin_bp`` bins).
    """
    if context_bp <= 0 or context_bp % bin_bp:
        raise ValueError(f"context of {context_bp} bp is not a positive multiple of the {bin_bp} bp bin")
    bins = context_bp // bin_bp
    if target_length == -1:
        return bins
    if bins < target_length:
        raise ValueError(f"context of {context_bp} bp gives {bins} bins, fewer than target_length {target_length}")
    if (bins - target_length) % 2:
        raise ValueError(f"context of {context_bp} bp gives {bins} bins; cropping to target_length {target_length} "
                         "removes an odd number of bins, which enformer-pytorch's crop cannot centre (it returns one bin short)")
    return target_length


def pooling_bins(n_bins: int, pooling_window_bp: int = PAPER_POOLING_WINDOW_BP, bin_bp: int = 128) -> list[int]:
    """Output bins the paper mean-pools: ``clamp(n_bins // 2 + range(-w // 2, w // 2 + 1), 0, n_bins - 1)``, w = window // bin.

    896 bins -> 442..454. A clamped index is counted once per occurrence (as ``torch.gather`` does).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    window = pooling_window_bp // bin_bp
    centre = n_bins // 2
    return [min(max(centre + offset, 0), n_bins - 1) for offset in range(-window // 2, window // 2 + 1)]
