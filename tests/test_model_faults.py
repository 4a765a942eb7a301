"""Hostile and broken checkpoints, and Hub models on a machine without internet: one clear message each."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_model_io import small_config

from caduceus_vep.model import build_caduceus, save_caduceus
from caduceus_vep.model.loading import (
    CheckpointError,
    ModelUnavailableError,
    fetch_checkpoint,
    load_caduceus,
)
from caduceus_vep.provenance import sha256_file

pytestmark = pytest.mark.timeout(120)

REPO = "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    save_caduceus(build_caduceus(small_config(rcps=True), seed=3), folder)
    return folder


# --------------------------------------------------------------------------- config.json


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"d_model": 16, "n_layer": 2,', r"is not valid JSON: .* at line 1, column"),
    (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
    (b"[1, 2, 3]", "holds a JSON list, not an object"),
])
def test_unreadable_config_names_the_file(checkpoint, content, expected):
    (checkpoint / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_caduceus(checkpoint)
    assert str(checkpoint / "config.json") in str(info.value)


def test_absurd_config_is_refused_at_once_naming_file_and_key(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "d_model": 10**7, "n_layer": 10**5, "vocab_size": 10**8}))
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="'d_model' = 10000000") as info:
        load_caduceus(checkpoint)
    assert time.perf_counter() - started < 2.0
    assert str(checkpoint / "config.json") in str(info.value)


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(checkpoint, bad):
    path = checkpoint / "model.safetensors"
    state = load_file(str(path))
    name = next(k for k in state if k.endswith("dt_proj.bias"))
    state[name][3] = bad
    save_file(state, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="non-finite") as info:
        load_caduceus(checkpoint)
    assert name in str(info.value) and "1 of" in str(info.value) and str(path) in str(info.value)


def test_non_finite_weights_in_a_bin_file_are_refused(tmp_path):
    folder = tmp_path / "bin"
    save_caduceus(build_caduceus(small_config(rcps=False), seed=4), folder, weights_format="bin")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    name = next(iter(k for k, v in state.items() if v.is_floating_point()))
    state[name].view(-1)[0] = float("nan")
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=f"non-finite .* {name}"):
        load_caduceus(folder)


def test_truncated_weights_name_the_file(checkpoint):
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read the weights file") as info:
        load_caduceus(checkpoint)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- fetch_checkpoint


def test_fetch_checkpoint_validates_a_local_folder(checkpoint):
    record = fetch_checkpoint(str(checkpoint), None)
    assert record == {"source": str(checkpoint), "revision": None, "resolved_commit": None,
                      "local_path": str(checkpoint.resolve()), "weights_file": "model.safetensors",
                      "weights_sha256": sha256_file(checkpoint / "model.safetensors")}
    json.dumps(record)  # JSON-able
    model = load_caduceus(record["local_path"])
    assert model.provenance["weights_sha256"] == record["weights_sha256"]
    with pytest.raises(ValueError, match="revision"):
        fetch_checkpoint(str(checkpoint), "main")


def test_fetch_checkpoint_refuses_a_broken_local_folder(checkpoint):
    (checkpoint / "config.json").write_text("not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        fetch_checkpoint(str(checkpoint), None)
    (checkpoint / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        fetch_checkpoint(str(checkpoint), None)


@pytest.mark.parametrize("weights_format", ["safetensors", "bin"])
def test_fetch_checkpoint_downloads_only_what_the_loader_reads(tmp_path, monkeypatch, weights_format):
    commit = "b" * 40
    full = tmp_path / "hub" / "snapshots" / commit  # what the repository holds
    save_caduceus(build_caduceus(small_config(rcps=True), seed=6), full, weights_format=weights_format)
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, cache_dir=None):
        calls.append((repo_id, revision, list(allow_patterns), cache_dir))
        return str(full)  # a real snapshot holds only the allowed files that exist; the loader checks which

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    record = fetch_checkpoint("kuleshov-group/caduceus-ps_tiny", "main", cache_dir=str(tmp_path / "cache"))
    assert calls[0] == ("kuleshov-group/caduceus-ps_tiny", "main", ["config.json", "model.safetensors"], str(tmp_path / "cache"))
    if weights_format == "bin":
        assert calls[1][2] == ["config.json", "pytorch_model.bin"]
    assert len(calls) == (1 if weights_format == "safetensors" else 2)
    assert record["resolved_commit"] == commit and record["local_path"] == str(full) and record["revision"] == "main"
    assert record["weights_file"] == ("model.safetensors" if weights_format == "safetensors" else "pytorch_model.bin")
    # A compute job loads the local path and still records the commit it came from.
    assert load_caduceus(record["local_path"]).provenance["revision"] == commit


# --------------------------------------------------------------------------- no internet, no cached copy


def _assert_one_clear_message(text: str, revision: str = "main") -> None:
    assert REPO in text and f"revision {revision}" in text
    assert f"huggingface-cli download {REPO} --revision {revision}" in text and "hf download" in text
    assert "HF_HUB_OFFLINE=1" in text and "models[].path" in text


@pytest.mark.parametrize("call", ["load", "fetch"])
def test_offline_without_cache_is_one_clear_error(tmp_path, monkeypatch, call):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import time; the env var is tested below
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelUnavailableError) as info:
        if call == "load":
            load_caduceus(REPO, revision="main")
        else:
            fetch_checkpoint(REPO, "main")
    _assert_one_clear_message(str(info.value))
    assert "HF_HUB_OFFLINE is set" in str(info.value) and str(tmp_path / "empty-cache") in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained tracebacks


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize("situation", ["HF_HUB_OFFLINE=1", "unreachable"])
def test_a_real_process_prints_one_traceback_and_the_remedy(tmp_path, situation):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf-home")
    if situation == "HF_HUB_OFFLINE=1":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"  # nothing listens: like no internet
    code = f"from caduceus_vep.model.loading import load_caduceus; load_caduceus({REPO!r}, revision='v1.0')"
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1 and "During handling" not in result.stderr, result.stderr
    assert "ModelUnavailableError" in result.stderr
    _assert_one_clear_message(result.stderr, revision="v1.0")
    if situation == "unreachable":
        assert "the Hub cannot be reached" in result.stderr
    assert len(result.stderr.splitlines()) < 25, result.stderr
