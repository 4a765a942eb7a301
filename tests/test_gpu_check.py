"""benchmarks/gpu_check.py stays runnable: its --cpu-smoke mode on tiny sizes, and a clear failure without CUDA."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_fails_with_a_message(gpu_check, monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible" in err and "--cpu-smoke" in err
    assert not (tmp_path / "gpu_check.json").exists()


def test_cpu_smoke_writes_the_report(gpu_check, tmp_path: Path) -> None:
    # A generous step limit: the (simulated) out-of-memory ends every sweep, not the machine's load.
    assert gpu_check.main(["--cpu-smoke", "--out-dir", str(tmp_path), "--step-seconds", "1000"]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["smoke"] is True
    acc = result["accuracy"]
    assert {(r["model"], r["length"], r["dtype"]) for r in acc} == {
        (m, n, d) for m in ("PS", "Ph") for n in (64, 256) for d in ("float32", "bfloat16", "float16")}
    for r in acc:
        assert r["finite"] and r["max_abs_ref"] > 0
        if r["dtype"] != "float32":  # CPU autocast: a different numeric path from the fp32 reference
            assert r["hidden_dtype"] == r["dtype"]
            assert 0 < r["rel_diff"] < 0.1 and 0 < r["pooled_rel_diff"] < 0.05 and r["pooled_min_cosine"] > 0.99
    speed = result["speed"]
    assert {(r["model"], r["length"]) for r in speed} == {(m, n) for m in ("PS", "Ph") for n in (64, 256)}
    for r in speed:
        # Doubling 1, 2, 4, out of memory at 8, one bisection step at 6 (also too large).
        assert [p["batch"] for p in r["points"]] == [1, 2, 4]
        assert r["largest_batch_fitted"] == 4 and r["first_batch_out_of_memory"] == 6
        assert all(p["sequences_per_s"] > 0 for p in r["points"])
    text = (tmp_path / "gpu_check.md").read_text()
    assert "CPU SMOKE RUN" in text and "## Largest batch" in text and "| PS | 256 | bfloat16 | 4 | 6 |" in text
