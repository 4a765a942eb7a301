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

On CPU, inference (no input requires grad) in fp32/bf16/fp16 normally runs a small fused C kernel
instead (``_scan_kernel.c``, compiled by ``pip install``): it keeps the [d_state] state of 16
channels in registers and fuses softplus, exp(delta*A), the update, the C readout, the D skip and
the silu(z) gate, which makes the scan a small part of the forward. When the compiled module is
missing (no C compiler at install time) the PyTorch scan is used, with a one-time logged warning.
``scan_backend()`` says which implementation runs; ``CADUCEUS_VEP_SCAN=torch`` forces PyTorch.
The kernel picks its instruction set at import (AVX-512, else AVX2+FMA, else portable C; its
``ISA`` string says which); ``CADUCEUS_VEP_SCAN_ISA=avx512|avx2|portable`` forces one, for tests.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .kernels import installed_kernels, kernels_for

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


log = logging.getLogger(__name__)

#: Environment variable choosing the CPU scan: "auto" (default: the compiled kernel when it
#: imports), "torch" (always the PyTorch scan) or "fused" (the compiled kernel, error if missing).
BACKEND_ENV = "CADUCEUS_VEP_SCAN"
_cpu_kernel_cache: list = []  # [module or None], filled on first use


def _cpu_kernel():
    """The compiled ``_scan_kernel`` module, or None (warned about once) when it is not built."""
    if not _cpu_kernel_cache:
        try:
            from . import _scan_kernel
        except ImportError as exc:
            _scan_kernel = None
            log.warning(
                "caduceus_vep: the compiled selective-scan kernel is not available (%s); using the "
                "PyTorch scan, which is several times slower on CPU. Reinstall the package with a C "
                "compiler present (pip install -e .) to build it.", exc,
            )
        _cpu_kernel_cache.append(_scan_kernel)
    return _cpu_kernel_cache[0]


def _cpu_choice() -> str:
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "torch", "fused"):
        raise ValueError(f"{BACKEND_ENV} must be 'auto', 'torch' or 'fused', got {choice!r}")
    return choice


def scan_backend(device: str | torch.device = "cpu") -> str:
    """Name of the selective scan that inference on ``device`` uses.

    ``"fused-c"`` (the compiled CPU kernel), ``"torch-chunked"`` (the PyTorch scan) or
    ``"mamba-ssm-cuda"`` (mamba_ssm's kernel, CUDA only). Training (inputs that require grad) and
    fp64 always use ``"torch-chunked"`` on CPU.
    """
    if torch.device(device).type == "cuda":
        return "mamba-ssm-cuda" if installed_kernels().selective_scan_fn is not None else "torch-chunked"
    choice = _cpu_choice()
    if choice == "torch":
        return "torch-chunked"
    if _cpu_kernel() is None:
        if choice == "fused":
            raise RuntimeError(f"{BACKEND_ENV}=fused but the compiled scan kernel is not available")
        return "torch-chunked"
    return "fused-c"


_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _fused_applies(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, *rest: Tensor | None) -> bool:
    tensors = [t for t in (u, delta, A, B, C, *rest) if t is not None]
    if u.device.type != "cpu" or u.dtype not in _FUSED_DTYPES or B.dim() != 3 or C.dim() != 3:
        return False
    if not 1 <= A.shape[1] <= 64 or any(t.device.type != "cpu" or t.dtype == torch.float64 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False  # the kernel has no backward: training uses the PyTorch scan
    return scan_backend("cpu") == "fused-c"


def selective_scan_fused(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    threads: int | None = None,
    reverse: bool = False,
) -> Tensor:
    """The compiled CPU kernel (forward only, fp32 arithmetic); same arguments as ``selective_scan``.

    Inputs may be strided views (no copies are made for fp32); the result is a [B, D, L] view of a
    [B, L, D]-contiguous tensor, the layout the output projection wants. ``threads`` defaults to
    ``torch.get_num_threads()``. ``reverse=True`` scans from the last position to the first (see
    ``selective_scan``) by handing the kernel pointers to the last position and negated length
    strides: the kernel only does pointer arithmetic with signed strides, so nothing is flipped.
    """
    kernel = _cpu_kernel()
    if kernel is None:
        raise RuntimeError("the compiled scan kernel is not available")
    batch, dim, length = u.shape
    n_state = A.shape[1]
    if A.shape != (dim, n_state) or B.shape != (batch, n_state, length) or C.shape != B.shape:
        raise ValueError(f"shape mismatch: u {tuple(u.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}")
    if delta.shape != u.shape or (z is not None and z.shape != u.shape):
        raise ValueError("delta and z must have the shape of u")
    f32 = torch.float32
    u, delta, B, C = (t.detach().to(f32) for t in (u, delta, B, C))
    A = A.detach().to(f32).contiguous()
    D = None if D is None else D.detach().to(f32).contiguous()
    delta_bias = None if delta_bias is None else delta_bias.detach().to(f32).contiguous()
    z = None if z is None else z.detach().to(f32)
    out = torch.empty(batch, length, dim, dtype=f32).transpose(1, 2)  # [B, D, L] view
    flip = reverse and length > 0

    def at(t: Tensor | None) -> tuple[int, tuple[int, int, int]]:
        """(pointer, element strides) of a [B, *, L] tensor; reversed: from its last position."""
        if t is None:
            return 0, (0, 0, 0)
        sb, sc, sl = t.stride()
        if not flip:
            return t.data_ptr(), (sb, sc, sl)
        return t.data_ptr() + (length - 1) * sl * t.element_size(), (sb, sc, -sl)

    (pu, su), (pd, sd), (pB, sB), (pC, sC), (pz, sz), (po, so) = (at(t) for t in (u, delta, B, C, z, out))
    ptr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
    kernel.scan_f32(
        pu, pd, ptr(A), pB, pC, ptr(D), pz, ptr(delta_bias), po,
        batch, dim, length, n_state,
        *su, *sd, *sB, *sC, *sz, *so,
        int(bool(delta_softplus)), int(threads if threads is not None else torch.get_num_threads()),
    )
    return out


def scan_with_kernel(
    kernel: Callable[..., Tensor],
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
    """Call mamba-ssm's ``selective_scan_fn`` with the dtypes its CUDA kernel checks (selective_scan.cpp).

    u, delta, z and the input-dependent B, C must share one dtype (the input type: fp32, fp16 or
    bf16 under autocast); A, D and delta_bias must be fp32. The kernel applies delta_bias and
    softplus itself and returns y * silu(z) [B, D, L] in the input type. Inputs with a non-unit
    last stride are made contiguous by selective_scan_fn itself.
    """
    dtype = u.dtype
    return kernel(
        u, delta.to(dtype), A.float(), B.to(dtype), C.to(dtype),
        D=None if D is None else D.float(),
        z=None if z is None else z.to(dtype),
        delta_bias=None if delta_bias is None else delta_bias.float(),
        delta_softplus=delta_softplus,
    )


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
    reverse: bool = False,
) -> Tensor:
    """Selective scan with mamba_ssm's ``selective_scan_fn`` semantics; returns y of shape [B, D, L].

    Uses mamba_ssm's kernel when ``kernels.kernels_for(u)`` offers one (CUDA tensors with mamba-ssm
    installed, or a test's ``kernels.use_kernels``), the compiled CPU kernel for CPU inference (see
    ``scan_backend``), the chunked PyTorch implementation otherwise.

    ``reverse=True`` runs the recurrence from the last position to the first: the result equals
    ``flip(scan(flip(u), flip(delta), A, flip(B), flip(C), D, flip(z)))`` along L. The compiled
    kernel does it without copies (the reverse direction of BiMamba then needs no flips); the other
    implementations flip their inputs and output.
    """
    kernels = kernels_for(u)
    if kernels is not None and kernels.selective_scan_fn is not None:
        scan = functools.partial(scan_with_kernel, kernels.selective_scan_fn)
    elif _fused_applies(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_fused(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse=reverse).to(u.dtype)
    else:
        scan = selective_scan_torch
    if not reverse:
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    fl = lambda t: None if t is None else t.flip(-1)  # noqa: E731
    return scan(fl(u), fl(delta), A, fl(B), fl(C), D, fl(z), delta_bias, delta_softplus).flip(-1)
