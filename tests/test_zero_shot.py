import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO

from caduceus_vep import zero_shot
from caduceus_vep.genome import Genome
from caduceus_vep.model import VOCAB, load_caduceus, tokenize

CKPT = REPO / "resources/demo/checkpoints"
FASTA = REPO / "resources/demo/genome.fa"


def windows(n=4, length=64):
    with Genome(FASTA) as genome:
        starts = [5_000 + 997 * i for i in range(n)]
        refs = [genome.fetch("chr1", s, s + length)[length // 2].upper() for s in starts]
    alts = [{"A": "C", "C": "G", "G": "T", "T": "A"}[r] for r in refs]
    return pd.DataFrame({"variant_id": [f"v{i}" for i in range(n)], "contig": "chr1", "context_start": starts,
                         "context_end": [s + length for s in starts], "ref": refs, "alt": alts})


def llr(w, model, **kwargs):
    with Genome(FASTA) as genome:
        return zero_shot.llr_scores(w, genome, model, batch_size=3, autocast_dtype="float32", **kwargs)


@pytest.mark.parametrize("name", ["ps", "ph"])
def test_llr_is_the_logit_difference_at_the_snp(name):
    model = load_caduceus(CKPT / f"caduceus-{name}-tiny")
    w = windows()
    scores = llr(w, model, rc_pass=True)
    with Genome(FASTA) as genome:
        seq = genome.fetch("chr1", int(w.context_start[0]), int(w.context_end[0]))
    with torch.inference_mode():
        logits = torch.log_softmax(model.mlm_logits(tokenize([seq]))[0, 32], dim=-1)
        masked_ids = tokenize([seq])
        masked_ids[0, 32] = VOCAB["[MASK]"]
        masked = torch.log_softmax(model.mlm_logits(masked_ids)[0, 32], dim=-1)
    assert scores.llr_fwd[0] == pytest.approx(float(logits[VOCAB[w.alt[0]]] - logits[VOCAB[w.ref[0]]]), abs=1e-5)
    assert scores.llr.tolist() == pytest.approx(((scores.llr_fwd + scores.llr_rc) / 2).tolist())
    if name == "ps":  # the RC-equivariant head: the masked forward LLR is the masked mean
        assert scores.llr_masked[0] == pytest.approx(float(masked[VOCAB[w.alt[0]]] - masked[VOCAB[w.ref[0]]]), abs=1e-5)
    assert not np.allclose(scores.llr, scores.llr_masked)


class CountingModel(torch.nn.Module):
    """Wraps a model and records the first token of every sequence that goes through the MLM head."""

    def __init__(self, model):
        super().__init__()
        self.model, self.is_rcps, self.calls = model, model.is_rcps, []

    def mlm_logits(self, ids):
        self.calls.append(ids.clone())
        return self.model.mlm_logits(ids)


def test_ps_skips_the_reverse_complement_pass_and_ph_runs_it():
    from caduceus_vep.model import reverse_complement_ids

    w = windows()
    with Genome(FASTA) as genome:
        seqs = tokenize([genome.fetch("chr1", int(r.context_start), int(r.context_end)) for r in w.itertuples()][:3])
    rc = reverse_complement_ids(seqs)
    for name, expect_rc in (("ps", False), ("ph", True)):
        counting = CountingModel(load_caduceus(CKPT / f"caduceus-{name}-tiny"))
        scores = llr(w, counting)
        saw_rc = any(torch.equal(ids[:, :5], rc[:, :5]) for ids in counting.calls if ids.shape == rc.shape)
        assert saw_rc == expect_rc, name
        # unmasked + masked, times two strands for Ph, per batch of 3 (4 windows -> 2 batches)
        assert len(counting.calls) == 2 * (4 if expect_rc else 2)
        if not expect_rc:  # PS: exact equivariance makes the skipped pass's value the forward one
            full = llr(w, counting.model, rc_pass=True)
            assert np.allclose(full.llr_rc, scores.llr_fwd, atol=1e-5)


def test_embedding_distances_hand_worked():
    m = {"ref_fwd": np.array([[1.0, 0.0]]), "ref_rc": np.array([[1.0, 0.0]]),
         "alt_fwd": np.array([[0.0, 1.0]]), "alt_rc": np.array([[0.0, 3.0]])}
    d = zero_shot.embedding_distances(pd.Series(["v"]), m)  # ref (1, 0), alt (0, 2)
    assert d.l2[0] == pytest.approx(np.sqrt(5)) and d.cosine[0] == pytest.approx(1.0)


def test_zero_shot_auroc_sign_convention():
    rows = pd.DataFrame({"variant_id": ["a", "b", "c", "d"], "label": [1, 1, 0, 0], "split": "test", "tissue": "T",
                         "distance_to_nearest_TSS": 10})
    scores = pd.DataFrame({"variant_id": ["a", "b", "c", "d"], "llr": [-3.0, -2.0, 1.0, 2.0], "llr_masked": [2.0, 1.0, 0.0, -1.0],
                           "l2": [4.0, 3.0, 2.0, 1.0],
                           "cosine": [0.1, 0.2, 0.3, 0.4]})
    table = zero_shot.zero_shot_auroc(rows, scores, model="m", bootstrap=0).set_index(["protocol", "bucket"])
    assert table.loc[("zero_shot_llr", "0-30kb"), "auroc"] == 1.0  # low LLR = causal
    assert table.loc[("zero_shot_llr_masked", "0-30kb"), "auroc"] == 0.0
    assert table.loc[("zero_shot_l2", "0-30kb"), "auroc"] == 1.0  # large distance = causal
    assert table.loc[("zero_shot_cosine", "0-30kb"), "auroc"] == 0.0
    assert np.isnan(table.loc[("zero_shot_l2", ">100kb"), "auroc"])
