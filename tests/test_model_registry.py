"""The model interface (caduceus_vep.model.registry): registry, each family's mapping of the SNP and the
clamped pooling window onto its tokens, the embed stage through it, per-model contexts, zero-shot heads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from test_embed import windows_for

from caduceus_vep import shards, stages, zero_shot
from caduceus_vep.embed import EmbedSettings, centred_rows, context_sequences, embed_windows, pooled_features
from caduceus_vep.embed_cache import cache_key
from caduceus_vep.genome import Genome
from caduceus_vep.model.checkpoint_io import CheckpointError
from caduceus_vep.model.registry import (
    as_loaded,
    clamped_indices,
    families,
    get_family,
    infer_architecture,
    load_model,
    resolve_family,
    reverse_complement,
)
from caduceus_vep.modelspec import resolve_model_entries, run_context_length
from caduceus_vep.windows import WindowSpec

CKPT = REPO / "resources/demo/checkpoints"


# ---------------------------------------------------------------------------------------- registry


def test_registry_knows_the_families_and_infers_them_from_config_json(tmp_path):
    assert {"caduceus", "hyenadna", "ntv2"} <= set(families())
    for folder, name in (("caduceus-ps-tiny", "caduceus"), ("caduceus-ph-tiny", "caduceus"), ("hyenadna-tiny", "hyenadna"),
                         ("ntv2-tiny", "ntv2")):
        assert infer_architecture(CKPT / folder) == name
        assert resolve_family(None, CKPT / folder).name == name
    assert resolve_family("ntv2", CKPT / "caduceus-ps-tiny").name == "ntv2"  # an explicit architecture wins
    with pytest.raises(ValueError, match="unknown model architecture 'gpt'"):
        get_family("gpt")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type 'llama'.*models\\[\\].architecture"):
        infer_architecture(odd)
    with pytest.raises(ValueError, match="architecture is not set"):
        resolve_family(None, None)


def test_each_family_declares_the_interface():
    expect = {"caduceus": ("mlm", 131_072, 1), "hyenadna": ("causal_lm", 131_072, 1), "ntv2": ("mlm", 12_288, 6)}
    for name, (head, context, bp) in expect.items():
        family = get_family(name)
        assert (family.zero_shot, family.paper_context, family.bp_per_position) == (head, context, bp)
        assert family.resources.batch_size >= 1 and family.resources.gpu_mem_gb_per_sequence > 0
        assert family.describe()["architecture"] == name
    # The paper's pooling windows for 1,536 bp: 1,537 tokens for one token per base, 257 6-mer tokens.
    assert get_family("caduceus").pool_half_window(1536) == 768
    assert get_family("hyenadna").pool_half_window(1536) == 768
    assert get_family("ntv2").pool_half_window(1536) == 128


def test_loaders_refuse_a_checkpoint_with_unexpected_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    for name in ("hyenadna-tiny", "ntv2-tiny"):
        folder = tmp_path / name
        shutil.copytree(CKPT / name, folder)
        state = load_file(folder / "model.safetensors")
        state["surprise.weight"] = torch.zeros(2)
        save_file(state, folder / "model.safetensors")
        with pytest.raises(CheckpointError, match="unexpected keys.*surprise.weight"):
            load_model({"path": str(folder)})


# ---------------------------------------------------------------------------------------- token mapping


def test_clamped_window_hand_worked():
    # SNP token 3 of 6 tokens, 4 each side: 3 + [-4..4] = [-1, 0, ..., 7] clamped to [0, 5].
    assert clamped_indices(torch.tensor([3]), 6, 4).tolist() == [[0, 0, 1, 2, 3, 4, 5, 5, 5]]
    # The demo: a 1,536 bp context, SNP token 768, 768 each side: tokens 0..1535 once, 1535 twice.
    idx = clamped_indices(torch.tensor([768]), 1536, 768)[0]
    assert len(idx) == 1537 and idx[0] == 0 and idx[-2:].tolist() == [1535, 1535]
    assert torch.bincount(idx).tolist() == [1] * 1535 + [2]
    # The paper: 131,072 bp, SNP 65,536: nothing to clamp.
    assert clamped_indices(torch.tensor([65_536]), 131_072, 768)[0].tolist() == list(range(65_536 - 768, 65_536 + 769))


@pytest.mark.parametrize("name", ["caduceus", "hyenadna"])
def test_one_token_per_base_families_put_the_snp_at_l_over_2(name):
    family = get_family(name)
    ref = "ACGTACGTTGCA"
    alt = ref[:6] + "A" + ref[7:]  # SNP at string index L/2 = 6
    r, a = family.tokenize([ref]), family.tokenize([alt])
    assert r.shape == (1, 12)
    assert family.snp_positions(r, a, 12).tolist() == [6]
    # On the reverse complement the SNP is the mirrored base L-1-6 = 5: the script's search finds it
    # (ref and alt agree at len//2 = 6, the last differing position is 5).
    rr, ra = family.tokenize([reverse_complement(ref)]), family.tokenize([reverse_complement(alt)])
    assert family.snp_positions(rr, ra, 12).tolist() == [5]


def test_ntv2_six_mer_rule_with_ns_and_leftovers():
    from caduceus_vep.model.ntv2 import VOCAB, decode

    family = get_family("ntv2")
    bases = "ACGTTGCAAGCTTACGGATCCGTA"  # 24 bp, the SNP at index 12
    assert len(bases) == 24
    # No N: 4 tokens of 6 bases, the SNP (index 12) is the first base of token 2 = len//2.
    ref = bases
    alt = ref[:12] + ("A" if ref[12] != "A" else "C") + ref[13:]
    r, a = family.tokenize([ref]), family.tokenize([alt])
    assert decode(r[0].tolist()) == ["ACGTTG", "CAAGCT", "TACGGA", "TCCGTA"]
    assert family.snp_positions(r, a, r.shape[1]).tolist() == [2]
    # Two N's in front: N, N, then 6-mers of bases 2..7 and 8..13, then 6-mers/leftovers cut off
    # (truncated to ceil(24/6) = 4 tokens). The SNP (index 12) is in token 3; len//2 = 2 agrees
    # between ref and alt, so the search takes the last differing token, 3.
    ref_n = "NN" + bases[2:]
    alt_n = ref_n[:12] + ("A" if ref_n[12] != "A" else "C") + ref_n[13:]
    r, a = family.tokenize([ref_n]), family.tokenize([alt_n])
    assert decode(r[0].tolist()) == ["N", "N", ref_n[2:8], ref_n[8:14]]
    assert family.snp_positions(r, a, 4).tolist() == [3]
    assert clamped_indices(torch.tensor([3]), 4, 2)[0].tolist() == [1, 2, 3, 3, 3]
    # An N at index 20: the segment before it (20 bases) gives three 6-mers and two single-base
    # leftovers, then the N and three more singles; truncated to 4 tokens. The SNP is in token 2.
    ref_l = bases[:20] + "N" + bases[21:]
    alt_l = ref_l[:12] + ("A" if ref_l[12] != "A" else "C") + ref_l[13:]
    r, a = family.tokenize([ref_l]), family.tokenize([alt_l])
    assert decode(family.tokenize([ref_l])[0].tolist()) == [bases[0:6], bases[6:12], bases[12:18], bases[18]]
    from caduceus_vep.model.ntv2 import encode

    assert decode(encode(ref_l)) == [bases[0:6], bases[6:12], bases[12:18], bases[18], bases[19], "N", *bases[21:]]
    assert family.snp_positions(r, a, 4).tolist() == [2]
    # The SNP pushed out of the truncated tokens entirely: ref and alt never differ -> -1 (the script's value).
    ref_far = "N" * 10 + bases[10:]
    alt_far = ref_far[:12] + ("A" if ref_far[12] != "A" else "C") + ref_far[13:]
    r, a = family.tokenize([ref_far]), family.tokenize([alt_far])
    assert decode(r[0].tolist()) == ["N"] * 4
    assert family.snp_positions(r, a, 4).tolist() == [-1]
    assert VOCAB["<mask>"] == family.mask_token_id == 2


# ---------------------------------------------------------------------------------------- pooled features


@pytest.fixture(scope="module", params=["caduceus-ps-tiny", "caduceus-ph-tiny"])
def caduceus(request):
    return load_model({"path": str(CKPT / request.param)})


def test_caduceus_features_equal_the_old_pooling_except_the_clamped_edge(caduceus, small_genome):
    """Before the interface the demo pooled tokens [0, L) once each; now the clamped list counts the
    last token twice. Everything else (PS second-half flip, Ph RC pass) is unchanged."""
    fasta, seqs = small_genome
    spec = WindowSpec(context_length=64, pooling_window=64)  # like the demo's 1,536 / 1,536
    windows = windows_for(fasta, seqs, spec, [500, 900, 1_300])
    module = caduceus.module
    with Genome(fasta) as genome, torch.inference_mode():
        new = embed_windows(windows, genome, caduceus, EmbedSettings(batch_size=2))
        refs, alts = context_sequences(windows, genome)
        ids = caduceus.family.tokenize(refs + alts)
        hidden = module(ids)
        old_fwd, old_rc = pooled_features(module, ids, (0, 64))  # the old embedding stage's call
    idx = list(range(64)) + [63]  # clamp(32 + arange(-32, 33), 0, 63)
    if module.is_rcps:
        d = hidden.shape[-1] // 2
        fwd_h, rc_h = hidden[..., :d], hidden[..., d:].flip(1, 2)
    else:
        fwd_h = hidden
        rc_h = module(caduceus.family.tokenize([reverse_complement(s) for s in refs + alts])).flip(1)
    expected_fwd, expected_rc = fwd_h[:, idx].mean(1), rc_h[:, idx].mean(1)
    got_fwd = torch.tensor(np.stack([*new.ref_fwd, *new.alt_fwd]))
    got_rc = torch.tensor(np.stack([*new.ref_rc, *new.alt_rc]))
    torch.testing.assert_close(got_fwd, expected_fwd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_rc, expected_rc, rtol=1e-5, atol=1e-6)
    # The documented change, and only it: new = (64 * old + last token) / 65.
    torch.testing.assert_close(got_fwd, (64 * old_fwd + fwd_h[:, 63]) / 65, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_rc, (64 * old_rc + rc_h[:, 63]) / 65, rtol=1e-5, atol=1e-6)


def test_unclamped_windows_give_exactly_the_old_features(caduceus, small_genome):
    fasta, seqs = small_genome
    windows = windows_for(fasta, seqs, WindowSpec(context_length=64, pooling_window=16), [700, 1_100])
    with Genome(fasta) as genome, torch.inference_mode():
        new = embed_windows(windows, genome, caduceus, EmbedSettings(batch_size=4))
        refs, alts = context_sequences(windows, genome)
        old_fwd, old_rc = pooled_features(caduceus.module, caduceus.family.tokenize(refs + alts), (24, 41))
    torch.testing.assert_close(torch.tensor(np.stack([*new.ref_fwd, *new.alt_fwd])), old_fwd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(np.stack([*new.ref_rc, *new.alt_rc])), old_rc, rtol=1e-5, atol=1e-6)


def test_forward_only_families_pool_their_own_tokens_and_copy_forward_into_rc(small_genome):
    fasta, seqs = small_genome
    windows = windows_for(fasta, seqs, WindowSpec(context_length=48, pooling_window=36), [600, 1_500])
    for name, half in (("hyenadna-tiny", 18), ("ntv2-tiny", 3)):
        loaded = load_model({"path": str(CKPT / name)})
        family = loaded.family
        mode = family.rc_mode(loaded.module, "forward")
        assert mode == "none"
        with Genome(fasta) as genome, torch.inference_mode():
            out = embed_windows(windows, genome, loaded, EmbedSettings(batch_size=2), rc_mode=mode)
            refs, alts = context_sequences(windows, genome)
            r, a = family.tokenize(refs), family.tokenize(alts)
            hidden = loaded.module(torch.cat([r, a]))
        n_tokens = hidden.shape[1]
        assert n_tokens == (48 if name.startswith("hyena") else 8)
        snp = family.snp_positions(r, a, n_tokens)
        assert family.pool_half_window(36) == half
        for k in range(2):
            idx = [min(max(int(snp[k]) + j, 0), n_tokens - 1) for j in range(-half, half + 1)]
            np.testing.assert_allclose(out.ref_fwd[k], hidden[k, idx].mean(0).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out.alt_fwd[k], hidden[2 + k, idx].mean(0).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.stack(out.ref_rc), np.stack(out.ref_fwd))
        np.testing.assert_array_equal(np.stack(out.alt_rc), np.stack(out.alt_fwd))


def test_rc_pass_of_a_baseline_pools_the_reverse_complement_around_its_own_snp(small_genome):
    fasta, seqs = small_genome
    windows = windows_for(fasta, seqs, WindowSpec(context_length=48, pooling_window=12), [800])
    loaded = load_model({"path": str(CKPT / "hyenadna-tiny")})
    with Genome(fasta) as genome, torch.inference_mode():
        out = embed_windows(windows, genome, loaded, EmbedSettings(batch_size=1), rc_mode="rc_pass")
        refs, _ = context_sequences(windows, genome)
        rc_hidden = loaded.module(loaded.family.tokenize([reverse_complement(refs[0])]))
    np.testing.assert_allclose(out.ref_rc[0], rc_hidden[0, 23 - 6:23 + 7].mean(0).numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------- per-model context


def test_a_model_context_is_a_centred_slice_of_the_windows_context(small_genome):
    fasta, seqs = small_genome
    windows = windows_for(fasta, seqs, WindowSpec(context_length=64, pooling_window=16), [500, 901])
    cut = centred_rows(windows, 24)
    assert (cut.context_end - cut.context_start == 24).all()
    with Genome(fasta) as genome:
        refs, alts = context_sequences(windows, genome, 24)
    for k, pos in enumerate([500, 901]):
        i = pos - 1
        assert refs[k] == seqs["chr1"][i - 12:i + 12]  # chrom[i - L/2 : i + L/2]
        assert refs[k][12] == windows.ref.iloc[k] and alts[k][12] == windows.alt.iloc[k]
    with pytest.raises(ValueError, match="exceeds the windows' context 64"):
        centred_rows(windows, 128)
    # The model's own context gives the features of windows built at that context.
    loaded = load_model({"path": str(CKPT / "caduceus-ph-tiny")})
    small = windows_for(fasta, seqs, WindowSpec(context_length=24, pooling_window=16), [500, 901])
    with Genome(fasta) as genome, torch.inference_mode():
        a = embed_windows(windows, genome, loaded, EmbedSettings(batch_size=2), context_length=24, pooling_window=16)
        b = embed_windows(small, genome, loaded, EmbedSettings(batch_size=2))
    np.testing.assert_allclose(np.stack(a.ref_fwd), np.stack(b.ref_fwd), rtol=1e-5, atol=1e-6)


def test_windows_use_the_largest_context_of_the_run():
    config = {"windows": {"context_length": 1536}, "models": [{"name": "a"}, {"name": "b", "context_length": 1152},
                                                              {"name": "c", "context_length": 3072}]}
    assert [m["context_length"] for m in resolve_model_entries(config)] == [1536, 1152, 3072]
    assert run_context_length(config) == 3072
    config["models"] = [{"name": "b", "context_length": 1152}]
    assert run_context_length(config) == 1152


def test_shard_job_embeds_a_baseline_at_its_own_context_and_records_it(small_genome, tmp_path):
    fasta, seqs = small_genome
    windows = windows_for(fasta, seqs, WindowSpec(context_length=64, pooling_window=24), [500, 900, 1_300])
    path = tmp_path / "windows.parquet"
    windows.to_parquet(path, index=False)
    spec = {"name": "nt", "path": str(CKPT / "ntv2-tiny"), "rc_rule": "forward", "context_length": 48}
    job = shards.ShardJob(shard=0, shards=1, checkpoint_every=2, work_dir=tmp_path / "work", cache_dir=tmp_path / "cache")
    summary = shards.run_shard(path, fasta, spec, EmbedSettings(batch_size=2), job, tmp_path / "out.parquet")
    assert (summary["architecture"], summary["context_length"], summary["rc_features"]) == ("ntv2", 48, "none")
    assert summary["pool_half_window"] == 2 and summary["cache"]["architecture"] == "ntv2"
    block, _ = shards.read_block(tmp_path / "out.parquet")
    loaded = load_model(spec)
    with Genome(fasta) as genome, torch.inference_mode():
        direct = embed_windows(windows, genome, loaded, EmbedSettings(batch_size=3), context_length=48, pooling_window=24,
                               rc_mode="none")
    np.testing.assert_allclose(block.matrices["ref_fwd"], np.stack(direct.ref_fwd), rtol=1e-5, atol=1e-6)


def test_cache_key_changes_with_the_family_and_the_format():
    prov = {"weights_sha256": "a" * 64, "config": {}}
    base = cache_key(prov, 1536, (-768, 768), "none", "cpu", "float32")
    assert base[1]["format"] == 3 and base[1]["pooling"] == "clamped_mean"
    assert base[0] != cache_key(prov, 1536, (-768, 768), "none", "cpu", "float32", architecture="hyenadna")[0]
    assert base[0] != cache_key(prov, 1536, (-768, 768), "none", "cpu", "float32", pooling_window=1536)[0]


# ---------------------------------------------------------------------------------------- zero-shot


def _windows_table(n=3, length=48):
    fasta = REPO / "resources/demo/genome.fa"
    with Genome(fasta) as genome:
        starts = [5_000 + 997 * i for i in range(n)]
        refs = [genome.fetch("chr1", s, s + length)[length // 2].upper() for s in starts]
    alts = [{"A": "C", "C": "G", "G": "T", "T": "A"}[r] for r in refs]
    return fasta, pd.DataFrame({"variant_id": [f"v{i}" for i in range(n)], "contig": "chr1", "context_start": starts,
                                "context_end": [s + length for s in starts], "ref": refs, "alt": alts})


def test_hyenadna_llr_is_the_next_token_log_prob_ratio_at_the_snp():
    from caduceus_vep.model.hyenadna import VOCAB

    fasta, w = _windows_table()
    loaded = load_model({"path": str(CKPT / "hyenadna-tiny")})
    with Genome(fasta) as genome:
        scores = zero_shot.llr_scores(w, genome, loaded, batch_size=2, autocast_dtype="float32")
        seq = genome.fetch("chr1", int(w.context_start[0]), int(w.context_end[0]))
    with torch.inference_mode():
        logp = torch.log_softmax(loaded.module.lm_logits(loaded.family.tokenize([seq]))[0, 23], dim=-1)  # predicts token 24
        rc = reverse_complement(seq)
        logp_rc = torch.log_softmax(loaded.module.lm_logits(loaded.family.tokenize([rc]))[0, 22], dim=-1)  # predicts 23
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    assert scores.llr_fwd[0] == pytest.approx(float(logp[VOCAB[w.alt[0]]] - logp[VOCAB[w.ref[0]]]), abs=1e-5)
    assert scores.llr_rc[0] == pytest.approx(float(logp_rc[VOCAB[comp[w.alt[0]]]] - logp_rc[VOCAB[comp[w.ref[0]]]]), abs=1e-5)
    assert scores.llr_masked.tolist() == scores.llr.tolist()  # causal: the SNP never conditions its own prediction


def test_ntv2_llr_compares_the_snps_six_mers_at_its_token():
    from caduceus_vep.model.ntv2 import VOCAB

    fasta, w = _windows_table()
    loaded = load_model({"path": str(CKPT / "ntv2-tiny")})
    with Genome(fasta) as genome:
        scores = zero_shot.llr_scores(w, genome, loaded, batch_size=3, autocast_dtype="float32", rc_pass=False)
        seq = genome.fetch("chr1", int(w.context_start[0]), int(w.context_end[0]))
    ids = loaded.family.tokenize([seq])  # 48 bp -> 8 tokens; SNP index 24 = first base of token 4
    ref_kmer, alt_kmer = seq[24:30], w.alt[0] + seq[25:30]
    assert ids[0, 4] == VOCAB[ref_kmer]
    with torch.inference_mode():
        logp = torch.log_softmax(loaded.module.mlm_logits(ids)[0, 4], dim=-1)
        masked = ids.clone()
        masked[0, 4] = VOCAB["<mask>"]
        logp_m = torch.log_softmax(loaded.module.mlm_logits(masked)[0, 4], dim=-1)
    assert scores.llr_fwd[0] == pytest.approx(float(logp[VOCAB[alt_kmer]] - logp[VOCAB[ref_kmer]]), abs=1e-5)
    assert scores.llr_masked[0] == pytest.approx(float(logp_m[VOCAB[alt_kmer]] - logp_m[VOCAB[ref_kmer]]), abs=1e-5)


def test_bare_modules_are_wrapped_with_their_family():
    from caduceus_vep.model import load_caduceus
    from caduceus_vep.model.ntv2 import load_ntv2

    assert as_loaded(load_caduceus(CKPT / "caduceus-ps-tiny")).family.name == "caduceus"
    assert as_loaded(load_ntv2(CKPT / "ntv2-tiny")).family.name == "ntv2"


def test_fetch_model_stage_checks_baselines_with_their_own_config(tmp_path):
    for name, arch in (("hyenadna-tiny", "hyenadna"), ("ntv2-tiny", "ntv2")):
        out = tmp_path / f"{name}.json"
        record = stages.fetch_model_stage(model={"name": "m", "path": str(CKPT / name), "rc_rule": "forward"}, cache_dir=None,
                                          out_record=out)
        assert record["architecture"] == arch and len(record["weights_sha256"]) == 64
    broken = tmp_path / "broken"
    shutil.copytree(CKPT / "hyenadna-tiny", broken)
    cfg = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**cfg, "hyena_order": 3}))
    with pytest.raises(ValueError, match="hyena_order"):
        stages.fetch_model_stage(model={"name": "m", "path": str(broken), "rc_rule": "forward"}, cache_dir=None,
                                 out_record=tmp_path / "b.json")


# ---------------------------------------------------------------------------------------- Enformer (optional extra)


def test_enformer_family_pools_13_bins_around_the_centre_and_has_no_llr(small_genome, tmp_path):
    pytest.importorskip("enformer_pytorch")
    from caduceus_vep.model.enformer import pooled_features as enformer_pooled
    from caduceus_vep.model.enformer import write_tiny_checkpoint

    folder = tmp_path / "enformer-tiny"
    write_tiny_checkpoint(folder, seed=3, target_length=8)  # 1,536 bp -> 12 bins, the central 8 kept
    assert infer_architecture(folder) == "enformer"
    loaded = load_model({"path": str(folder)}, context_length=1536)
    family = loaded.family
    assert (family.zero_shot, family.pool_half_window(1536), family.paper_context) == (None, 6, 196_608)
    with pytest.raises(ValueError):
        family.check_context(loaded.module, 1000)  # not a multiple of the 128 bp bin
    # 8 bins, centre bin 4, 4 + [-6..6] clamped to 0..7: bins 0 (3x), 1, 2, 3, 4, 5, 6, 7 (5x).
    assert clamped_indices(torch.tensor([4]), 8, 6)[0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    fasta, seqs = small_genome
    windows = windows_for(fasta, seqs, WindowSpec(context_length=1536, pooling_window=1536), [1_200, 2_500])
    with Genome(fasta) as genome, torch.inference_mode():
        out = embed_windows(windows, genome, loaded, EmbedSettings(batch_size=2), rc_mode="none")
        refs, alts = context_sequences(windows, genome)
        hidden = family.forward(loaded.module, family.tokenize(refs + alts))
        scores = zero_shot.llr_scores(windows, genome, loaded, batch_size=2, autocast_dtype="float32")
    assert hidden.shape[1] == 8
    idx = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    np.testing.assert_allclose(np.stack(out.ref_fwd), hidden[:2, idx].mean(1).numpy(), rtol=1e-5, atol=1e-6)
    # The same numbers as the Enformer module's own pooled features (its pooling_bins).
    np.testing.assert_allclose(np.stack(out.alt_fwd), enformer_pooled(loaded.module, alts), rtol=1e-5, atol=1e-6)
    assert scores[["llr", "llr_masked"]].isna().all().all()


def test_demo_baseline_checkpoints_are_small_labelled_and_load_strictly():
    for name, family in (("hyenadna-tiny", "hyenadna"), ("ntv2-tiny", "ntv2")):
        folder = CKPT / name
        assert "NOT PRETRAINED" in (folder / "README.md").read_text()
        assert "NOT PRETRAINED" in json.loads((folder / "config.json").read_text())["_comment"]
        assert (folder / "model.safetensors").stat().st_size < 600_000
        loaded = load_model({"path": str(folder)}, context_length=1536)
        assert loaded.family.name == family and len(loaded.provenance["weights_sha256"]) == 64
