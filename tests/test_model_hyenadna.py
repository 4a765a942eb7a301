"""HyenaDNA: random weights in the released layout against an independent re-implementation, round
trips, strict key matching and the character tokenizer."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from caduceus_vep.model import CheckpointError
from caduceus_vep.model.hyenadna import (
    HyenaDNA,
    HyenaDNAConfig,
    build_hyenadna,
    load_hyenadna,
    pooling_indices,
    save_hyenadna,
    snp_token_index,
    tiny_config,
    tokenize,
    variant_token_index,
    write_tiny_checkpoint,
)

P = "hyena.backbone."


def reference_hidden(w: dict[str, torch.Tensor], config: dict, ids: torch.Tensor) -> torch.Tensor:
    """Last hidden state written straight from the HyenaDNA equations, in float64, from the raw file.

    Direct (Toeplitz) long convolution instead of FFTs, explicit short convolution, GELU(tanh) and
    LayerNorm by formula, and the sine frequency read from the one name the file stores it under.
    """
    w = {k: v.to(torch.float64) for k, v in w.items()}

    def ln(x, name, eps):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name, bias=True):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if bias else y

    d = config["d_model"]
    h = w[P + "embeddings.word_embeddings.weight"][ids]
    length = ids.shape[1]
    for i in range(config["n_layer"]):
        q = f"{P}layers.{i}."
        f = q + "mixer.filter_fn."
        u = lin(ln(h, q + "norm1", 1e-5), q + "mixer.in_proj")  # [B, L, 3D]
        kern, kb = w[q + "mixer.short_filter.weight"][:, 0], w[q + "mixer.short_filter.bias"]  # [3D, K]
        ksize = kern.shape[1]
        padded = torch.nn.functional.pad(u, (0, 0, 2, 0))  # two zeros before position 0
        uc = sum(kern[:, j] * padded[:, j:j + length] for j in range(ksize)) + kb  # (padding 2, first L outputs)
        x0, x1, v = uc[..., :d], uc[..., d:2 * d], uc[..., 2 * d:]
        z, t = w[f + "pos_emb.z"][0, :length], w[f + "pos_emb.t"][0, :length]
        freq = w[f + "implicit_filter.1.freq"]
        a = torch.sin(freq * lin(z, f + "implicit_filter.0"))
        for j in range(2, 2 + 2 * config["num_inner_mlps"], 2):
            a = torch.sin(freq * lin(a, f + f"implicit_filter.{j}"))
        k = lin(a, f + f"implicit_filter.{2 + 2 * config['num_inner_mlps']}", bias=False)  # [L, D]
        k = k * (torch.exp(-t * w[f + "modulation.deltas"][0, 0].abs()) + 0.05)
        lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]  # t - s
        toeplitz = torch.where((lag >= 0)[..., None], k[lag.clamp(min=0)], torch.zeros(()))  # [t, s, D]
        gated = v * x1
        y = torch.einsum("tsd,bsd->btd", toeplitz, gated) + gated * w[f + "bias"]
        h = h + lin(y * x0, q + "mixer.out_proj")
        m = lin(ln(h, q + "norm2", 1e-5), q + "mlp.fc1")
        m = 0.5 * m * (1 + torch.tanh(math.sqrt(2 / math.pi) * (m + 0.044715 * m ** 3)))
        h = h + lin(m, q + "mlp.fc2")
    return ln(h, P + "ln_f", config["layer_norm_epsilon"])


IDS = torch.tensor([[7, 8, 9, 10, 11, 7, 7, 10, 9, 8, 6, 7, 10, 10, 8, 9, 7, 11, 8, 10, 9, 7, 8, 9, 10],
                    [10, 9, 8, 7, 7, 7, 8, 8, 9, 9, 10, 10, 11, 7, 8, 9, 10, 7, 9, 8, 10, 7, 8, 8, 8]])


def test_released_layout_matches_independent_reference(tmp_path):
    # Random values in every stored tensor, positional buffers included: a loader that recomputed
    # z, t or deltas from the formula, or left a sine frequency untied, would not match.
    model = build_hyenadna(tiny_config(max_seq_len=64), seed=3, random_buffers=True)
    save_hyenadna(model, tmp_path, tied="once")
    raw = load_file(tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    expected = reference_hidden(raw, config, IDS)
    assert expected.abs().max() > 0.5  # a real signal, not an all-zero comparison
    # Same maths: in float64 the two agree to rounding (measured 5e-15).
    with torch.no_grad():
        exact = load_hyenadna(tmp_path, dtype=torch.float64)(IDS)
    assert (exact - expected).abs().max().item() < 1e-10
    # The float32 model, as run: the sine MLP (frequency ~10) amplifies rounding (measured 9e-5).
    loaded = load_hyenadna(tmp_path)
    with torch.no_grad():
        ours = loaded(IDS)
    assert ours.dtype == torch.float32
    assert (ours.double() - expected).abs().max().item() < 5e-4
    # The LM head is the stored matrix applied to that hidden state.
    with torch.no_grad():
        logits = loaded.lm_logits(IDS)
    assert torch.allclose(logits.double(), expected @ raw["lm_head.weight"].double().T, atol=1e-4)


def test_freq_stored_once_is_retied_and_buffers_are_loaded(tmp_path):
    model = build_hyenadna(tiny_config(max_seq_len=64), seed=4, random_buffers=True)
    save_hyenadna(model, tmp_path, tied="once")
    keys = set(load_file(tmp_path / "model.safetensors"))
    f = P + "layers.1.mixer.filter_fn."
    assert f + "implicit_filter.1.freq" in keys
    assert f + "implicit_filter.3.freq" not in keys and f + "implicit_filter.5.freq" not in keys
    assert {f + "pos_emb.z", f + "pos_emb.t", f + "modulation.deltas"} <= keys
    loaded = load_hyenadna(tmp_path)
    seq = loaded.hyena.backbone.layers[1].mixer.filter_fn.implicit_filter
    assert seq[1].freq is seq[3].freq is seq[5].freq
    stored = load_file(tmp_path / "model.safetensors")
    buffers = dict(loaded.named_buffers())
    for name in ("pos_emb.z", "pos_emb.t", "modulation.deltas"):
        assert torch.equal(buffers[f + name], stored[f + name])
    fresh = HyenaDNA(loaded.config)  # what the formula would give
    assert not torch.equal(buffers[f + "pos_emb.z"], dict(fresh.named_buffers())[f + "pos_emb.z"])


@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
@pytest.mark.parametrize("tied", ["once", "both"])
def test_round_trip_gives_identical_outputs(tmp_path, weights_format, tied):
    model = build_hyenadna(tiny_config(max_seq_len=64), seed=5)
    save_hyenadna(model, tmp_path, weights_format=weights_format, tied=tied)
    loaded = load_hyenadna(tmp_path)
    assert not loaded.training and loaded.has_lm_head
    with torch.no_grad():
        assert torch.equal(loaded(IDS), model(IDS))
        assert torch.equal(loaded.lm_logits(IDS), model.lm_logits(IDS))
    assert loaded.config.to_dict() == {**model.config.to_dict(), "architectures": ["HyenaDNAForCausalLM"],
                                       "torch_dtype": "float32"}
    assert loaded.provenance["weights_file"] == ("model.safetensors" if weights_format == "safetensors" else "pytorch_model.bin")
    assert len(loaded.provenance["weights_sha256"]) == 64
    # Saving the loaded model again writes the same tensors under the same names.
    again = tmp_path / "again"
    save_hyenadna(loaded, again, weights_format=weights_format, tied=tied)
    reader = load_file if weights_format == "safetensors" else (lambda p: torch.load(p, weights_only=True))
    first, second = reader(tmp_path / loaded.provenance["weights_file"]), reader(again / loaded.provenance["weights_file"])
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_tied_lm_head_when_config_asks(tmp_path):
    config = tiny_config(max_seq_len=32)
    config.extra["tie_word_embeddings"] = True
    model = build_hyenadna(config, seed=6)
    assert model.lm_head.weight is model.hyena.backbone.embeddings.word_embeddings.weight
    save_hyenadna(model, tmp_path, tied="once")
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = load_hyenadna(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded.lm_logits(IDS[:, :20]), model.lm_logits(IDS[:, :20]))


def _write(tmp_path, state, config):
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))


def test_disagreeing_files_list_expected_and_found_keys(tmp_path):
    model = build_hyenadna(tiny_config(max_seq_len=32), seed=7)
    save_hyenadna(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())

    missing = dict(state)
    del missing[P + "layers.0.mixer.filter_fn.pos_emb.z"]
    missing[P + "layers.0.mixer.filter_fn.pos_emb.zz"] = state[P + "layers.0.mixer.filter_fn.pos_emb.z"]
    _write(tmp_path, missing, config)
    with pytest.raises(CheckpointError) as err:
        load_hyenadna(tmp_path)
    text = str(err.value)
    assert "missing keys: ['hyena.backbone.layers.0.mixer.filter_fn.pos_emb.z']" in text
    assert "unexpected keys: ['hyena.backbone.layers.0.mixer.filter_fn.pos_emb.zz']" in text
    assert f"{len(state)} found" in text

    wrong = dict(state)
    wrong[P + "layers.1.mlp.fc1.weight"] = torch.zeros(3, 3)
    _write(tmp_path, wrong, config)
    with pytest.raises(CheckpointError, match=r"layers.1.mlp.fc1.weight: file \(3, 3\) vs model \(32, 16\)"):
        load_hyenadna(tmp_path)

    no_freq = {k: v for k, v in state.items() if not k.endswith("filter_fn.implicit_filter.1.freq")}
    _write(tmp_path, no_freq, config)
    with pytest.raises(CheckpointError, match=r"implicit_filter.1.freq / .*implicit_filter.3.freq / .*implicit_filter.5.freq"):
        load_hyenadna(tmp_path)

    split = dict(state)
    split[P + "layers.0.mixer.filter_fn.implicit_filter.3.freq"] = state[P + "layers.0.mixer.filter_fn.implicit_filter.1.freq"] + 1
    _write(tmp_path, split, config)
    with pytest.raises(CheckpointError, match="tied tensors"):
        load_hyenadna(tmp_path)

    longer = dict(config, max_seq_len=40)  # the stored z/t no longer fit the config
    _write(tmp_path, state, longer)
    with pytest.raises(CheckpointError, match=r"pos_emb.z: file \(1, 32, 5\) vs model \(1, 40, 5\)"):
        load_hyenadna(tmp_path)


def test_unsafe_pickle_and_unsupported_config_are_refused(tmp_path):
    model = build_hyenadna(tiny_config(max_seq_len=32), seed=8)
    save_hyenadna(model, tmp_path, weights_format="bin")
    torch.save({"weights": model.state_dict(), "note": object.__new__(HyenaDNAConfig)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="plain tensor pickle"):
        load_hyenadna(tmp_path)
    with pytest.raises(ValueError, match="hyena_order"):
        HyenaDNAConfig.from_dict({**tiny_config().to_dict(), "hyena_order": 3})
    with pytest.raises(ValueError, match="model_type"):
        HyenaDNAConfig.from_dict({"model_type": "caduceus"})


def test_sequence_longer_than_max_seq_len_is_an_error():
    model = build_hyenadna(tiny_config(max_seq_len=16), seed=9)
    with pytest.raises(ValueError, match="max_seq_len=16"):
        model(torch.full((1, 17), 7))


def test_released_config_gives_the_published_parameter_count():
    # medium-160k: d_model 256, 8 layers, d_inner 1024, emb_dim 5, filter_order 64 -> 6.55M
    # parameters (the stored positional tensors are buffers; max_seq_len is shrunk to save memory).
    config = HyenaDNAConfig(d_model=256, n_layer=8, d_inner=1024, vocab_size=12, emb_dim=5, filter_order=64,
                            activation_freq=10, max_seq_len=8, extra={"tie_word_embeddings": False})
    model = HyenaDNA(config)
    assert sum(p.numel() for p in model.parameters()) == 6_554_624


def test_tiny_checkpoint_is_small_and_loads(tmp_path):
    path = write_tiny_checkpoint(tmp_path, seed=1)
    assert path.stat().st_size < 1_000_000
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "hyenadna" and config["architectures"] == ["HyenaDNAForCausalLM"]
    assert "NOT PRETRAINED" in config["_comment"]
    model = load_hyenadna(tmp_path)
    other = tmp_path / "other"
    write_tiny_checkpoint(other, seed=2)
    with torch.no_grad():
        a, b = model(IDS), load_hyenadna(other)(IDS)
    assert a.shape == (2, IDS.shape[1], 16) and not torch.allclose(a, b)


def test_tokenizer_hand_worked():
    # One token per base, no special tokens; released ids A=7 C=8 G=9 T=10 N=11, unknown -> 6.
    assert tokenize(["ACGTN", "acgtn", "AXG-T"]).tolist() == [[7, 8, 9, 10, 11], [7, 8, 9, 10, 11], [7, 6, 9, 6, 10]]
    assert tokenize(["A" * 131_072]).shape == (1, 131_072)
    assert snp_token_index(131_072) == 65_536
    window = pooling_indices(65_536, 131_072)
    assert window.numel() == 1_537 and window[0] == 64_768 and window[-1] == 66_304
    clamped = pooling_indices(3, 10, half_window=5)  # runs off both ends: edge tokens repeat
    assert clamped.tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]


def test_variant_index_follows_the_script_rule():
    ref = tokenize(["ACGTACGTAC"])[0]
    alt = ref.clone()
    alt[5] = 10
    assert variant_token_index(ref, alt) == 5  # len//2 differs: taken
    alt2 = ref.clone()
    alt2[2], alt2[7] = 10, 7
    assert variant_token_index(ref, alt2) == 7  # agree at 5: last differing position
    assert variant_token_index(ref, ref) == -1
