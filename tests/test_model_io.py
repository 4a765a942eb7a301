"""Saving and loading in the released Hugging Face layout; refusal of bad checkpoints."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from caduceus_vep.model import (
    CaduceusConfig,
    CheckpointError,
    build_caduceus,
    load_caduceus,
    save_caduceus,
)


def small_config(rcps: bool) -> CaduceusConfig:
    return CaduceusConfig.from_dict({
        "d_model": 16, "n_layer": 2, "vocab_size": 16, "rcps": rcps, "residual_in_fp32": False,
        "ssm_cfg": {"d_state": 4, "d_conv": 4, "expand": 2, "dt_rank": "auto"},
    })


IDS = torch.tensor([[7, 8, 9, 10, 11, 7, 7, 10, 9, 8, 6, 7]])


@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
@pytest.mark.parametrize("tied", ["once", "both"])
@pytest.mark.parametrize("masked_lm", [True, False])
def test_round_trip_gives_identical_outputs(tmp_path, rcps, weights_format, tied, masked_lm):
    model = build_caduceus(small_config(rcps), seed=7)
    save_caduceus(model, tmp_path, weights_format=weights_format, tied=tied, masked_lm=masked_lm)
    loaded = load_caduceus(tmp_path)
    assert not loaded.training
    assert loaded.has_lm_head == masked_lm
    with torch.no_grad():
        assert torch.equal(loaded(IDS), model(IDS))
        if masked_lm:
            assert torch.equal(loaded.mlm_logits(IDS), model.mlm_logits(IDS))
    # Tying survives loading: the reverse direction still shares the forward projections.
    mixer = loaded.backbone.layers[1].mixer
    bim = mixer.submodule if rcps else mixer
    assert bim.mamba_rev.in_proj.weight is bim.mamba_fwd.in_proj.weight
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())

    prov = loaded.provenance
    weights_name = "model.safetensors" if weights_format == "safetensors" else "pytorch_model.bin"
    assert prov["weights_file"] == weights_name
    assert prov["resolved_path"] == str(tmp_path.resolve())
    assert prov["revision"] is None and prov["name_or_path"] == str(tmp_path)
    assert len(prov["weights_sha256"]) == 64
    assert prov["config"]["rcps"] is rcps


def test_saved_layout_matches_released_names(tmp_path):
    model = build_caduceus(small_config(rcps=True), seed=8)
    save_caduceus(model, tmp_path, tied="once")
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert "caduceus.backbone.embeddings.word_embeddings.embedding.weight" in keys
    assert "caduceus.backbone.embeddings.word_embeddings.complement_map" in keys
    assert "caduceus.backbone.layers.0.mixer.submodule.mamba_fwd.in_proj.weight" in keys
    assert "caduceus.backbone.layers.0.mixer.submodule.mamba_rev.in_proj.weight" not in keys
    assert "caduceus.backbone.layers.0.mixer.submodule.mamba_rev.A_log" in keys
    assert "caduceus.backbone.norm_f.weight" in keys
    assert "lm_head.complement_map" in keys and "lm_head.lm_head.weight" not in keys
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["CaduceusForMaskedLM"]
    assert config["complement_map"]["7"] == 10 and config["ssm_cfg"]["dt_rank"] == "auto"

    save_caduceus(model, tmp_path, tied="both")
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert "caduceus.backbone.layers.0.mixer.submodule.mamba_rev.in_proj.weight" in keys
    assert "lm_head.lm_head.weight" in keys


def test_either_name_of_a_tied_pair_is_accepted(tmp_path):
    model = build_caduceus(small_config(rcps=False), seed=9)
    save_caduceus(model, tmp_path, tied="both")
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    # Keep the LM-head and reverse-direction names, drop the forward/embedding ones.
    del state["caduceus.backbone.embeddings.word_embeddings.weight"]
    del state["caduceus.backbone.layers.0.mixer.mamba_fwd.in_proj.weight"]
    save_file(state, path)
    loaded = load_caduceus(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(IDS), model(IDS))


def test_checkpoint_without_prefix_loads(tmp_path):
    model = build_caduceus(small_config(rcps=True), seed=10)
    save_caduceus(model, tmp_path, masked_lm=False)
    state = load_file(tmp_path / "model.safetensors")
    assert all(k.startswith("backbone.") for k in state)
    assert load_caduceus(tmp_path).has_lm_head is False


def test_missing_key_is_named(tmp_path):
    save_caduceus(build_caduceus(small_config(rcps=True), seed=11), tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    del state["caduceus.backbone.layers.1.mixer.submodule.mamba_rev.dt_proj.bias"]
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys.*layers\.1\.mixer\.submodule\.mamba_rev\.dt_proj\.bias"):
        load_caduceus(tmp_path)


def test_missing_tied_pair_is_named(tmp_path):
    save_caduceus(build_caduceus(small_config(rcps=False), seed=12), tmp_path, tied="once")
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    del state["caduceus.backbone.layers.0.mixer.mamba_fwd.out_proj.weight"]
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"mamba_fwd\.out_proj\.weight / .*mamba_rev\.out_proj\.weight"):
        load_caduceus(tmp_path)


def test_unexpected_key_is_named(tmp_path):
    save_caduceus(build_caduceus(small_config(rcps=False), seed=13), tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    state["caduceus.backbone.layers.0.mixer.mamba_fwd.extra.weight"] = torch.zeros(2)
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*mamba_fwd\.extra\.weight"):
        load_caduceus(tmp_path)


def test_shape_mismatch_is_reported(tmp_path):
    save_caduceus(build_caduceus(small_config(rcps=False), seed=14), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["ssm_cfg"]["d_state"] = 8
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_caduceus(tmp_path)


def test_inconsistent_complement_map_is_refused(tmp_path):
    save_caduceus(build_caduceus(small_config(rcps=True), seed=15), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["complement_map"]["7"], config["complement_map"]["10"] = 7, 10  # A and T self-complementary
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="complement_map"):
        load_caduceus(tmp_path)


class _Payload:
    """Unpickling this object runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    good = tmp_path / "good"
    save_caduceus(build_caduceus(small_config(rcps=False), seed=16), good, weights_format="bin")
    state = torch.load(good / "pytorch_model.bin", weights_only=True)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((good / "config.json").read_text())
    marker = tmp_path / "pwned"
    state["caduceus.backbone.norm_f.weight"] = _Payload(marker)
    torch.save(state, bad / "pytorch_model.bin")

    with pytest.raises(CheckpointError, match="refusing"):
        load_caduceus(bad)
    assert not marker.exists()

    # Control: the payload is real, an unrestricted unpickler would have run it.
    torch.load(bad / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_safetensors_preferred_over_bin(tmp_path):
    model = build_caduceus(small_config(rcps=False), seed=17)
    save_caduceus(model, tmp_path, weights_format="bin")
    save_caduceus(model, tmp_path, weights_format="safetensors")
    assert not (tmp_path / "pytorch_model.bin").exists()  # stale other format removed
    assert load_caduceus(tmp_path).provenance["weights_file"] == "model.safetensors"


def test_load_to_dtype(tmp_path):
    save_caduceus(build_caduceus(small_config(rcps=True), seed=18), tmp_path)
    model = load_caduceus(tmp_path, dtype=torch.float64)
    assert model.backbone.norm_f.weight.dtype == torch.float64
    assert model.backbone.embeddings.word_embeddings.complement_map.dtype == torch.long
    assert model(IDS).dtype == torch.float64


def test_bad_locations(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_caduceus(tmp_path / "does" / "not" / "exist")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        (tmp_path / "config.json").write_text(json.dumps(small_config(True).to_dict()))
        load_caduceus(tmp_path)
    with pytest.raises(ValueError, match="revision"):
        load_caduceus(tmp_path, revision="main")


def test_hub_ids_go_through_snapshot_download(tmp_path, monkeypatch):
    folder = tmp_path / "snapshots" / ("a" * 40)
    save_caduceus(build_caduceus(small_config(rcps=True), seed=19), folder)
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns, kwargs))
        return str(folder)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = load_caduceus("kuleshov-group/caduceus-ps_tiny", revision="main")
    (repo_id, revision, patterns, kwargs), = calls
    assert repo_id == "kuleshov-group/caduceus-ps_tiny" and revision == "main" and kwargs == {}
    assert "config.json" in patterns and "*.safetensors" in patterns and not any(p.endswith(".py") for p in patterns)
    assert model.provenance["revision"] == "a" * 40
    assert model.provenance["name_or_path"] == "kuleshov-group/caduceus-ps_tiny"
