"""NT-v2's 6-mer tokenizer and how the paper's 12,288 bp context maps onto its tokens.

Vocabulary (4,107 ids, the official ``compute_tokens_to_ids_v2(6)`` order): 0-5 ``<unk> <pad>
<mask> <cls> <eos> <bos>``; 6-4101 the 4,096 6-mers in ``itertools.product("ATCG", repeat=6)``
order; 4102-4106 the single bases A, T, C, G, N.

Rule (the official ``NucleotidesKmersTokenizer.tokenize``): split the sequence at every N; cut
each N-free segment into 6-mers from its start; a leftover of fewer than 6 bases at a segment's end
becomes single-base tokens; each N is its own token. No special tokens (the embedding script calls
the tokenizer with ``add_special_tokens=False``). Characters other than A, C, G, T, N are refused,
as the official tokenizer does (the windows stage only produces those five).

In the paper's protocol (kuleshov-group/caduceus ``vep_embeddings.py``):

- context: 12,288 bp, the SNP at string index 6,144. Without N's that is exactly 2,048 tokens
  and the SNP is the first base of token 1,024 (bases 6,144..6,149). Every N, and every segment
  whose length is not a multiple of 6, adds tokens, so a context with N's tokenizes to more than
  2,048 tokens; the script truncates to 2,048 (the 3' end is cut), so every context the model
  sees is exactly 2,048 tokens and batches need no padding;
- SNP token (:func:`variant_token_index`): ``len//2`` (1,024) unless ref and alt tokens agree
  there, then the last position where they differ (-1 when none: e.g. the SNP fell into the cut
  3' end). With N's upstream the 6-mer frame shifts, which is why the script searches;
- pooling window: ``1536 // 6 = 256`` -> tokens ``idx - 128 .. idx + 128`` (257 tokens, ~1,542 bp),
  clamped to the context.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..variant_tokens import clamped_window
from ..variant_tokens import variant_token_index as variant_token_index  # part of this module's API

K = 6
SPECIAL_TOKENS = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
NUCLEOTIDES = "ATCG"
#: token string -> id, in the official order.
VOCAB: dict[str, int] = {tok: i for i, tok in enumerate(
    SPECIAL_TOKENS + ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=K)] + list(NUCLEOTIDES) + ["N"])}
ID_TO_TOKEN: list[str] = list(VOCAB)
FIRST_KMER_ID = len(SPECIAL_TOKENS)  # 6
SINGLE_BASE_ID = {b: VOCAB[b] for b in "ATCGN"}  # A 4102, T 4103, C 4104, G 4105, N 4106

#: The paper's settings for NT-v2 (kuleshov-group/caduceus ``vep_embeddings.py``).
PAPER_CONTEXT_BP = 12_288
PAPER_MAX_TOKENS = 2_048
PAPER_POOL_HALF_WINDOW = 1_536 // K // 2  # 128 tokens each side: 257 in all

_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(NUCLEOTIDES):
    _CODE[ord(_b)] = _i
_N = ord("N")
_POWERS = 4 ** np.arange(K - 1, -1, -1, dtype=np.int64)  # first base most significant, as product() orders


def _segment_ids(codes: np.ndarray) -> np.ndarray:
    """Ids of one N-free segment (base codes 0..3): 6-mers from its start, then single bases."""
    n_full = len(codes) // K
    kmers = FIRST_KMER_ID + codes[:n_full * K].reshape(n_full, K) @ _POWERS
    singles = np.array([SINGLE_BASE_ID[NUCLEOTIDES[c]] for c in codes[n_full * K:]], dtype=np.int64)
    return np.concatenate([kmers, singles])


def encode(sequence: str, max_tokens: int | None = None) -> list[int]:
    """Token ids of one DNA string (A, C, G, T, N) by the N rule; the first ``max_tokens`` if given."""
    raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
    codes = _CODE[raw]
    bad = (codes < 0) & (raw != _N)
    if bad.any():
        chars = sorted({chr(c) for c in raw[bad]})
        raise ValueError(f"NT-v2 tokenizer accepts only A, C, G, T, N; found {chars} (uppercase and mask the sequence first)")
    n_pos = np.flatnonzero(raw == _N)
    pieces: list[np.ndarray] = []
    start = 0
    for pos in [*n_pos.tolist(), len(raw)]:
        if pos > start:
            pieces.append(_segment_ids(codes[start:pos]))
        if pos < len(raw):
            pieces.append(np.array([SINGLE_BASE_ID["N"]], dtype=np.int64))
        start = pos + 1
    ids = np.concatenate(pieces).tolist() if pieces else []
    return ids if max_tokens is None else ids[:max_tokens]


def decode(ids: Sequence[int]) -> list[str]:
    """Token strings of ids (for reading tests and debugging)."""
    return [ID_TO_TOKEN[i] for i in ids]


def tokenize(sequences: Sequence[str], max_tokens: int | None = PAPER_MAX_TOKENS) -> Tensor:
    """Token ids [B, T] (int64) of DNA strings, truncated to ``max_tokens`` (the script's 2,048).

    All sequences must give the same number of tokens: the model is run without an attention
    mask (as the script runs it), so there is no padding. Paper contexts always give 2,048.
    """
    if isinstance(sequences, str):
        raise TypeError("tokenize expects a sequence of strings, not a single string")
    encoded = [encode(s, max_tokens) for s in sequences]
    lengths = sorted({len(e) for e in encoded})
    if len(lengths) > 1:
        raise ValueError(f"sequences tokenize to different lengths {lengths}; NT-v2 is run without padding")
    if not encoded:
        return torch.empty(0, 0, dtype=torch.long)
    return torch.tensor(encoded, dtype=torch.long).view(len(encoded), -1)


def pooling_indices(snp_index: int, n_tokens: int, half_window: int = PAPER_POOL_HALF_WINDOW) -> Tensor:
    """``clamp(snp + arange(-h, h + 1), 0, n - 1)``: edge tokens repeat where the window runs off the context."""
    return clamped_window(snp_index, n_tokens, half_window)
