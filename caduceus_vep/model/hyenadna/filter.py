"""HyenaDNA's implicit long filter: positional features -> sine MLP -> exponential window.

The filter of a layer is a function of position only: ``k[t] = MLP(z[t]) * (exp(-t_norm |delta|) + 0.05)``
with ``z`` the stored positional features (normalised time, cosines, sines) and ``t_norm`` the
stored normalised time. ``z``, ``t`` and ``deltas`` are registered as buffers here and always
loaded from the checkpoint: one version of the port trains ``z`` (a parameter), so recomputing it
from the formula would silently give a different filter. The formula below only fills a freshly
built (random-weight) model.

The sine activation is one module placed after every hidden linear layer of the MLP
(``implicit_filter.1``, ``.3``, ``.5``), so its frequency is one tensor; the released safetensors
files store it once (``implicit_filter.1.freq``). Building the MLP with the same module object
re-ties it, and the loader fills all three names from whichever the file holds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import HyenaDNAConfig

#: Constant added to the exponential window (the port's ``shift``).
MODULATION_SHIFT = 0.05


def fftconv(u: Tensor, k: Tensor, bias: Tensor) -> Tensor:
    """Causal convolution ``y[t] = sum_{s<=t} k[s] u[t-s] + bias * u[t]`` per channel via FFT in (at least) fp32.

    u: [B, D, L], k: [D, L], bias: [D]. Zero-padding to 2L makes the circular FFT product a linear
    (causal) convolution, as in the port; the port's ``rfft(k)/2L`` with ``irfft(norm="forward")``
    is the plain convolution, which is what the unnormalised pair below computes.
    """
    seqlen = u.shape[-1]
    n = 2 * seqlen
    ct = torch.promote_types(u.dtype, torch.float32)  # fp32 at least (fp64 stays fp64)
    k_f = torch.fft.rfft(k.to(ct), n=n)
    u_f = torch.fft.rfft(u.to(ct), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :seqlen]
    return (y + u * bias.unsqueeze(-1)).to(u.dtype)


class HyenaSin(nn.Module):
    """``sin(freq * x)`` with a per-channel frequency (a parameter when ``train_freq``, as released)."""

    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        freq = config.activation_freq * torch.ones(1, config.filter_order)
        if config.train_freq:
            self.freq = nn.Parameter(freq)
        else:
            # Not a parameter in the port, hence not in its state dict.
            self.register_buffer("freq", freq, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class HyenaPositionalEmbedding(nn.Module):
    """Stored positional features ``z`` [1, max_seq_len, emb_dim] and normalised time ``t`` [1, max_seq_len, 1]."""

    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        seq_len = config.max_seq_len
        t = torch.linspace(0, 1, seq_len)[None, :, None]
        bands = (config.emb_dim - 1) // 2
        t_rescaled = torch.linspace(0, seq_len - 1, seq_len)[None, :, None]
        w = 2 * math.pi * t_rescaled / seq_len
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        z = torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1)
        self.register_buffer("z", z)
        self.register_buffer("t", t)

    def forward(self, length: int) -> tuple[Tensor, Tensor]:
        return self.z[:, :length], self.t[:, :length]


class HyenaExponentialModulation(nn.Module):
    """Window ``exp(-t |deltas|) + shift`` with stored per-channel decay rates ``deltas`` [1, 1, d_model]."""

    def __init__(self, d_model: int, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2) -> None:
        super().__init__()
        max_decay = math.log(target) / fast_decay_pct
        min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, d_model)[None, None])
        self.shift = MODULATION_SHIFT

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        decay = torch.exp(-t * self.deltas.abs())
        return x * (decay + self.shift)


class HyenaFilter(nn.Module):
    """The implicit filter of one Hyena operator plus its per-channel skip weight ``bias`` [d_model]."""

    def __init__(self, config: HyenaDNAConfig) -> None:
        super().__init__()
        d_model = config.d_model * (config.hyena_order - 1)
        order = config.filter_order
        self.bias = nn.Parameter(torch.randn(d_model))
        self.pos_emb = HyenaPositionalEmbedding(config)
        act = HyenaSin(config)  # one module, hence one frequency, at every activation position
        layers: list[nn.Module] = [nn.Linear(config.emb_dim, order), act]
        for _ in range(config.num_inner_mlps):
            layers += [nn.Linear(order, order), act]
        layers.append(nn.Linear(order, config.d_model, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = HyenaExponentialModulation(config.d_model)

    def filter(self, length: int) -> Tensor:
        """The long filter for the first ``length`` positions, [1, length, d_model]."""
        z, t = self.pos_emb(length)
        h = self.implicit_filter(z.to(dtype=self.implicit_filter[0].weight.dtype))
        return self.modulation(t, h)
