"""A frozen copy of the model's CPU forward as it was before the lean forward (issue 13, item 4).

Test-only reference (also the "before" variant of benchmarks/model_speed.py): the same modules'
parameters, today's-then code path verbatim, rewritten as functions so that later changes to the
modules cannot change it. CPU path only (no kernels): the GPU path is compared in test_gpu_path.py.
The scan is looked up through ``caduceus_vep.model.mamba.selective_scan`` at call time, as the
model did, so a benchmark can swap it for both variants alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from caduceus_vep.model import Caduceus
from caduceus_vep.model import mamba as mamba_mod
from caduceus_vep.model.bimamba import BiMamba
from caduceus_vep.model.mamba import Mamba
from caduceus_vep.model.norm import RMSNorm

MAX_TOKENS_PER_CALL = 1 << 16


def rc_flip(x: Tensor) -> Tensor:
    return x.flip(dims=(-2, -1))


def rms_norm(norm: RMSNorm, x: Tensor) -> Tensor:
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc = x.to(ct)
    normed = xc * torch.rsqrt(xc.pow(2).mean(dim=-1, keepdim=True) + norm.eps)
    return (normed * norm.weight.to(ct)).to(x.dtype)


def conv_silu(m: Mamba, x: Tensor) -> Tensor:
    length = x.shape[-1]
    return F.silu(m.conv1d(x)[..., :length], inplace=not torch.is_grad_enabled())


def mix(m: Mamba, xz: Tensor) -> Tensor:
    x, z = xz.chunk(2, dim=-1)
    x = conv_silu(m, x.transpose(1, 2))
    x_dbl = m.x_proj(x.transpose(1, 2))
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = F.linear(dt, m.dt_proj.weight).transpose(1, 2)
    A = -torch.exp(m.A_log.float())
    y = mamba_mod.selective_scan(
        x, delta, A, B.transpose(1, 2), C.transpose(1, 2), m.D.float(),
        z=z.transpose(1, 2), delta_bias=m.dt_proj.bias.float(), delta_softplus=True,
    )
    return y.transpose(1, 2)


def bimamba_rows(bm: BiMamba, hidden: Tensor) -> Tensor:
    batch, length = hidden.shape[:2]
    if batch > 1 and batch * length > MAX_TOKENS_PER_CALL:
        return torch.cat([bimamba(bm, row) for row in hidden.split(1)], dim=0)
    return bimamba(bm, hidden)


def bimamba(bm: BiMamba, hidden: Tensor) -> Tensor:
    xz = bm.mamba_fwd.in_proj(hidden)
    mixed = mix(bm.mamba_fwd, xz)
    xz = xz.flip(1)
    rev = mix(bm.mamba_rev, xz).flip(1)
    del xz
    mixed = mixed + rev if torch.is_grad_enabled() else mixed.add_(rev)
    del rev
    out = bm.mamba_fwd.out_proj(mixed)
    if bm.mamba_fwd.out_proj.bias is not None:
        out = out + bm.mamba_fwd.out_proj.bias
    return out


def rcps_wrapper(bm: BiMamba, x: Tensor) -> Tensor:
    x_fwd, x_rc = x.chunk(2, dim=-1)
    out = bimamba_rows(bm, torch.cat([x_fwd, rc_flip(x_rc)], dim=0))
    out_fwd, out_rc = out.chunk(2, dim=0)
    return torch.cat([out_fwd, rc_flip(out_rc)], dim=-1)


def rcps_add_norm(summed: Tensor, norm: RMSNorm, swap_halves: bool) -> tuple[Tensor, Tensor]:
    s1, s2 = summed.chunk(2, dim=-1)
    first, second = (s2, s1) if swap_halves else (s1, s2)
    normed = torch.cat([rms_norm(norm, first), rc_flip(rms_norm(norm, rc_flip(second)))], dim=-1)
    residual = torch.cat([first, second], dim=-1) if swap_halves else summed
    return normed, residual


def add_residual(hidden: Tensor, residual: Tensor | None, residual_in_fp32: bool) -> Tensor:
    summed = hidden if residual is None else hidden.to(residual.dtype) + residual
    if residual_in_fp32 and summed.dtype in (torch.float16, torch.bfloat16):
        summed = summed.float()
    return summed


def embed(model: Caduceus, ids: Tensor) -> Tensor:
    emb = model.backbone.embeddings.word_embeddings
    if not model.is_rcps:
        return emb(ids)
    rc_ids = emb.complement_map[ids.flip(-1)]
    return torch.cat([emb.embedding(ids), rc_flip(emb.embedding(rc_ids))], dim=-1)


def forward(model: Caduceus, ids: Tensor) -> Tensor:
    """The last hidden state, computed exactly as the CPU forward did before the lean forward."""
    backbone = model.backbone
    rcps = model.is_rcps
    hidden = embed(model, ids)
    residual = None
    for layer in backbone.layers:
        summed = add_residual(hidden, residual, layer.residual_in_fp32)
        if rcps:
            normed, residual = rcps_add_norm(summed, layer.norm, layer.swap_halves)
            hidden = rcps_wrapper(layer.mixer.submodule, normed.to(hidden.dtype))
        else:
            normed, residual = rms_norm(layer.norm, summed), summed
            hidden = bimamba_rows(layer.mixer, normed.to(hidden.dtype))
    summed = add_residual(hidden, residual, backbone.residual_in_fp32)
    if rcps:
        out, _ = rcps_add_norm(summed, backbone.norm_f, swap_halves=False)
    else:
        out = rms_norm(backbone.norm_f, summed)
    return out.to(hidden.dtype)
