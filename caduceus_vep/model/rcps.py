"""Reverse-complement parameter sharing (RCPS): the pieces that make the PS model RC-equivariant.

A PS hidden state has 2*d channels: [forward half | RC half]. Reverse-complementing the input
reverses the length axis and the whole channel axis of every hidden state (``rc_flip``), which
swaps the halves and mirrors each of them. Every module below commutes with that operation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import kernels_for


def rc_flip(x: Tensor) -> Tensor:
    """Reverse length (dim -2) and channels (dim -1): the action of RC on a [.., L, C] hidden state."""
    return x.flip(dims=(-2, -1))


class RCPSEmbedding(nn.Module):
    """``concat[E(ids), rc_flip(E(rc_ids))]`` with ``rc_ids = complement_map[flip_L(ids)]``."""

    def __init__(self, vocab_size: int, d_model: int, complement_map: Sequence[int]) -> None:
        super().__init__()
        # Persistent: the released checkpoints store it.
        self.register_buffer("complement_map", torch.tensor(list(complement_map), dtype=torch.long))
        self.embedding = nn.Embedding(vocab_size, d_model)

    def forward(self, input_ids: Tensor) -> Tensor:
        # rc_flip(E(complement[flip_L(ids)]))[t] = flip_C(E[complement[ids[t]]]): one lookup in a
        # [vocab, 2 * d_model] table instead of two lookups, a flip and a cat of [B, L, d] tensors.
        weight = self.embedding.weight
        table = torch.cat([weight, weight.flip(-1)[self.complement_map]], dim=-1)
        return F.embedding(input_ids, table)


class RCPSWrapper(nn.Module):
    """Makes any length-preserving module M equivariant: ``concat[M(x_fwd), rc_flip(M(rc_flip(x_rc)))]``."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: Tensor) -> Tensor:
        x_fwd, x_rc = x.chunk(2, dim=-1)
        forward_rc = getattr(self.submodule, "forward_rc", None)
        if forward_rc is not None and kernels_for(x) is None:
            # CPU path: the sub-module computes rc_flip(M(rc_flip(x_rc))) without flipping (BiMamba.forward_rc).
            return torch.cat([self.submodule(x_fwd), forward_rc(x_rc)], dim=-1)
        # One call on a doubled batch instead of two calls: same result, better throughput on a GPU.
        out = self.submodule(torch.cat([x_fwd, rc_flip(x_rc)], dim=0))
        out_fwd, out_rc = out.chunk(2, dim=0)
        return torch.cat([out_fwd, rc_flip(out_rc)], dim=-1)


def rcps_add_norm(summed: Tensor, norm: nn.Module, swap_halves: bool) -> tuple[Tensor, Tensor]:
    """Normalise a PS residual stream ``summed = h + residual``; returns (normalised, new residual).

    The forward half is normalised directly, the RC half in RC orientation (so the same norm
    weight meets the same strand channel). ``swap_halves=True`` reproduces the fused add-norm path
    the checkpoints were trained with: it feeds the *second* half into the forward slot and the
    first into the RC slot, and carries the residual swapped as well (``[s2, s1]``). Swapping is
    itself RC-equivariant, so both variants are equivariant, but only the swapping one matches
    the released weights. The final norm of the model does not swap.
    """
    s1, s2 = summed.chunk(2, dim=-1)
    first, second = (s2, s1) if swap_halves else (s1, s2)
    normed = torch.cat([norm(first), rc_flip(norm(rc_flip(second)))], dim=-1)
    residual = torch.cat([first, second], dim=-1) if swap_halves else summed
    return normed, residual


def rms_norm_into(x: Tensor, weight: Tensor, eps: float, out: Tensor) -> Tensor:
    """``out = x / sqrt(mean(x^2) + eps) * weight`` over the last dim, written into ``out`` (may be x).

    x and out may be strided views (the halves of a PS hidden state). The same arithmetic, in the
    same order, as norm.RMSNorm (statistics in at least fp32), with one temporary of x's size (the
    squares) instead of three and no final cast copy.
    """
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc = x.to(ct)
    scale = xc.pow(2).mean(dim=-1, keepdim=True).add_(eps).rsqrt_()
    if out.dtype == ct:
        return torch.mul(xc, scale, out=out).mul_(weight.to(ct))
    return out.copy_((xc * scale).mul_(weight.to(ct)))


def rcps_add_norm_lean(hidden: Tensor, residual: Tensor | None, norm: nn.Module, swap_halves: bool,
                       residual_dtype: torch.dtype, reuse_hidden: bool) -> tuple[Tensor, Tensor]:
    """``rcps_add_norm(hidden + residual, ...)`` without flips or concatenations (inference only).

    Normalising the RC half in RC orientation, ``rc_flip(norm(rc_flip(s)))``, is the same as
    normalising s with the channel-reversed weight (the statistics are per position and do not
    depend on channel order). The sum is written straight into the new residual's two halves
    (swapped when ``swap_halves``), the normalised tensor into ``hidden`` when ``reuse_hidden``
    (the caller no longer needs it) and the dtypes allow. Returns (normalised in hidden's dtype,
    new residual in ``residual_dtype``).
    """
    h1, h2 = hidden.chunk(2, dim=-1)
    if swap_halves:
        h1, h2 = h2, h1
    new_residual = torch.empty(hidden.shape, dtype=residual_dtype, device=hidden.device)
    n1, n2 = new_residual.chunk(2, dim=-1)
    if residual is None:
        n1.copy_(h1)
        n2.copy_(h2)
    else:
        r1, r2 = residual.chunk(2, dim=-1)
        if swap_halves:
            r1, r2 = r2, r1
        # hidden.to(residual.dtype) + residual, as add_residual
        torch.add(h1.to(residual.dtype), r1, out=n1)
        torch.add(h2.to(residual.dtype), r2, out=n2)
    normed = hidden if reuse_hidden else torch.empty_like(hidden)
    o1, o2 = normed.chunk(2, dim=-1)
    rms_norm_into(n1, norm.weight, norm.eps, o1)
    rms_norm_into(n2, norm.weight.flip(0), norm.eps, o2)
    return normed, new_residual


class RCPSLMHead(nn.Module):
    """RC-equivariant LM head: ``logits = W x_fwd + W[complement_map] flip_C(x_rc)``.

    Logits of the RC sequence are the flipped logits of the sequence with the vocabulary
    complemented (A<->T, C<->G).
    """

    def __init__(self, d_model: int, vocab_size: int, complement_map: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(list(complement_map), dtype=torch.long))
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x_fwd, x_rc = x.chunk(2, dim=-1)
        weight = self.lm_head.weight
        return F.linear(x_fwd, weight) + F.linear(x_rc.flip(-1), weight[self.complement_map])
