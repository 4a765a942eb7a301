"""Reverse-complement behaviour of PS and Ph models, the PS half swap, and Mamba causality."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caduceus_vep.model import (
    CaduceusConfig,
    build_caduceus,
    conjoined_hidden,
    ph_rc_hidden,
    ps_forward_hidden,
    ps_rc_hidden,
    reverse_complement_ids,
    selective_scan_reference,
)
from caduceus_vep.model.mamba import Mamba


def small_config(rcps: bool, **overrides) -> CaduceusConfig:
    d = dict(
        d_model=16, n_layer=2, vocab_size=12, rcps=rcps, residual_in_fp32=False,
        ssm_cfg=dict(d_state=4, d_conv=4, expand=2, dt_rank="auto"),
    )
    d.update(overrides)
    return CaduceusConfig.from_dict(d)


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Mostly A/C/G/T/N, plus a few special tokens to exercise the full complement map.
    return torch.randint(0, 12, (batch, length), generator=g)


def rc_hidden(h: torch.Tensor) -> torch.Tensor:
    return h.flip(dims=(-2, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ps_is_exactly_rc_equivariant(dtype):
    model = build_caduceus(small_config(rcps=True), seed=1).to(dtype)
    ids = random_ids(3, 37)
    with torch.no_grad():
        out = model(ids)
        out_rc = model(reverse_complement_ids(ids))
    assert out.shape == (3, 37, 32) and model.hidden_size == 32 and model.is_rcps
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_rc, rc_hidden(out), **tol)


def test_ps_rc_half_is_the_forward_half_of_the_rc_sequence():
    model = build_caduceus(small_config(rcps=True), seed=2).double()
    ids = random_ids(2, 21)
    with torch.no_grad():
        out, out_rc = model(ids), model(reverse_complement_ids(ids))
    # Position-aligned: base i of x seen from the other strand.
    torch.testing.assert_close(ps_rc_hidden(out), ps_forward_hidden(out_rc).flip(-2))
    torch.testing.assert_close(ps_rc_hidden(out, upstream_length_flip=True), ps_forward_hidden(out_rc))
    # Conjoined features of rc(x) are those of x with the length axis reversed.
    conj, conj_rc = conjoined_hidden(model, ids), conjoined_hidden(model, reverse_complement_ids(ids))
    torch.testing.assert_close(conj_rc, conj.flip(-2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ph_post_hoc_conjoining_is_rc_invariant(dtype):
    model = build_caduceus(small_config(rcps=False), seed=3).to(dtype)
    ids = random_ids(2, 29)
    ids_rc = reverse_complement_ids(ids)
    with torch.no_grad():
        fwd, fwd_rc = model(ids), model(ids_rc)
        conj = (fwd + ph_rc_hidden(model, ids)) / 2
        conj_of_rc = (fwd_rc + ph_rc_hidden(model, ids_rc)) / 2
        assert fwd.shape == (2, 29, 16) and model.hidden_size == 16 and not model.is_rcps
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        # Per position: conjoined(rc(x)) == flip_L(conjoined(x)); pooled over positions: equal.
        torch.testing.assert_close(conj_of_rc, conj.flip(-2), **tol)
        torch.testing.assert_close(conj_of_rc.mean(1), conj.mean(1), **tol)
        torch.testing.assert_close(conjoined_hidden(model, ids), conj, **tol)
        # Ph alone is not equivariant, which is why the conjoining pass is needed.
        assert not torch.allclose(fwd_rc, fwd.flip(-2), atol=1e-3)


def test_ps_lm_head_is_rc_equivariant():
    config = small_config(rcps=True)
    model = build_caduceus(config, seed=4).double()
    ids = random_ids(2, 19)
    with torch.no_grad():
        logits, logits_rc = model.mlm_logits(ids), model.mlm_logits(reverse_complement_ids(ids))
    assert logits.shape == (2, 19, config.padded_vocab_size)
    comp = torch.tensor(config.complement_list)
    torch.testing.assert_close(logits_rc, logits.flip(-2)[..., comp])
    # The head is tied to the embedding.
    assert model.lm_head.lm_head.weight is model.backbone.embeddings.word_embeddings.embedding.weight


# --- The half swap, re-derived from the written rule with plain functions -------------------------

def _rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rc(x):
    return x.flip(dims=(-2, -1))


def _manual_ps_forward(model, ids, swap: bool):
    """PS forward written out from the reference rules, reusing only the BiMamba sub-modules."""
    bb, eps, d = model.backbone, model.config.norm_epsilon, model.config.d_model
    E = bb.embeddings.word_embeddings.embedding.weight
    comp = torch.tensor(model.config.complement_list)
    h = torch.cat([E[ids], _rc(E[comp[ids.flip(-1)]])], dim=-1)
    residual = None
    for layer in bb.layers:
        s = h if residual is None else h + residual
        s1, s2 = s[..., :d], s[..., d:]
        w = layer.norm.weight
        if swap:   # fused add-norm path of the released checkpoints
            normed = torch.cat([_rms(s2, w, eps), _rc(_rms(_rc(s1), w, eps))], dim=-1)
            residual = torch.cat([s2, s1], dim=-1)
        else:
            normed = torch.cat([_rms(s1, w, eps), _rc(_rms(_rc(s2), w, eps))], dim=-1)
            residual = s
        bimamba = layer.mixer.submodule
        x_fwd, x_rc = normed[..., :d], normed[..., d:]
        h = torch.cat([bimamba(x_fwd), _rc(bimamba(_rc(x_rc)))], dim=-1)
    s = h + residual
    w = bb.norm_f.weight
    return torch.cat([_rms(s[..., :d], w, eps), _rc(_rms(_rc(s[..., d:]), w, eps))], dim=-1)


def test_ps_block_swaps_halves_in_fused_add_norm():
    model = build_caduceus(small_config(rcps=True), seed=5).double()
    ids = random_ids(2, 23)
    with torch.no_grad():
        out = model(ids)
        torch.testing.assert_close(out, _manual_ps_forward(model, ids, swap=True))
        # Leaving the swap out gives a different (still equivariant) function.
        assert not torch.allclose(out, _manual_ps_forward(model, ids, swap=False), atol=1e-4)
        # fused_add_norm=false (upstream's unfused path) is the variant without the swap.
        unfused = build_caduceus(small_config(rcps=True, fused_add_norm=False), seed=5).double()
        unfused.load_state_dict(model.state_dict())
        torch.testing.assert_close(unfused(ids), _manual_ps_forward(model, ids, swap=False))


# --- Mamba block ---------------------------------------------------------------------------------

def test_mamba_block_is_causal():
    torch.manual_seed(0)
    block = Mamba(d_model=8, d_state=4, d_conv=4, expand=2).double()
    x = torch.randn(1, 30, 8, dtype=torch.float64)
    with torch.no_grad():
        base = block(x)
        for t in (0, 9, 28):
            changed = x.clone()
            changed[:, t + 1:] += torch.randn_like(changed[:, t + 1:])
            out = block(changed)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1])
            assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])


def test_mamba_block_matches_written_out_computation():
    torch.manual_seed(1)
    m = Mamba(d_model=8, d_state=4, d_conv=3, expand=2).double()
    h = torch.randn(2, 11, 8, dtype=torch.float64)
    with torch.no_grad():
        xz = h @ m.in_proj.weight.T
        x, z = xz[..., :16], xz[..., 16:]
        w = m.conv1d.weight[:, 0]  # [D, K]
        padded = F.pad(x, (0, 0, 2, 0))  # two zeros before position 0
        conv = sum(padded[:, k : k + 11] * w[:, k] for k in range(3)) + m.conv1d.bias
        x = F.silu(conv)
        dt, B, C = torch.split(x @ m.x_proj.weight.T, [m.dt_rank, 4, 4], dim=-1)
        delta = F.softplus(dt @ m.dt_proj.weight.T + m.dt_proj.bias)
        y = selective_scan_reference(
            x.transpose(1, 2), delta.transpose(1, 2), -torch.exp(m.A_log), B.transpose(1, 2),
            C.transpose(1, 2), m.D, z=z.transpose(1, 2),
        )
        torch.testing.assert_close(m(h), y.transpose(1, 2) @ m.out_proj.weight.T)


def test_bimamba_ties_projections_and_flips_the_reverse_direction():
    model = build_caduceus(small_config(rcps=False), seed=6).double()
    bim = model.backbone.layers[0].mixer
    assert bim.mamba_rev.in_proj.weight is bim.mamba_fwd.in_proj.weight
    assert bim.mamba_rev.out_proj.weight is bim.mamba_fwd.out_proj.weight
    h = torch.randn(1, 9, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(bim(h), bim.mamba_fwd(h) + bim.mamba_rev(h.flip(1)).flip(1))
