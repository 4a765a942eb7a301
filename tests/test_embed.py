import numpy as np
import pandas as pd
import pytest
import torch

from caduceus_vep.demo import tiny_config
from caduceus_vep.embed import EmbedSettings, embed_windows, pooled_features, read_embeddings, resolve_device, write_embeddings
from caduceus_vep.genome import Genome
from caduceus_vep.model import CaduceusConfig, build_caduceus, reverse_complement_ids, tokenize
from caduceus_vep.windows import WindowSpec, build_windows


@pytest.fixture(scope="module", params=[True, False], ids=["ps", "ph"])
def model(request):
    return build_caduceus(CaduceusConfig.from_dict(tiny_config(rcps=request.param)), seed=3).eval()


def windows_for(fasta, seqs, spec, positions):
    rows = pd.DataFrame([{"variant_id": f"chr1:{p}", "chrom": "chr1", "pos": p, "ref": seqs["chr1"][p - 1],
                          "alt": "A" if seqs["chr1"][p - 1] != "A" else "C", "source_line": i} for i, p in enumerate(positions)])
    with Genome(fasta) as genome:
        result = build_windows(rows, genome, spec)
    assert result.skipped.empty
    return result.windows


def test_features_shapes_batches_and_alt_differs(small_genome, model):
    fasta, seqs = small_genome
    spec = WindowSpec(context_length=64, pooling_window=16)
    windows = windows_for(fasta, seqs, spec, [500, 900, 1_300])
    with Genome(fasta) as genome, torch.inference_mode():
        one = embed_windows(windows, genome, model, EmbedSettings(cpu_batch_size=1))
        calls: list[int] = []
        three = embed_windows(windows, genome, model, EmbedSettings(batch_size=1, cpu_batch_size=2), progress=calls.append)
    assert calls == [2, 1]  # on the CPU the CPU batch size counts, not the GPU's batch_size
    d = model.config.d_model
    for column in ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc"):
        a, b = np.stack(one[column]), np.stack(three[column])
        assert a.shape == (3, d)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # batching does not change results
    assert not np.allclose(np.stack(one["ref_fwd"]), np.stack(one["alt_fwd"]))


def test_pooled_features_by_hand(model):
    ids = tokenize(["ACGTTGCAAC", "TTTTACGGCA"])
    with torch.inference_mode():
        fwd, rc = pooled_features(model, ids, (2, 7))
        hidden = model(ids)
        if model.is_rcps:
            d = hidden.shape[-1] // 2
            expected_fwd = hidden[:, 2:7, :d].mean(1)
            expected_rc = hidden[..., d:].flip(1, 2)[:, 2:7].mean(1)  # the paper script's flip
        else:
            expected_fwd = hidden[:, 2:7].mean(1)
            expected_rc = model(reverse_complement_ids(ids)).flip(1)[:, 2:7].mean(1)
    torch.testing.assert_close(fwd, expected_fwd)
    torch.testing.assert_close(rc, expected_rc)


def test_rc_features_are_strand_symmetric(model):
    """Pooled over the whole sequence, the RC view of x is the forward view of rc(x)."""
    ids = tokenize(["ACGTTGCAACGT"])
    with torch.inference_mode():
        fwd_x, rc_x = pooled_features(model, ids, (0, 12))
        fwd_rc, rc_rc = pooled_features(model, reverse_complement_ids(ids), (0, 12))
    torch.testing.assert_close(rc_x, fwd_rc, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fwd_x, rc_rc, rtol=1e-4, atol=1e-5)


def test_parquet_round_trip(tmp_path):
    frame = pd.DataFrame({"variant_id": ["a", "b"]})
    for column in ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc"):
        frame[column] = list(np.arange(6, dtype=np.float32).reshape(2, 3) + len(column))
    write_embeddings(frame, tmp_path / "f.parquet", {"model": {"name": "x"}})
    ids, matrices, meta = read_embeddings(tmp_path / "f.parquet")
    assert ids["variant_id"].tolist() == ["a", "b"]
    np.testing.assert_array_equal(matrices["alt_rc"], np.stack(frame["alt_rc"]))
    assert meta == {"model": {"name": "x"}}


def test_cuda_requested_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_batch_size_is_chosen_per_device():
    settings = EmbedSettings(batch_size=16, cpu_batch_size=2)
    assert settings.batch_for(torch.device("cpu")) == 2 and settings.batch_for(torch.device("cuda", 1)) == 16
    with pytest.raises(ValueError):
        EmbedSettings(cpu_batch_size=0)


def test_settings_validation():
    with pytest.raises(ValueError, match="batch_size"):
        EmbedSettings(batch_size=0)
    with pytest.raises(ValueError, match="autocast_dtype"):
        EmbedSettings(autocast_dtype="int8")
