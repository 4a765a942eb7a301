"""HyenaDNA's character tokenizer and how the paper's 131,072 bp context maps onto its tokens.

The released tokenizer (``CharacterTokenizer``, characters A, C, G, T, N) has the same ids as
Caduceus': ``[CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4 [RESERVED]=5 [UNK]=6 A=7 C=8 G=9 T=10 N=11``.
The embedding script calls it with ``add_special_tokens=False``, so one base is one token:

- context: 131,072 bp -> 131,072 tokens (the checkpoint's ``max_seq_len`` must be at least that;
  the medium-160k model's is 160,002 by its name, not confirmed);
- SNP: string index L/2 = 65,536 -> token 65,536. The script's rule ("start at len//2; if ref and
  alt agree there, take the last position where they differ, -1 if none") always lands on L/2 for
  an SNV here, because every base is its own token;
- pooling window: tokens ``65,536 - 768 .. 65,536 + 768`` inclusive (1,537 tokens), clamped.

One deliberate difference from the released tokenizer: lowercase bases get the uppercase ids
(the released one maps them to [UNK]). The windows stage uppercases every context before it gets
here, so this never changes an embedding of the pipeline, and it keeps one rule for both
character models of this package.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..tokenizer import VOCAB as _CADUCEUS_VOCAB
from ..tokenizer import tokenize as _char_tokenize
from ..variant_tokens import clamped_window
from ..variant_tokens import variant_token_index as variant_token_index  # part of this module's API

#: Token ids of the released HyenaDNA tokenizer (the same as Caduceus').
VOCAB: dict[str, int] = dict(_CADUCEUS_VOCAB)

#: The paper's settings for HyenaDNA (kuleshov-group/caduceus ``vep_embeddings.py``).
PAPER_CONTEXT_BP = 131_072
PAPER_POOL_HALF_WINDOW = 768  # tokens each side of the SNP token: 1,537 tokens in all


def tokenize(sequences: Sequence[str]) -> Tensor:
    """Token ids [B, L] (int64), one per base, no special tokens; unknown characters -> [UNK]=6."""
    return _char_tokenize(sequences)


def snp_token_index(context_length: int) -> int:
    """Token of the SNP in a context of ``context_length`` bases with the SNP at string index L/2."""
    return context_length // 2


def pooling_indices(snp_index: int, n_tokens: int, half_window: int = PAPER_POOL_HALF_WINDOW) -> Tensor:
    """``clamp(snp + arange(-h, h + 1), 0, n - 1)``: edge tokens repeat where the window runs off the context."""
    return clamped_window(snp_index, n_tokens, half_window)
