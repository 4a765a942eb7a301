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
        rc_ids = self.complement_map[input_ids.flip(-1)]
        return torch.cat([self.embedding(input_ids), rc_flip(self.embedding(rc_ids))], dim=-1)


class RCPSWrapper(nn.Module):
    """Makes any length-preserving module M equivariant: ``concat[M(x_fwd), rc_flip(M(rc_flip(x_rc)))]``."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: Tensor) -> Tensor:
        x_fwd, x_rc = x.chunk(2, dim=-1)
        # One call on a doubled batch instead of two calls: same result, better throughput.
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
