"""The one place where the model finds the GPU kernels of mamba-ssm and causal-conv1d.

The GPU path of the model calls three functions, each with the signature of its upstream
package, when ``kernels_for(tensor)`` offers them for the tensor's device:

- ``selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False)``
  (``mamba_ssm.ops.selective_scan_interface``; CUDA),
- ``causal_conv1d_fn(x, weight, bias=None, activation=None)`` (``causal_conv1d``; CUDA),
- ``rms_norm_fn(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6)``,
  the fused add + RMSNorm (``mamba_ssm.ops.triton.layer_norm`` in mamba-ssm 2.x,
  ``mamba_ssm.ops.triton.layernorm`` in 1.2.x; Triton).

For CUDA tensors they are the installed packages' functions (imported lazily, on first use; a
missing package leaves that function ``None`` and the model uses its PyTorch code for that step).
Tensors on any other device get no kernels: the CPU path never imports mamba-ssm.

``use_kernels`` replaces them for a block of code, for the device types it names; the tests use
it to run the exact GPU code path on CPU with mamba-ssm's own reference functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import Tensor


@dataclasses.dataclass(frozen=True)
class Kernels:
    """The kernel functions the GPU path may call; ``None`` means "use the PyTorch code"."""

    selective_scan_fn: Callable[..., Tensor] | None = None
    causal_conv1d_fn: Callable[..., Tensor] | None = None
    rms_norm_fn: Callable[..., Any] | None = None
    #: Where the functions come from (for logs and benchmark reports).
    source: str = ""
    #: Why a function is missing: {function name: import error}.
    missing: dict[str, str] = dataclasses.field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """{function name: "available" or the reason it is not}."""
        return {name: "available" if getattr(self, name) is not None else self.missing.get(name, "not provided")
                for name in ("selective_scan_fn", "causal_conv1d_fn", "rms_norm_fn")}


def _first_import(candidates: Iterable[tuple[str, str]]) -> tuple[Callable | None, str]:
    """The first ``module.attribute`` that imports, or (None, the errors)."""
    errors = []
    for module, attribute in candidates:
        try:
            return getattr(importlib.import_module(module), attribute), ""
        except Exception as exc:  # noqa: BLE001 - a broken CUDA build raises OSError/RuntimeError, not only ImportError
            errors.append(f"{module}.{attribute}: {type(exc).__name__}: {exc}")
    return None, "; ".join(errors)


@functools.cache
def installed_kernels() -> Kernels:
    """The installed mamba-ssm / causal-conv1d functions (imported once; None for what is missing)."""
    found: dict[str, Callable | None] = {}
    missing: dict[str, str] = {}
    candidates = {
        "selective_scan_fn": [("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")],
        "causal_conv1d_fn": [("causal_conv1d", "causal_conv1d_fn")],
        "rms_norm_fn": [("mamba_ssm.ops.triton.layer_norm", "rms_norm_fn"),  # mamba-ssm >= 2.0
                        ("mamba_ssm.ops.triton.layernorm", "rms_norm_fn")],  # mamba-ssm 1.2.x
    }
    for name, where in candidates.items():
        found[name], error = _first_import(where)
        if found[name] is None:
            missing[name] = error
    versions = []
    for package in ("mamba_ssm", "causal_conv1d"):
        module, _ = _first_import([(package, "__version__")])
        if module is not None:
            versions.append(f"{package} {module}")
    return Kernels(**found, source="installed: " + (", ".join(versions) or "none"), missing=missing)


#: Stack of (kernels, device types) set by ``use_kernels``; the innermost wins.
_overrides: list[tuple[Kernels, frozenset[str]]] = []


@contextlib.contextmanager
def use_kernels(kernels: Kernels, device_types: Iterable[str] = ("cuda",)) -> Iterator[Kernels]:
    """Within the block, tensors on ``device_types`` get ``kernels`` instead of the installed ones.

    ``use_kernels(Kernels(), ["cuda"])`` runs a GPU without any kernel (the PyTorch code);
    ``use_kernels(reference, ["cpu"])`` runs the GPU code path on CPU tensors.
    """
    _overrides.append((kernels, frozenset(device_types)))
    try:
        yield kernels
    finally:
        _overrides.pop()


def kernels_for(tensor: Tensor) -> Kernels | None:
    """The kernels for ``tensor``'s device, or None: the model then runs its PyTorch code."""
    kind = tensor.device.type
    for kernels, device_types in reversed(_overrides):
        if kind in device_types:
            return kernels
    if kind == "cuda":
        return installed_kernels()
    return None
