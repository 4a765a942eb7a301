"""Character-level DNA tokenizer of the released Caduceus checkpoints.

No special tokens are added: the variant-effect code needs a sequence of L bases to be exactly
L tokens so that position i of the hidden state is base i.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Token ids of the released tokenizer (``CaduceusTokenizer`` with characters A, C, G, T, N).
VOCAB: dict[str, int] = {
    "[CLS]": 0,
    "[SEP]": 1,
    "[BOS]": 2,
    "[MASK]": 3,
    "[PAD]": 4,
    "[RESERVED]": 5,
    "[UNK]": 6,
    "A": 7,
    "C": 8,
    "G": 9,
    "T": 10,
    "N": 11,
}
UNK_ID = VOCAB["[UNK]"]

#: Complement of every id of the padded 16-token vocabulary: A<->T, C<->G, everything else fixed.
COMPLEMENT_MAP: list[int] = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]

# One byte-to-id table for the whole ASCII range; both cases map to the same id, which is what
# "uppercase first" means for the only characters that have an id.
_BYTE_TO_ID = bytearray([UNK_ID] * 256)
for _base in "ACGTN":
    _BYTE_TO_ID[ord(_base)] = VOCAB[_base]
    _BYTE_TO_ID[ord(_base.lower())] = VOCAB[_base]
_BYTE_TO_ID = bytes(_BYTE_TO_ID)


def _encode_one(sequence: str) -> bytes:
    # errors="replace" turns each non-ASCII character into exactly one "?" (-> [UNK]), so the
    # token count always equals the character count.
    return sequence.encode("ascii", errors="replace").translate(_BYTE_TO_ID)


def tokenize(sequences: Sequence[str]) -> Tensor:
    """Token ids [B, L] (int64) for equally long DNA strings; unknown characters become [UNK]=6."""
    if isinstance(sequences, str):
        raise TypeError("tokenize expects a sequence of strings, not a single string")
    encoded = [_encode_one(s) for s in sequences]
    if not encoded:
        return torch.empty(0, 0, dtype=torch.long)
    lengths = {len(e) for e in encoded}
    if len(lengths) != 1:
        raise ValueError(f"all sequences must have the same length, got lengths {sorted(lengths)}")
    flat = bytearray(b"".join(encoded))
    if not flat:
        return torch.empty(len(encoded), 0, dtype=torch.long)
    ids = torch.frombuffer(flat, dtype=torch.uint8).to(torch.long)
    return ids.view(len(encoded), -1)


def reverse_complement_ids(ids: Tensor, complement_map: Sequence[int] | Tensor | None = None) -> Tensor:
    """Reverse complement of token ids [..., L]: flip the last axis, then complement every id."""
    table = torch.as_tensor(COMPLEMENT_MAP if complement_map is None else complement_map, dtype=torch.long)
    return table.to(ids.device)[ids.flip(-1)]
