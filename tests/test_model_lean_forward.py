"""The lean CPU forward (issue 13, item 4) against a frozen copy of the forward it replaced.

tests/frozen_forward.py holds the previous CPU forward verbatim (flips, transposes, nn.Conv1d, the
doubled RCPS batch, concatenating norms). Here both run on the same random tiny PS and Ph models,
with every add + norm variant: the fused add-norm ordering with the PS half swap (the released
checkpoints), the unfused one, residual_in_fp32; under inference_mode, no_grad and with autograd.
"""

from __future__ import annotations

import frozen_forward
import pytest
import torch
import torch.nn.functional as F

from caduceus_vep.model import CaduceusConfig, build_caduceus
from caduceus_vep.model import mamba as mamba_module
from caduceus_vep.model.bimamba import BiMamba
from caduceus_vep.model.mamba import conv_silu_shifted
from caduceus_vep.model.rcps import rc_flip
from caduceus_vep.model.scan import selective_scan, selective_scan_torch

TOL = dict(rtol=1e-5, atol=1e-5)


def tiny_config(rcps: bool, fused_add_norm: bool = True, residual_in_fp32: bool = False, d_model: int = 24,
                n_layer: int = 3) -> CaduceusConfig:
    return CaduceusConfig.from_dict({
        "d_model": d_model, "n_layer": n_layer, "vocab_size": 16, "rcps": rcps, "fused_add_norm": fused_add_norm,
        "residual_in_fp32": residual_in_fp32, "ssm_cfg": {"d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": "auto"},
    })


def perturbed(config: CaduceusConfig, seed: int = 0) -> torch.nn.Module:
    """Random weights where every parameter shows: norm weights != 1 (and not symmetric, so a
    flipped norm weight would show), D random, conv taps and biases random."""
    model = build_caduceus(config, seed)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(("norm.weight", "norm_f.weight")):
                p.copy_(1 + 0.3 * noise)
            elif name.endswith((".D", "conv1d.bias")):
                p.copy_(noise)
            elif name.endswith("A_log"):
                p.add_(0.3 * noise)
    return model


def ids_for(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, 11, (batch, length), generator=g)
    ids[:, ::13] = 11
    return ids


VARIANTS = [
    pytest.param(dict(fused_add_norm=True), id="fused-add-norm"),
    pytest.param(dict(fused_add_norm=False), id="unfused"),
    pytest.param(dict(fused_add_norm=True, residual_in_fp32=True), id="fused-res32"),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_lean_forward_matches_the_frozen_forward(rcps: bool, variant: dict, mode: str) -> None:
    model = perturbed(tiny_config(rcps, **variant), seed=3)
    ids = ids_for(2, 70)
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with ctx:
        got = model(ids)
        want = frozen_forward.forward(model, ids)
    assert got.shape == want.shape == (2, 70, model.hidden_size) and got.dtype == want.dtype
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
def test_lean_forward_with_autograd_matches_and_backpropagates(rcps: bool) -> None:
    """With autograd on, the lean layout runs the PyTorch scan; values and gradients still match."""
    model = perturbed(tiny_config(rcps, d_model=16, n_layer=2), seed=5)
    ids = ids_for(1, 33, seed=1)
    got = model(ids)
    want = frozen_forward.forward(model, ids)
    torch.testing.assert_close(got, want, **TOL)
    weight = model.backbone.layers[0].mixer.submodule.mamba_rev.conv1d.weight if rcps else \
        model.backbone.layers[0].mixer.mamba_rev.conv1d.weight
    g_got, = torch.autograd.grad(got.square().sum(), weight)
    g_want, = torch.autograd.grad(want.square().sum(), weight)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
def test_lean_forward_one_row_at_a_time_matches(rcps: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    model = perturbed(tiny_config(rcps), seed=8)
    ids = ids_for(3, 40, seed=2)
    with torch.inference_mode():
        want = frozen_forward.forward(model, ids)
        monkeypatch.setattr(BiMamba, "max_tokens_per_call", 50)  # forces one row per call
        got = model(ids)
    torch.testing.assert_close(got, want, **TOL)


def test_the_released_size_matches_the_frozen_forward() -> None:
    """d_model 256, 16 layers (the 131k checkpoints' shape), PS, a short window."""
    config = tiny_config(True, d_model=256, n_layer=16)
    model = perturbed(config, seed=13)
    ids = ids_for(1, 64, seed=4)
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), frozen_forward.forward(model, ids), **TOL)


@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
def test_a_block_called_directly_leaves_its_inputs_alone(rcps: bool) -> None:
    """Only the backbone hands its tensors over (reuse_inputs=True); a plain call must not write into them."""
    model = perturbed(tiny_config(rcps), seed=9)
    block = model.backbone.layers[1]
    width = model.hidden_size
    g = torch.Generator().manual_seed(0)
    hidden, residual = torch.randn(2, 30, width, generator=g), torch.randn(2, 30, width, generator=g)
    h0, r0 = hidden.clone(), residual.clone()
    with torch.inference_mode():
        out, new_residual = block(hidden, residual)
        out2, new_residual2 = block(hidden.clone(), residual.clone(), reuse_inputs=True)
    assert torch.equal(hidden, h0) and torch.equal(residual, r0)
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    torch.testing.assert_close(new_residual, new_residual2, rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [1024, 2, 5], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("reverse", [False, True], ids=["causal", "anti-causal"])
@pytest.mark.parametrize("length", [1, 2, 5, 37])
def test_shifted_conv_equals_the_module(reverse: bool, length: int, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of ``chunk`` positions (inference) must join seamlessly, shorter and longer than the kernel."""
    monkeypatch.setattr(mamba_module, "CONV_CHUNK", chunk)
    g = torch.Generator().manual_seed(length)
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(6, generator=g))
        xz = torch.randn(2, length, 12, generator=g)
        x = xz[..., :6]  # the strided half of in_proj's output, as the model passes it
        src = x.flip(1) if reverse else x
        want = F.silu(conv(src.transpose(1, 2))[..., :length]).transpose(1, 2)
        if reverse:
            want = want.flip(1)
        got = conv_silu_shifted(x, conv.weight, conv.bias, reverse=reverse)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scan", ["fused", "torch"])
def test_reverse_scan_is_the_flipped_scan(scan: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import random_scan_inputs

    if scan == "torch":
        monkeypatch.setenv("CADUCEUS_VEP_SCAN", "torch")
    x = random_scan_inputs(77, d_inner=20, n=8, seed=4)
    # The [B, L, *] views the lean forward passes.
    x = {k: (v.transpose(1, 2).contiguous().transpose(1, 2) if v.dim() == 3 else v) for k, v in x.items()}
    flipped = {k: (v.flip(-1) if v.dim() == 3 else v) for k, v in x.items()}
    with torch.inference_mode():
        want = selective_scan_torch(**flipped, delta_softplus=True).flip(-1)
        got = selective_scan(**x, delta_softplus=True, reverse=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_forward_rc_is_the_conjugated_bimamba() -> None:
    model = perturbed(tiny_config(True), seed=2)
    bimamba = model.backbone.layers[0].mixer.submodule
    x = torch.randn(2, 25, 24, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(bimamba.forward_rc(x), rc_flip(bimamba(rc_flip(x))), **TOL)


def test_rcps_embedding_table_equals_the_two_lookups() -> None:
    model = perturbed(tiny_config(True), seed=1)
    ids = ids_for(2, 19)
    with torch.no_grad():
        assert torch.equal(model.backbone.embeddings(ids), frozen_forward.embed(model, ids))
