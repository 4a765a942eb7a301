"""NT-v2: random weights in the released ESM layout against an independent re-implementation (and
transformers' EsmModel with the SwiGLU feed-forward swapped in, when transformers is installed),
round trips, strict key matching, and the 6-mer tokenizer on hand-worked examples."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from caduceus_vep.model import CheckpointError
from caduceus_vep.model.ntv2 import (
    VOCAB,
    NTv2Config,
    NucleotideTransformerV2,
    build_ntv2,
    decode,
    encode,
    load_ntv2,
    pooling_indices,
    save_ntv2,
    tiny_config,
    tokenize,
    variant_token_index,
    write_tiny_checkpoint,
)


def small_config(**overrides) -> NTv2Config:
    """Hidden 24, 3 heads of 8, SwiGLU 40 wide, a 64-token vocabulary slice (ids beyond are unused here)."""
    values = {"hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 40,
              "vocab_size": 64, "max_position_embeddings": 66, "extra": {"tie_word_embeddings": True}}
    values.update(overrides)
    return NTv2Config(**values)


def reference_hidden(w: dict[str, torch.Tensor], config: dict, ids: torch.Tensor) -> torch.Tensor:
    """Encoder output written from the NT-v2 equations in float64, from the raw file tensors.

    Explicit per-pair rotary rotation (dimension j paired with j + d/2), softmax attention by
    formula, SwiGLU as silu(first half) * second half, LayerNorm by formula.
    """
    w = {k: v.to(torch.float64) for k, v in w.items()}
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    d = config["hidden_size"] // heads

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    def rotate(x, inv_freq):  # x [B, L, heads, d]
        angle = torch.arange(x.shape[1], dtype=torch.float64)[:, None] * inv_freq[None, :]  # [L, d/2]
        c, s = torch.cos(angle)[None, :, None], torch.sin(angle)[None, :, None]
        a, b = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([a * c - b * s, b * c + a * s], dim=-1)

    h = w["esm.embeddings.word_embeddings.weight"][ids]
    b, length, _ = h.shape
    for i in range(config["num_hidden_layers"]):
        q = f"esm.encoder.layer.{i}."
        inv_freq = w.get(q + "attention.self.rotary_embeddings.inv_freq",
                         1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        x = ln(h, q + "attention.LayerNorm")
        qh = rotate(lin(x, q + "attention.self.query").view(b, length, heads, d), inv_freq)
        kh = rotate(lin(x, q + "attention.self.key").view(b, length, heads, d), inv_freq)
        vh = lin(x, q + "attention.self.value").view(b, length, heads, d)
        scores = torch.einsum("bihd,bjhd->bhij", qh, kh) / math.sqrt(d)
        probs = torch.exp(scores - scores.amax(-1, keepdim=True))
        probs = probs / probs.sum(-1, keepdim=True)
        ctx = torch.einsum("bhij,bjhd->bihd", probs, vh).reshape(b, length, heads * d)
        h = h + lin(ctx, q + "attention.output.dense")
        gate_value = lin(ln(h, q + "LayerNorm"), q + "intermediate.dense")
        gate, value = gate_value[..., : config["intermediate_size"]], gate_value[..., config["intermediate_size"]:]
        h = h + lin(gate / (1 + torch.exp(-gate)) * value, q + "output.dense")
    return ln(h, "esm.encoder.emb_layer_norm_after")


def reference_logits(w: dict[str, torch.Tensor], config: dict, hidden: torch.Tensor) -> torch.Tensor:
    w = {k: v.to(torch.float64) for k, v in w.items()}
    x = hidden @ w["lm_head.dense.weight"].T + w["lm_head.dense.bias"]
    x = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    x = (x - mu) / torch.sqrt(var + config["layer_norm_eps"]) * w["lm_head.layer_norm.weight"] + w["lm_head.layer_norm.bias"]
    decoder = w.get("lm_head.decoder.weight", w["esm.embeddings.word_embeddings.weight"])
    return x @ decoder.T + w["lm_head.bias"]


IDS = torch.randint(0, 64, (2, 37), generator=torch.Generator().manual_seed(0))


def test_released_layout_matches_independent_reference(tmp_path):
    model = build_ntv2(small_config(), seed=1)
    with torch.no_grad():  # stored inv_freq differing from the formula: the loader must use the file's
        for layer in model.esm.encoder.layer:
            layer.attention.self.rotary_embeddings.inv_freq.mul_(1.5)
    save_ntv2(model, tmp_path, tied="once", unused_keys=True)
    raw = load_file(tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    expected = reference_hidden(raw, config, IDS)
    assert expected.abs().max() > 0.5
    with torch.no_grad():
        exact = load_ntv2(tmp_path, dtype=torch.float64)(IDS)
    assert (exact - expected).abs().max().item() < 1e-10  # same maths (measured ~1e-15)
    loaded = load_ntv2(tmp_path)
    with torch.no_grad():
        ours, logits = loaded(IDS), loaded.mlm_logits(IDS)
    assert (ours.double() - expected).abs().max().item() < 2e-5
    assert (logits.double() - reference_logits(raw, config, expected)).abs().max().item() < 1e-4
    assert loaded.provenance["inv_freq_from_file"] is True
    assert loaded.provenance["ignored_keys"] == ["esm.contact_head.regression.bias", "esm.contact_head.regression.weight",
                                                 "esm.embeddings.position_embeddings.weight", "esm.embeddings.position_ids"]
    assert "NC" in loaded.provenance["licence"]


def test_matches_transformers_esm_with_swiglu(tmp_path):
    transformers = pytest.importorskip("transformers")
    from torch import nn

    model = build_ntv2(small_config(), seed=2)
    save_ntv2(model, tmp_path)
    raw = load_file(tmp_path / "model.safetensors")
    cfg = model.config
    hf_config = transformers.EsmConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        layer_norm_eps=cfg.layer_norm_eps, max_position_embeddings=cfg.max_position_embeddings,
        position_embedding_type="rotary", token_dropout=False, emb_layer_norm_before=False, pad_token_id=1,
        mask_token_id=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, tie_word_embeddings=True)
    hf = transformers.EsmForMaskedLM(hf_config).eval()

    class SwiGLU(nn.Module):  # the one part native ESM lacks: bias-free SwiGLU in place of Linear+GELU
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)

        def forward(self, x):
            a, b = self.dense(x).split(cfg.intermediate_size, dim=-1)
            return nn.functional.silu(a) * b

    for layer in hf.esm.encoder.layer:
        layer.intermediate = SwiGLU()
        layer.output.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
    result = hf.load_state_dict(raw, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {"lm_head.decoder.weight", "esm.contact_head.regression.weight", "esm.contact_head.regression.bias"}
    hf.lm_head.decoder.weight = hf.esm.embeddings.word_embeddings.weight
    loaded = load_ntv2(tmp_path)
    with torch.no_grad():
        theirs = hf.esm(input_ids=IDS).last_hidden_state
        ours = loaded(IDS)
        assert (ours - theirs).abs().max().item() < 2e-5
        assert (loaded.mlm_logits(IDS) - hf(input_ids=IDS).logits).abs().max().item() < 1e-4


@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
@pytest.mark.parametrize("tied", ["once", "both"])
def test_round_trip_gives_identical_outputs(tmp_path, weights_format, tied):
    model = build_ntv2(small_config(), seed=3)
    save_ntv2(model, tmp_path, weights_format=weights_format, tied=tied)
    loaded = load_ntv2(tmp_path)
    assert not loaded.training and loaded.has_lm_head
    assert loaded.lm_head.decoder.weight is loaded.esm.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert torch.equal(loaded(IDS), model(IDS))
        assert torch.equal(loaded.mlm_logits(IDS), model.mlm_logits(IDS))
    assert loaded.provenance["ignored_keys"] == []
    again = tmp_path / "again"
    save_ntv2(loaded, again, weights_format=weights_format, tied=tied)
    reader = load_file if weights_format == "safetensors" else (lambda p: torch.load(p, weights_only=True))
    name = loaded.provenance["weights_file"]
    first, second = reader(tmp_path / name), reader(again / name)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_untied_decoder_biases_and_no_inv_freq(tmp_path):
    config = small_config(add_bias_fnn=True, emb_layer_norm_before=True, extra={"tie_word_embeddings": False})
    model = build_ntv2(config, seed=4)
    save_ntv2(model, tmp_path, inv_freq=False)
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert "lm_head.decoder.weight" in keys and "esm.encoder.layer.0.intermediate.dense.bias" in keys
    assert "esm.embeddings.layer_norm.weight" in keys
    loaded = load_ntv2(tmp_path)
    assert loaded.provenance["inv_freq_from_file"] is False
    with torch.no_grad():
        assert torch.equal(loaded(IDS), model(IDS))
    raw = load_file(tmp_path / "model.safetensors")
    cfg = json.loads((tmp_path / "config.json").read_text())
    w = dict(raw)  # the reference with the embedding LayerNorm applied first
    emb = w["esm.embeddings.word_embeddings.weight"].double()
    mu, var = emb.mean(-1, keepdim=True), emb.var(-1, unbiased=False, keepdim=True)
    w["esm.embeddings.word_embeddings.weight"] = ((emb - mu) / torch.sqrt(var + cfg["layer_norm_eps"])
                                                   * w["esm.embeddings.layer_norm.weight"] + w["esm.embeddings.layer_norm.bias"])
    with torch.no_grad():  # 1e-6, not 1e-10: the formula inv_freq is fp32 in the model (as in the port), fp64 here
        assert (load_ntv2(tmp_path, dtype=torch.float64)(IDS) - reference_hidden(w, cfg, IDS)).abs().max() < 1e-6


def test_sharded_bare_encoder_file(tmp_path):
    model = build_ntv2(small_config(), seed=5, lm_head=False)
    save_ntv2(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    bare = {k.removeprefix("esm."): v for k, v in state.items()}
    names = sorted(bare)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: bare[k] for k in keys}, str(tmp_path / shard))
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = load_ntv2(tmp_path)
    assert not loaded.has_lm_head and len(loaded.provenance["weights_file"]) == 2
    with torch.no_grad():
        assert torch.equal(loaded(IDS), model(IDS))


def _write(tmp_path, state, config):
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))


def test_disagreeing_files_list_expected_and_found_keys(tmp_path):
    model = build_ntv2(small_config(), seed=6)
    save_ntv2(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())

    renamed = dict(state)
    renamed["esm.encoder.layer.1.intermediate.dense.weightx"] = renamed.pop("esm.encoder.layer.1.intermediate.dense.weight")
    _write(tmp_path, renamed, config)
    with pytest.raises(CheckpointError) as err:
        load_ntv2(tmp_path)
    assert "missing keys: ['esm.encoder.layer.1.intermediate.dense.weight']" in str(err.value)
    assert "unexpected keys: ['esm.encoder.layer.1.intermediate.dense.weightx']" in str(err.value)
    assert f"{len(state)} found" in str(err.value)

    # A GELU-style FFN of native ESM: [intermediate, hidden] with a bias, where SwiGLU wants [2*intermediate, hidden].
    gelu = dict(state)
    gelu["esm.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(40, 24)
    gelu["esm.encoder.layer.0.intermediate.dense.bias"] = torch.zeros(40)
    _write(tmp_path, gelu, config)
    with pytest.raises(CheckpointError, match=r"intermediate.dense.weight: file \(40, 24\) vs model \(80, 24\)") as err:
        load_ntv2(tmp_path)
    assert "unexpected keys: ['esm.encoder.layer.0.intermediate.dense.bias']" in str(err.value)

    bad_unused = dict(state, **{"esm.embeddings.position_embeddings.weight": torch.zeros(3, 24)})
    _write(tmp_path, bad_unused, config)
    with pytest.raises(CheckpointError, match=r"position_embeddings.weight: file \(3, 24\) vs expected \(66, 24\)"):
        load_ntv2(tmp_path)

    partial_inv = {k: v for k, v in state.items() if k != "esm.encoder.layer.1.attention.self.rotary_embeddings.inv_freq"}
    _write(tmp_path, partial_inv, config)
    with pytest.raises(CheckpointError, match="inv_freq stored for some layers only"):
        load_ntv2(tmp_path)

    differing = dict(state, **{"lm_head.decoder.weight": state["esm.embeddings.word_embeddings.weight"] + 1})
    _write(tmp_path, differing, config)  # config says tied, file disagrees: refuse rather than pick one
    with pytest.raises(CheckpointError, match="tied tensors"):
        load_ntv2(tmp_path)

    torch.save({"w": object.__new__(NTv2Config)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="plain tensor pickle"):
        load_ntv2(tmp_path)


def test_unsupported_configs_are_refused():
    with pytest.raises(ValueError, match="position_embedding_type"):
        NTv2Config.from_dict({"position_embedding_type": "absolute"})
    with pytest.raises(ValueError, match="token_dropout"):
        NTv2Config.from_dict({"token_dropout": True})
    with pytest.raises(ValueError, match="num_attention_heads"):
        NTv2Config(hidden_size=30, num_attention_heads=4)


def test_released_config_structure():
    # 500M multi-species: the encoder alone has 490,984,448 parameters (29 layers of 16.9M + the
    # 4,107 x 1,024 embedding). Counted on a meta device: no memory is allocated.
    with torch.device("meta"):
        model = NucleotideTransformerV2(NTv2Config(), lm_head=False)
    assert sum(p.numel() for p in model.parameters()) == 490_984_448
    assert model.esm.encoder.layer[0].intermediate.dense.weight.shape == (8192, 1024)
    assert model.esm.encoder.layer[0].output.dense.weight.shape == (1024, 4096)
    assert model.esm.encoder.layer[0].intermediate.dense.bias is None


def test_tiny_checkpoint_is_small_and_loads(tmp_path):
    path = write_tiny_checkpoint(tmp_path, seed=1)
    assert path.stat().st_size < 1_000_000
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["EsmForMaskedLM"] and config["vocab_size"] == 4107
    assert "NOT PRETRAINED" in config["_comment"]
    model = load_ntv2(tmp_path)
    ids = tokenize(["ACGTTGCA" * 48])  # 384 bp -> 64 tokens
    with torch.no_grad():
        a = model(ids)
        b = load_ntv2(tmp_path)(ids)
        c = build_ntv2(tiny_config(), seed=2)(ids)
    assert a.shape == (1, 64, 16) and torch.equal(a, b) and not torch.allclose(a, c)


def test_vocabulary_order():
    assert len(VOCAB) == 4107
    assert [VOCAB[t] for t in ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")] == [0, 1, 2, 3, 4, 5]
    assert VOCAB["AAAAAA"] == 6 and VOCAB["AAAAAT"] == 7 and VOCAB["AAAAAC"] == 8 and VOCAB["AAAATA"] == 10
    assert VOCAB["GGGGGG"] == 4101
    assert [VOCAB[b] for b in "ATCGN"] == [4102, 4103, 4104, 4105, 4106]


def test_tokenizer_hand_worked():
    # 6-mer id = 6 + sum(code * 4^(5-j)) with A=0 T=1 C=2 G=3.
    # ATCGAA = 256 + 128 + 48 = 432 -> 438; TGGCGA = 1024 + 768 + 192 + 32 + 12 = 2028 -> 2034.
    assert encode("ATCGAATGGCGATGCAC") == [438, 2034, 4103, 4105, 4104, 4102, 4104]  # 17 bp: 2 6-mers + 5 leftovers
    # N splits: ATCGAA, leftover T, N, GGCGAT (3072+768+128+48+1 = 4017 -> 4023), leftovers GCAC, trailing N.
    assert decode(encode("ATCGAATNGGCGATGCACN")) == ["ATCGAA", "T", "N", "GGCGAT", "G", "C", "A", "C", "N"]
    assert encode("ATCGAATNGGCGATGCACN") == [438, 4103, 4106, 4023, 4105, 4104, 4102, 4104, 4106]
    # Leading N's, ACGTAC = 512 + 192 + 16 + 2 = 722 -> 728, odd length leftover.
    assert encode("NNACGTACGTA") == [4106, 4106, 728, 4105, 4103, 4102]
    assert encode("ACGTACG") == [728, 4105]
    assert encode("NN") == [4106, 4106] and encode("") == [] and encode("AC") == [4102, 4104]
    assert encode("ACNGT") == [4102, 4104, 4106, 4105, 4103]
    assert encode("AAAAAAAAAAAAN") == [6, 6, 4106]
    with pytest.raises(ValueError, match=r"\['a', 'x'\]"):
        encode("ACGTxa")


def test_paper_context_tokens_snp_and_window():
    ref = "ACGTTG" * 2_048  # 12,288 bp, no N: exactly 2,048 tokens, SNP (bp 6,144) starts token 1,024
    alt = ref[:6_144] + "C" + ref[6_145:]
    ids = tokenize([ref, alt])
    assert ids.shape == (2, 2_048)
    assert (ids[0] != ids[1]).nonzero().flatten().tolist() == [1_024]
    assert decode([ids[1, 1_024].item()]) == ["CCGTTG"]
    snp = variant_token_index(ids[0], ids[1])
    assert snp == 1_024
    window = pooling_indices(snp, 2_048)
    assert window.numel() == 257 and window[0] == 896 and window[-1] == 1_152


def test_n_shifts_the_frame_truncation_and_index_search():
    # Two leading N's: 2 + 2047 6-mers + 4 leftovers = 2,053 tokens, truncated to 2,048 (3' end cut).
    ref = "NN" + "A" * 12_286
    assert len(encode(ref)) == 2_053 and len(encode(ref, max_tokens=2_048)) == 2_048
    alt = ref[:6_144] + "G" + ref[6_145:]
    ids = tokenize([ref, alt])
    assert ids.shape == (2, 2_048) and decode(ids[0, :3].tolist()) == ["N", "N", "AAAAAA"]
    # bp 6,144 is base 6,142 of the segment -> 6-mer 1,023 of it -> token 1,025; token 1,024 agrees,
    # so the script's search takes the last differing token.
    assert (ids[0] != ids[1]).nonzero().flatten().tolist() == [1_025]
    assert variant_token_index(ids[0], ids[1]) == 1_025
    # A SNP in the cut 3' end leaves no differing token: -1, as the script returns.
    tail = ref[:-2] + "C" + ref[-1]
    cut = tokenize([ref, tail])
    assert variant_token_index(cut[0], cut[1]) == -1
    assert pooling_indices(-1, 2_048, half_window=2).tolist() == [0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="different lengths"):
        tokenize(["ACGTAC", "ACGTACG"], max_tokens=None)
