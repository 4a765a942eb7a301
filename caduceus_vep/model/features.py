"""Reverse-complement-aware per-position features from a Caduceus hidden state.

For every base i of a window we want two views of the same base: the forward-strand hidden state
and the one computed from the reverse-complement strand, position-aligned so that both describe
base i. Averaging the two ("conjoining") gives features that do not depend on which strand the
window was read from: the conjoined hidden state of rc(x) is the conjoined hidden state of x with
the length axis reversed, so any pooling symmetric in position (mean over the window, the centre
position of an odd-length window) is exactly RC-invariant.

PS models give both views in one pass (they are RC-equivariant by construction). Ph models are not
equivariant, so the RC view costs a second pass on the reverse-complement sequence ("post-hoc
conjoining").
"""

from __future__ import annotations

import torch
from torch import Tensor

from .caduceus import Caduceus
from .tokenizer import reverse_complement_ids


def ps_forward_hidden(hidden: Tensor) -> Tensor:
    """The forward half [B, L, d] of a PS hidden state [B, L, 2d]."""
    return hidden[..., : hidden.shape[-1] // 2]


def ps_rc_hidden(hidden: Tensor, *, upstream_length_flip: bool = False) -> Tensor:
    """The RC half [B, L, d] of a PS hidden state, channel-mirrored into forward orientation.

    The RC half at position i already describes base i (the PS embedding places the complement of
    base i at position i), only with its channels mirrored; reversing the channels gives the exact
    forward-half hidden state that the model computes for that base of the reverse-complement
    sequence: ``ps_rc_hidden(model(x)) == ps_forward_hidden(model(rc(x))).flip(length)``.

    ``upstream_length_flip=True`` also reverses the length axis, like the upstream Caduceus
    embedding-extraction code (``flip(dims=[1, 2])``); that pairs base i with base L-1-i, which is
    harmless after pooling over the whole window but not position-aligned.
    """
    rc_half = hidden[..., hidden.shape[-1] // 2 :]
    return rc_half.flip(dims=(-2, -1)) if upstream_length_flip else rc_half.flip(-1)


def ph_rc_hidden(model: Caduceus, input_ids: Tensor) -> Tensor:
    """For a Ph model: hidden state of the reverse-complement sequence, flipped back along length.

    Position i of the result describes base i of ``input_ids`` as read from the other strand.
    """
    rc_ids = reverse_complement_ids(input_ids, model.config.complement_list)
    return model(rc_ids).flip(-2)


def forward_and_rc_hidden(model: Caduceus, input_ids: Tensor, *, upstream_length_flip: bool = False) -> tuple[Tensor, Tensor]:
    """The forward hidden state [B, L, d_model] and the RC view of each base [B, L, d_model], PS or Ph.

    PS: one pass, the RC view from its second half (``ps_rc_hidden``; ``upstream_length_flip`` as
    there). Ph: the reverse-complement sequences join the same model call (one call of 2B rows
    instead of two of B, which keeps a GPU busier), the RC half flipped back along length
    (the same result as ``ph_rc_hidden``).
    """
    if model.is_rcps:
        hidden = model(input_ids)
        return ps_forward_hidden(hidden), ps_rc_hidden(hidden, upstream_length_flip=upstream_length_flip)
    both = model(torch.cat([input_ids, reverse_complement_ids(input_ids, model.config.complement_list)]))
    fwd, rc = both.chunk(2, dim=0)
    return fwd, rc.flip(-2)


def conjoined_hidden(model: Caduceus, input_ids: Tensor) -> Tensor:
    """Average of the forward and the position-aligned RC view [B, L, d_model], for PS or Ph."""
    fwd, rc = forward_and_rc_hidden(model, input_ids)
    return (fwd + rc) / 2
