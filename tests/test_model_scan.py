"""The chunked selective scan equals the position-by-position recurrence."""

from __future__ import annotations

import pytest
import torch
from conftest import random_scan_inputs

from caduceus_vep.model import selective_scan, selective_scan_reference
from caduceus_vep.model.scan import selective_scan_torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length", [1, 2, 7, 63, 64, 65, 200, 513])
@pytest.mark.parametrize("extras", ["none", "all", "z_only", "softplus_bias"])
def test_scan_matches_reference(length, dtype, extras):
    x = random_scan_inputs(length, dtype=dtype)
    kwargs = {}
    if extras == "all":
        kwargs = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True)
    elif extras == "z_only":
        kwargs = dict(z=x["z"])
    elif extras == "softplus_bias":
        kwargs = dict(delta_bias=x["delta_bias"], delta_softplus=True)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    got = selective_scan(*args, **kwargs)
    want = selective_scan_reference(*args, **kwargs)
    assert got.shape == (2, 6, length) and got.dtype == dtype
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("chunk", [1, 3, 64, 1000])
def test_chunk_size_does_not_change_result(chunk):
    x = random_scan_inputs(130, dtype=torch.float64)
    args = [x[k] for k in ("u", "delta", "A", "B", "C")]
    want = selective_scan_reference(*args, D=x["D"], z=x["z"])
    got = selective_scan_torch(*args, D=x["D"], z=x["z"], chunk=chunk)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_huge_steps_stay_finite():
    # delta*A of -1e4 per step: any exp(-cumsum) formulation would overflow.
    x = random_scan_inputs(300, dtype=torch.float32)
    delta = torch.full_like(x["delta"], 1e3)
    got = selective_scan(x["u"], delta, x["A"] * 10, x["B"], x["C"])
    want = selective_scan_reference(x["u"], delta, x["A"] * 10, x["B"], x["C"])
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)


def test_gradients_flow_and_match_reference():
    x = random_scan_inputs(70, dtype=torch.float64)
    leaves = {k: x[k].clone().requires_grad_(True) for k in ("u", "delta", "B", "C")}
    args = lambda d: [d["u"], d["delta"], x["A"], d["B"], d["C"]]  # noqa: E731
    selective_scan_torch(*args(leaves), D=x["D"], chunk=16).sum().backward()
    ref_leaves = {k: x[k].clone().requires_grad_(True) for k in leaves}
    selective_scan_reference(*args(ref_leaves), D=x["D"]).sum().backward()
    for k in leaves:
        torch.testing.assert_close(leaves[k].grad, ref_leaves[k].grad)


def test_half_precision_inputs_accumulate_in_fp32():
    x = random_scan_inputs(50, dtype=torch.float32)
    args = [x[k].to(torch.bfloat16) for k in ("u", "delta", "A", "B", "C")]
    got = selective_scan(*args)
    assert got.dtype == torch.bfloat16
    want = selective_scan_reference(*[a.float() for a in args])
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
