"""Deterministic random initialisation following Mamba v1 (mamba_simple.py + mixer_seq_simple.py).

Used for tests and for runs without released weights; loading a checkpoint overwrites all of it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .caduceus import Caduceus
from .config import CaduceusConfig
from .mamba import Mamba
from .norm import RMSNorm


@torch.no_grad()
def _init_mamba(m: Mamba, config: CaduceusConfig, gen: torch.Generator, seen: set[int]) -> None:
    ssm = config.ssm_cfg
    init_cfg = config.initializer_cfg or {}
    for linear in (m.in_proj, m.x_proj):
        if id(linear.weight) not in seen:  # tied projections are initialised once
            seen.add(id(linear.weight))
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=gen)  # nn.Linear default
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
    if id(m.out_proj.weight) not in seen:
        seen.add(id(m.out_proj.weight))
        nn.init.kaiming_uniform_(m.out_proj.weight, a=math.sqrt(5), generator=gen)
        # GPT-2 style depth scaling of the residual-branch output projection.
        if init_cfg.get("rescale_prenorm_residual", True):
            m.out_proj.weight /= math.sqrt(init_cfg.get("n_residuals_per_layer", 1) * config.n_layer)
        if m.out_proj.bias is not None:
            nn.init.zeros_(m.out_proj.bias)
    # nn.Conv1d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = d_conv (depthwise).
    bound = 1.0 / math.sqrt(m.d_conv)
    nn.init.uniform_(m.conv1d.weight, -bound, bound, generator=gen)
    if m.conv1d.bias is not None:
        nn.init.uniform_(m.conv1d.bias, -bound, bound, generator=gen)
    # dt_proj weight keeps the variance of delta independent of dt_rank.
    dt_std = m.dt_rank ** -0.5 * ssm.dt_scale
    if ssm.dt_init == "constant":
        nn.init.constant_(m.dt_proj.weight, dt_std)
    else:
        nn.init.uniform_(m.dt_proj.weight, -dt_std, dt_std, generator=gen)
    # dt_proj bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max], so that the initial
    # step sizes cover several time scales.
    u = torch.rand(m.d_inner, generator=gen, dtype=torch.float64)
    dt = torch.exp(u * (math.log(ssm.dt_max) - math.log(ssm.dt_min)) + math.log(ssm.dt_min))
    dt = dt.clamp(min=ssm.dt_init_floor)
    m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    # S4D-real initialisation: A = -(1..d_state) for every channel; skip connection D = 1.
    m.A_log.copy_(torch.log(torch.arange(1, m.d_state + 1, dtype=torch.float64)).repeat(m.d_inner, 1))
    m.D.fill_(1.0)


def build_caduceus(config: CaduceusConfig, seed: int) -> Caduceus:
    """A freshly initialised fp32 CPU model (LM head tied to the embedding); same seed, same weights."""
    gen = torch.Generator().manual_seed(seed)
    model = Caduceus(config, lm_head=True)
    init_range = (config.initializer_cfg or {}).get("initializer_range", 0.02)
    with torch.no_grad():
        nn.init.normal_(model.backbone.embeddings.weight, std=init_range, generator=gen)
        seen: set[int] = set()
        for module in model.modules():
            if isinstance(module, Mamba):
                _init_mamba(module, config, gen, seen)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
    return model.eval()
