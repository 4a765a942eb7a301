"""Selective scan (the S6 recurrence of Mamba v1) in plain PyTorch, with an optional CUDA kernel.

Semantics follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` for the case the
Caduceus checkpoints use (real A, input-dependent B and C with one group)::

    u, delta: [B, D, L]    A: [D, N]    B, C: [B, N, L]    D: [D]    z: [B, D, L]
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t            (then y_t * silu(z_t) if z is given)

The CPU design (chosen by benchmark, see ``selective_scan``): the sequence is cut into chunks;
inside a chunk the decay factors ``exp(delta*A)`` and the inputs ``delta*B*u`` are computed in one
vectorised pass, the recurrence itself is a tight loop of one fused multiply-add per position, and
the readout ``<C_t, h_t>`` is one batched contraction per chunk. Only ``[chunk, B, D, N]`` tensors
are ever built, never the ``[B, D, L, N]`` tensor of the whole sequence. The loop only multiplies by
factors in (0, 1], so nothing can overflow however large ``delta`` gets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Positions per chunk. Measured on one CPU thread (D=512, N=16, L=1536): 32-64 is fastest;
#: longer chunks fall out of cache, shorter ones pay more per-chunk overhead.
DEFAULT_CHUNK = 64


def _prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _compute_dtype(u: Tensor) -> torch.dtype:
    # Half precision would lose the state over long sequences: accumulate in fp32 like the kernel.
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The recurrence written out one position at a time; slow, obviously correct, for tests."""
    out_dtype = u.dtype
    ct = _compute_dtype(u)
    u, delta, A, B, C = (t.to(ct) for t in (u, delta, A, B, C))
    delta = _prepare_delta(delta, None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    batch, d_inner, length = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])
    ys = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # [B, D, N]
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, d_inner, 0)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(ct))
    return y.to(out_dtype)


def _scan_chunked(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int
) -> Tensor:
    """y_t = <C_t, h_t> for the whole sequence, chunk by chunk (no D term, no gate)."""
    batch, d_inner, length = u.shape
    n_state = A.shape[1]
    y = u.new_empty(batch, d_inner, length)
    y_chunks = []  # used instead of y when autograd must see the graph
    h = u.new_zeros(batch, d_inner, n_state)
    # In-place writes into preallocated buffers are impossible when autograd needs the graph.
    track_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    # Time-major layout [L, B, ...] (cheap: these are small) so every slice below is contiguous.
    delta_u_tm = (delta * u).permute(2, 0, 1).contiguous()  # [L, B, D]
    delta_tm = delta.permute(2, 0, 1).contiguous()
    B_tm = B.permute(2, 0, 1).contiguous()  # [L, B, N]
    C_tm = C.permute(2, 0, 1).contiguous()
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        dt = delta_tm[start:stop]  # [T, B, D]
        b = B_tm[start:stop]  # [T, B, N]
        c = C_tm[start:stop]
        decay = (dt.unsqueeze(-1) * A).exp_()  # [T, B, D, N], every entry in (0, 1]
        drive = delta_u_tm[start:stop].unsqueeze(-1) * b.unsqueeze(2)  # [T, B, D, N]
        if track_grad:
            states = []
            for t in range(stop - start):
                h = torch.addcmul(drive[t], decay[t], h)
                states.append(h)
            hs = torch.stack(states)
        else:
            hs = drive  # overwritten in place: h_t replaces drive_t once it has been used
            for t in range(stop - start):
                h = torch.addcmul(drive[t], decay[t], h, out=hs[t])
        # [T, B, D, N] x [T, B, N] -> [B, D, T]: one batched matrix-vector product per chunk
        # (measured faster than producing [T, B, D] and transposing once at the end).
        y_chunk = torch.einsum("tbdn,tbn->bdt", hs, c)
        if track_grad:
            y_chunks.append(y_chunk)
        else:
            y[:, :, start:stop] = y_chunk
    return torch.cat(y_chunks, dim=-1) if y_chunks else y


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> Tensor:
    """Pure-PyTorch selective scan (any device), chunked so memory stays O(chunk * D * N)."""
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError("only input-dependent B and C of shape [batch, d_state, length] are supported")
    out_dtype = u.dtype
    ct = _compute_dtype(u)
    u, delta, A, B, C = (t.to(ct) for t in (u, delta, A, B, C))
    delta = _prepare_delta(delta, None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    y = _scan_chunked(u, delta, A, B, C, chunk)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(ct))
    return y.to(out_dtype)


def _cuda_kernel():
    """mamba_ssm's fused CUDA scan, or None when it is not installed (always the case on CPU hosts)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Selective scan with mamba_ssm's ``selective_scan_fn`` semantics; returns y of shape [B, D, L].

    Uses the mamba_ssm CUDA kernel when the tensors live on a GPU and the package imports,
    the chunked PyTorch implementation otherwise.
    """
    if u.is_cuda:
        kernel = _cuda_kernel()
        if kernel is not None:
            return kernel(
                u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
                D=None if D is None else D.float(),
                z=None if z is None else z.contiguous(),
                delta_bias=None if delta_bias is None else delta_bias.float(),
                delta_softplus=delta_softplus,
            )
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
