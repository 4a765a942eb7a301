from __future__ import annotations

import pytest
import torch

from caduceus_vep.model import COMPLEMENT_MAP, VOCAB, reverse_complement_ids, tokenize


def test_vocabulary_ids():
    assert VOCAB == {
        "[CLS]": 0, "[SEP]": 1, "[BOS]": 2, "[MASK]": 3, "[PAD]": 4, "[RESERVED]": 5, "[UNK]": 6,
        "A": 7, "C": 8, "G": 9, "T": 10, "N": 11,
    }
    assert len(COMPLEMENT_MAP) == 16
    assert all(COMPLEMENT_MAP[COMPLEMENT_MAP[i]] == i for i in range(16))


def test_tokenize_maps_bases_without_special_tokens():
    ids = tokenize(["ACGTN", "TTGCA"])
    assert ids.dtype == torch.long
    assert ids.tolist() == [[7, 8, 9, 10, 11], [10, 10, 9, 8, 7]]


def test_lowercase_and_unknown_characters():
    assert tokenize(["acgtn"]).tolist() == [[7, 8, 9, 10, 11]]
    # Other IUPAC codes, punctuation and non-ASCII characters are [UNK]; one token per character.
    assert tokenize(["ARY-é*"]).tolist() == [[7, 6, 6, 6, 6, 6]]


def test_unequal_lengths_raise():
    with pytest.raises(ValueError, match="same length"):
        tokenize(["ACGT", "ACG"])


def test_single_string_is_rejected():
    with pytest.raises(TypeError):
        tokenize("ACGT")


def test_empty_inputs():
    assert tokenize([]).shape == (0, 0)
    assert tokenize(["", ""]).shape == (2, 0)


def test_reverse_complement_ids():
    ids = tokenize(["AACGTN", "GGGTTA"])
    assert reverse_complement_ids(ids).tolist() == tokenize(["NACGTT", "TAACCC"]).tolist()
    assert torch.equal(reverse_complement_ids(reverse_complement_ids(ids)), ids)
