"""The compiled CPU scan kernel (caduceus_vep/model/_scan_kernel.c) equals the reference recurrence."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import random_scan_inputs

# No skip: `pip install -e .` builds the kernel wherever gcc exists (CI included); a missing build
# must fail the suite, not silently fall back to the 5x slower PyTorch scan.
from caduceus_vep.model import _scan_kernel as kernel  # noqa: E402
from caduceus_vep.model import scan as scan_mod
from caduceus_vep.model import scan_backend, selective_scan, selective_scan_reference
from caduceus_vep.model.scan import selective_scan_fused


def _inputs(length, **options):
    # d_inner = 37: two full 16-channel blocks and a partial one; n = 16 as in the checkpoints.
    return random_scan_inputs(length, **{"d_inner": 37, "n": 16, **options})


EXTRAS = {
    "none": lambda x: {},
    "all": lambda x: dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True),
    "z_only": lambda x: dict(z=x["z"]),
    "D_only": lambda x: dict(D=x["D"]),
    "softplus_bias": lambda x: dict(delta_bias=x["delta_bias"], delta_softplus=True),
    "softplus_only": lambda x: dict(delta_softplus=True),
}


def _check(got, x, kwargs):
    args = [x[k].double() for k in ("u", "delta", "A", "B", "C")]
    want = selective_scan_reference(*args, **{k: v.double() if torch.is_tensor(v) else v for k, v in kwargs.items()})
    assert got.shape == x["u"].shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


ISAS = ["avx512", "avx2", "portable"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Every code path of the kernel this CPU can run (AVX-512, AVX2+FMA, portable)."""
    used = kernel.use_isa(request.param)
    try:
        if used != request.param:
            pytest.skip(f"this CPU has no {request.param}")
        yield request.param
    finally:
        kernel.use_isa("auto")


def _available_isas():
    try:
        return [name for name in ISAS if kernel.use_isa(name) == name]
    finally:
        kernel.use_isa("auto")


@pytest.mark.parametrize("length", [1, 2, 7, 63, 64, 65, 200, 513])
@pytest.mark.parametrize("extras", sorted(EXTRAS))
def test_kernel_matches_reference(length, extras, isa):
    x = _inputs(length)
    kwargs = EXTRAS[extras](x)
    got = selective_scan_fused(*[x[k] for k in ("u", "delta", "A", "B", "C")], **kwargs)
    _check(got, x, kwargs)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("extras", sorted(EXTRAS))
def test_code_paths_agree_with_each_other_and_the_reference(extras, reverse):
    # The explicit AVX-512 / AVX2 steps against the portable one (same polynomial, same operation
    # order: they agree to a few fp32 ulps) and all of them against the fp64 reference.
    x = _inputs(150, seed=4)
    kwargs = EXTRAS[extras](x)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    got = {}
    try:
        for name in _available_isas():
            kernel.use_isa(name)
            got[name] = selective_scan_fused(*args, **kwargs, reverse=reverse)
    finally:
        kernel.use_isa("auto")
    fl = lambda t: t.flip(-1) if reverse and torch.is_tensor(t) and t.dim() == 3 else t  # noqa: E731
    flipped = {k: fl(x[k]) for k in x}
    for name, out in got.items():
        torch.testing.assert_close(out, got["portable"], rtol=1e-6, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
        _check(fl(out), flipped, {k: fl(v) for k, v in kwargs.items()})


def test_softplus_and_gate_on_every_path_match_torch(isa):
    # Length 1, one state, A = 0, B = C = u = 1: y = softplus(delta), and with delta = 1, y = silu(z).
    # Covers the explicit AVX2 softplus/silu (blends instead of branches) and the clamps of exp.
    x = torch.linspace(-120, 120, 48_001).reshape(1, -1, 1)
    dim = x.shape[1]
    ones, one = torch.ones(1, dim, 1), torch.ones(1, 1, 1)
    got = selective_scan_fused(ones, x, torch.zeros(dim, 1), one, one, delta_softplus=True)
    torch.testing.assert_close(got.double(), torch.nn.functional.softplus(x.double()), rtol=1e-6, atol=1e-12)
    got = selective_scan_fused(ones, ones, torch.zeros(dim, 1), one, one, z=x)
    torch.testing.assert_close(got.double(), torch.nn.functional.silu(x.double()), rtol=1e-6, atol=1e-12)


def test_isa_switch_and_report():
    best = kernel.current_isa()
    assert best in ISAS
    expected = {"avx512": "avx512", "avx2": "avx2"}.get(best, "auto-vectorised")
    assert kernel.ISA.startswith(expected)
    assert kernel.use_isa("portable") == "portable" and kernel.current_isa() == "portable"
    assert kernel.use_isa("auto") == best
    with pytest.raises(ValueError, match="unknown ISA"):
        kernel.use_isa("sse9")
    assert kernel.use_avx512(False) is False and kernel.current_isa() == "portable"
    assert kernel.use_avx512(True) is (best == "avx512") and kernel.current_isa() == best


@pytest.mark.parametrize("value", ["portable", "auto", "bogus"])
def test_isa_environment_variable_is_read_at_import(value):
    import os
    import subprocess
    import sys

    code = "from caduceus_vep.model import _scan_kernel as k; print(k.current_isa(), k.ISA, sep='|')"
    env = {**os.environ, "CADUCEUS_VEP_SCAN_ISA": value}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if value == "bogus":
        assert proc.returncode != 0 and "CADUCEUS_VEP_SCAN_ISA" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    name, report = proc.stdout.strip().split("|")
    if value == "portable":
        assert name == "portable" and report.startswith("auto-vectorised")
    else:
        assert name == kernel.current_isa() and report == kernel.ISA


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernel_threads_give_identical_results(threads):
    x = _inputs(130, batch=3)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    kwargs = EXTRAS["all"](x)
    one = selective_scan_fused(*args, **kwargs, threads=1)
    assert torch.equal(selective_scan_fused(*args, **kwargs, threads=threads), one)


def test_kernel_reads_strided_views_like_the_model_passes_them():
    # Mamba.mix passes delta and z as [B, L, D] tensors viewed as [B, D, L], B and C as views into
    # x_dbl [B, L, dt_rank + 2N], u as [B, D, L] (conv output).
    x = _inputs(150)
    u, delta, z = x["u"], x["delta"], x["z"]
    delta_v = delta.transpose(1, 2).contiguous().transpose(1, 2)
    z_v = torch.cat([torch.zeros_like(z), z], dim=1).transpose(1, 2).contiguous().transpose(1, 2)[:, 37:]
    x_dbl = torch.cat([torch.zeros(2, 150, 5), x["B"].transpose(1, 2), x["C"].transpose(1, 2)], dim=-1)
    B_v, C_v = x_dbl[..., 5:21].transpose(1, 2), x_dbl[..., 21:].transpose(1, 2)
    assert not delta_v.is_contiguous() and not B_v.is_contiguous() and not z_v.is_contiguous()
    kwargs = dict(D=x["D"], delta_bias=x["delta_bias"], delta_softplus=True)
    got = selective_scan_fused(u, delta_v, x["A"], B_v, C_v, z=z_v, **kwargs)
    _check(got, x, dict(kwargs, z=z))


def test_kernel_state_sizes_other_than_16():
    for n in (1, 3, 33, 64):
        x = _inputs(40, n=n, d_inner=5)
        kwargs = EXTRAS["all"](x)
        _check(selective_scan_fused(*[x[k] for k in ("u", "delta", "A", "B", "C")], **kwargs), x, kwargs)


def test_huge_steps_and_gates_stay_finite():
    x = _inputs(300)
    delta = torch.full_like(x["delta"], 1e3)
    z = x["z"] * 200  # silu of +-hundreds: exp must neither overflow nor lose the sign
    got = selective_scan_fused(x["u"], delta, x["A"] * 10, x["B"], x["C"], z=z)
    want = selective_scan_reference(x["u"], delta, x["A"] * 10, x["B"], x["C"], z=z)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)


def test_empty_sequence():
    x = _inputs(0)
    assert selective_scan_fused(*[x[k] for k in ("u", "delta", "A", "B", "C")]).shape == (2, 37, 0)


def test_dispatch_uses_kernel_for_inference_and_torch_for_training(monkeypatch):
    calls = []
    real = scan_mod.selective_scan_fused
    monkeypatch.setattr(scan_mod, "selective_scan_fused", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = _inputs(20)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    with torch.no_grad():
        selective_scan(*args)
    assert calls == [1]
    selective_scan(x["u"].clone().requires_grad_(True), *args[1:]).sum().backward()  # PyTorch path
    assert calls == [1]
    selective_scan(*[a.double() for a in args])  # fp64: PyTorch path
    assert calls == [1]


def test_backend_is_reported(monkeypatch):
    assert scan_backend() == "fused-c"
    assert scan_backend("cpu") == "fused-c"
    monkeypatch.setenv(scan_mod.BACKEND_ENV, "torch")
    assert scan_backend() == "torch-chunked"
    monkeypatch.setenv(scan_mod.BACKEND_ENV, "bogus")
    with pytest.raises(ValueError, match="CADUCEUS_VEP_SCAN"):
        scan_backend()


def test_missing_kernel_falls_back_with_one_warning(monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_kernel(name, globals=None, locals=None, fromlist=(), level=0):
        if fromlist and "_scan_kernel" in fromlist:
            raise ImportError("simulated: not built")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(scan_mod, "_cpu_kernel_cache", [])
    monkeypatch.setattr(builtins, "__import__", no_kernel)
    x = _inputs(30)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    with caplog.at_level(logging.WARNING, logger=scan_mod.__name__), torch.no_grad():
        first = selective_scan(*args)
        selective_scan(*args)
        assert scan_backend() == "torch-chunked"
    warnings = [r for r in caplog.records if "compiled selective-scan kernel is not available" in r.getMessage()]
    assert len(warnings) == 1
    torch.testing.assert_close(first, selective_scan_reference(*args), rtol=1e-4, atol=1e-5)
    monkeypatch.setenv(scan_mod.BACKEND_ENV, "fused")
    with pytest.raises(RuntimeError, match="not available"):
        scan_backend()


def test_model_forward_same_with_kernel_and_torch_scan(monkeypatch):
    from caduceus_vep.model import CaduceusConfig, build_caduceus

    for rcps in (False, True):
        model = build_caduceus(CaduceusConfig(d_model=32, n_layer=2, vocab_size=12, rcps=rcps), seed=3)
        ids = torch.randint(7, 12, (2, 77), generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            fused = model(ids)
            monkeypatch.setenv(scan_mod.BACKEND_ENV, "torch")
            plain = model(ids)
            monkeypatch.delenv(scan_mod.BACKEND_ENV)
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_bimamba_row_split_for_long_inputs_gives_the_same_result(monkeypatch):
    from caduceus_vep.model import CaduceusConfig, build_caduceus
    from caduceus_vep.model.bimamba import BiMamba

    model = build_caduceus(CaduceusConfig(d_model=32, n_layer=2, vocab_size=12, rcps=True), seed=5)
    ids = torch.randint(7, 12, (2, 50), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = model(ids)
        monkeypatch.setattr(BiMamba, "max_tokens_per_call", 60)  # forces one row at a time
        split = model(ids)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)
