import numpy as np
import pandas as pd
import pytest
import torch

from caduceus_vep import zero_shot
from caduceus_vep.genome import Genome
from caduceus_vep.model import VOCAB, load_caduceus, tokenize
from conftest import REPO

CKPT = REPO / "resources/demo/checkpoints"
FASTA = REPO / "resources/demo/genome.fa"


def windows(n=4, length=64):
    with Genome(FASTA) as genome:
        starts = [5_000 + 997 * i for i in range(n)]
        refs = [genome.fetch("chr1", s, s + length)[length // 2].upper() for s in starts]
    alts = [{"A": "C", "C": "G", "G": "T", "T": "A"}[r] for r in refs]
    return pd.DataFrame({"variant_id": [f"v{i}" for i in range(n)], "contig": "chr1", "context_start": starts,
                         "context_end": [s + length for s in starts], "ref": refs, "alt": alts})


@pytest.mark.parametrize("name", ["ps", "ph"])
def test_llr_is_the_logit_difference_at_the_snp(name):
    model = load_caduceus(CKPT / f"caduceus-{name}-tiny")
    w = windows()
    with Genome(FASTA) as genome:
        scores = zero_shot.llr_scores(w, genome, model, batch_size=3, rc_pass=True)
        seq = genome.fetch("chr1", int(w.context_start[0]), int(w.context_end[0]))
    with torch.inference_mode():
        logits = model.mlm_logits(tokenize([seq]))[0, 32]
    expected = float(logits[VOCAB[w.alt[0]]] - logits[VOCAB[w.ref[0]]])
    assert scores.llr_fwd[0] == pytest.approx(expected, abs=1e-5)
    assert scores.llr.tolist() == pytest.approx(((scores.llr_fwd + scores.llr_rc) / 2).tolist())
    if name == "ps":  # RC-equivariant head: the RC pass gives the same LLR, so skipping it is exact
        assert np.allclose(scores.llr_fwd, scores.llr_rc, atol=1e-5)
        with Genome(FASTA) as genome:
            skipped = zero_shot.llr_scores(w, genome, model, batch_size=3)
        assert np.allclose(skipped.llr, scores.llr, atol=1e-5)
    else:  # a non-equivariant model gives a different RC value
        assert not np.allclose(scores.llr_fwd, scores.llr_rc, atol=1e-4)


def test_masking_the_snp_changes_the_input():
    model = load_caduceus(CKPT / "caduceus-ph-tiny")
    with Genome(FASTA) as genome:
        plain = zero_shot.llr_scores(windows(2), genome, model)
        masked = zero_shot.llr_scores(windows(2), genome, model, mask_snp=True)
    assert not np.allclose(plain.llr, masked.llr)


def test_embedding_distances_hand_worked():
    m = {"ref_fwd": np.array([[1.0, 0.0]]), "ref_rc": np.array([[1.0, 0.0]]),
         "alt_fwd": np.array([[0.0, 1.0]]), "alt_rc": np.array([[0.0, 3.0]])}
    d = zero_shot.embedding_distances(pd.Series(["v"]), m)  # ref (1, 0), alt (0, 2)
    assert d.l2[0] == pytest.approx(np.sqrt(5)) and d.cosine[0] == pytest.approx(1.0)


def test_zero_shot_auroc_sign_convention():
    rows = pd.DataFrame({"variant_id": ["a", "b", "c", "d"], "label": [1, 1, 0, 0], "split": "test", "tissue": "T",
                         "distance_to_nearest_TSS": 10})
    scores = pd.DataFrame({"variant_id": ["a", "b", "c", "d"], "llr": [-3.0, -2.0, 1.0, 2.0], "l2": [4.0, 3.0, 2.0, 1.0],
                           "cosine": [0.1, 0.2, 0.3, 0.4]})
    table = zero_shot.zero_shot_auroc(rows, scores, model="m", bootstrap=0).set_index(["protocol", "bucket"])
    assert table.loc[("zero_shot_llr", "0-30kb"), "auroc"] == 1.0  # low LLR = causal
    assert table.loc[("zero_shot_l2", "0-30kb"), "auroc"] == 1.0  # large distance = causal
    assert table.loc[("zero_shot_cosine", "0-30kb"), "auroc"] == 0.0
    assert np.isnan(table.loc[("zero_shot_l2", ">100kb"), "auroc"])
