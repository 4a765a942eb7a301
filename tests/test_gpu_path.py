"""The GPU code path of the model, run on CPU with mamba-ssm's own reference functions as its kernels.

A GPU run calls mamba-ssm's ``selective_scan_fn``, causal-conv1d's ``causal_conv1d_fn`` and
mamba-ssm's fused add + RMSNorm ``rms_norm_fn`` (through ``caduceus_vep.model.kernels``). Here the
same code path runs on CPU tensors with:

- ``selective_scan_fn``: mamba-ssm's real Python wrapper (``SelectiveScanFn``: contiguity fixes, B/C
  reshaped to groups, ``out_z`` returned) over a stub ``selective_scan_cuda.fwd`` that applies the
  CUDA extension's input checks (selective_scan.cpp: dtypes, shapes, unit last strides) and computes
  with mamba-ssm's ``selective_scan_ref``;
- ``rms_norm_fn``: mamba-ssm's ``rms_norm_ref`` (fp32 arithmetic, ``upcast=True``, as the Triton
  kernel) with the output dtypes of ``LayerNormFn.forward``/``_layer_norm_fwd``;
- ``causal_conv1d_fn``: a plain-PyTorch function of the same signature with causal_conv1d.cpp's
  input checks.

mamba-ssm's Python files come from its PyPI sdist (nothing is built), cached under
``~/.cache/caduceus-vep/`` (``$XDG_CACHE_HOME`` is honoured; ``CADUCEUS_VEP_MAMBA_SDIST_DIR``
overrides the folder). Without network the tests skip, except on CI (``CI`` set), where they fail.
``CADUCEUS_VEP_MAMBA_SDIST_DIR`` may point at a folder holding the sdist for offline runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import math
import os
import subprocess
import sys
import tarfile
import types
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from caduceus_vep.model import CaduceusConfig, build_caduceus
from caduceus_vep.model.kernels import Kernels, kernels_for, use_kernels
from caduceus_vep.model.scan import scan_with_kernel, selective_scan

# Two releases inside the [gpu] extra's range (mamba-ssm>=1.2,<2.3): the 1.2 line the Caduceus
# checkpoints were trained with and the newest 2.2 release. sha256 of the PyPI files.
MAMBA_SDISTS = {
    "1.2.2": "e1acce5f1476dad55c3d03d98db9cf454204bb53cea1265e6ae9fc9e2b1cc811",
    "2.2.4": "e4114c69302796c91b71e90032c2d974f611608fab331582a80de6eaf075efb9",
}
# mamba-ssm's selective_scan_interface imports einops (not one of our dependencies).
EINOPS_WHEEL = ("0.8.1", "919387eb55330f5757c6bea9165c5ff5cfe63a642682ea788a6d472576d81737")
ON_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
FLOATS = (torch.float32, torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------
# Fetching mamba-ssm's sources (and einops) into a cache, without building anything.

def cache_dir() -> Path:
    if os.environ.get("CADUCEUS_VEP_MAMBA_SDIST_DIR"):
        return Path(os.environ["CADUCEUS_VEP_MAMBA_SDIST_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "caduceus-vep" / "mamba-ssm-sources"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pypi_url(project: str, version: str, filename_suffix: str) -> str:
    """The file URL of one release from PyPI's JSON API (used when ``pip download`` fails)."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{project}/{version}/json", timeout=60) as response:
        release = json.load(response)
    for entry in release["urls"]:
        if entry["filename"].endswith(filename_suffix):
            return entry["url"]
    raise RuntimeError(f"PyPI lists no {filename_suffix} file for {project}=={version}")


def fetch(project: str, version: str, sha256: str, *, wheel: bool) -> Path:
    """The sdist (or pure-Python wheel) of ``project==version`` in the cache, downloaded if missing.

    ``pip download`` first (it honours the user's index and proxy settings); for an sdist pip has
    to prepare its metadata, which runs mamba-ssm's setup.py (it imports torch, hence
    ``--no-build-isolation``, and skips CUDA with ``MAMBA_SKIP_CUDA_BUILD``). When that fails, the
    file is taken from PyPI's JSON API. Either way its sha256 must match.
    """
    folder = cache_dir()
    stem = f"{project.replace('-', '_')}-{version}"
    suffix = "-py3-none-any.whl" if wheel else ".tar.gz"
    target = folder / f"{stem}{suffix}"
    if target.exists() and _sha256(target) == sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    kind = ["--only-binary", ":all:"] if wheel else ["--no-binary", ":all:", "--no-build-isolation"]
    env = {**os.environ, "MAMBA_SKIP_CUDA_BUILD": "TRUE", "MAMBA_FORCE_BUILD": "FALSE", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *kind, f"{project}=={version}", "-d", str(folder)],
                       env=env, check=True, capture_output=True, text=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        errors.append(f"pip download: {getattr(exc, 'stderr', '') or exc}"[-600:])
    if not (target.exists() and _sha256(target) == sha256):
        try:
            partial = target.with_suffix(target.suffix + ".part")
            with urllib.request.urlopen(_pypi_url(project, version, suffix), timeout=120) as response:
                partial.write_bytes(response.read())
            partial.replace(target)
        except Exception as exc:  # noqa: BLE001 - no network, proxy, HTTP error: reported below
            errors.append(f"PyPI JSON API: {type(exc).__name__}: {exc}")
    if not target.exists():
        raise RuntimeError(f"could not fetch {project}=={version}: " + " | ".join(errors))
    if _sha256(target) != sha256:
        raise RuntimeError(f"{target} has sha256 {_sha256(target)}, expected {sha256}")
    return target


def unpacked_sources(version: str) -> Path:
    """The folder holding the ``mamba_ssm`` package of the sdist (unpacked once)."""
    sdist = fetch("mamba-ssm", version, MAMBA_SDISTS[version], wheel=False)
    root = sdist.parent / f"mamba_ssm-{version}"
    if not (root / "mamba_ssm" / "ops" / "selective_scan_interface.py").exists():
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"mamba_ssm-{version}/mamba_ssm/") and m.name.endswith(".py")]
            try:
                tar.extractall(sdist.parent, members=members, filter="data")
            except TypeError:  # Python without extraction filters (< 3.10.12 / 3.11.4); members are plain .py files
                tar.extractall(sdist.parent, members=members)  # noqa: S202
    return root


# ----------------------------------------------------------------------------------------------
# Stubs for the compiled modules, and the reference kernels.

class _KernelCheck(RuntimeError):
    """An input the CUDA kernel would reject (one of its TORCH_CHECKs)."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise _KernelCheck(what)


def _no_autocast(device_type: str):
    # Custom CUDA kernels ignore autocast; their references must too (CPU autocast would turn the
    # references' einsums and convolutions into bf16 ops).
    return torch.autocast(device_type=device_type, enabled=False)


def make_selective_scan_cuda(selective_scan_ref) -> types.ModuleType:
    """A stand-in for the ``selective_scan_cuda`` extension: the checks of selective_scan.cpp's
    ``selective_scan_fwd``, then mamba-ssm's ``selective_scan_ref``."""

    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        input_type = u.dtype
        _check(input_type in FLOATS, f"u dtype {u.dtype}")
        _check(A.dtype == torch.float32, f"A (weight type) must be fp32, got {A.dtype}")
        _check(delta.dtype == input_type, f"delta dtype {delta.dtype} != u dtype {input_type}")
        _check(B.dim() == 4 and C.dim() == 4, "B and C reach the extension as [batch, groups, d_state, L]")
        _check(B.dtype == input_type and C.dtype == input_type, f"variable B/C dtype {B.dtype}/{C.dtype} != {input_type}")
        _check(u.stride(-1) == 1 and delta.stride(-1) == 1, "u and delta need stride(-1) == 1")
        batch, dim, seqlen = u.shape
        dstate = A.shape[1]
        _check(dstate <= 256, "d_state <= 256")
        _check(tuple(delta.shape) == (batch, dim, seqlen), f"delta shape {tuple(delta.shape)}")
        _check(tuple(A.shape) == (dim, dstate), f"A shape {tuple(A.shape)}")
        for name, t in (("B", B), ("C", C)):
            _check(tuple(t.shape) == (batch, t.shape[1], dstate, seqlen), f"{name} shape {tuple(t.shape)}")
            _check(t.stride(-1) == 1, f"{name} needs stride(-1) == 1")
        for name, t in (("D", D), ("delta_bias", delta_bias)):
            if t is not None:
                _check(t.dtype == torch.float32, f"{name} must be fp32, got {t.dtype}")
                _check(tuple(t.shape) == (dim,) and t.stride(-1) == 1, f"{name} shape {tuple(t.shape)}")
        if z is not None:
            _check(z.dtype == input_type, f"z dtype {z.dtype} != {input_type}")
            _check(z.stride(-1) == 1 and tuple(z.shape) == (batch, dim, seqlen), "z shape/stride")
        with _no_autocast(u.device.type):
            y = selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        n_chunks = math.ceil(seqlen / 2048)
        states = torch.zeros(batch, dim, n_chunks, 2 * dstate, dtype=A.dtype)  # only read for last_state
        if z is None:
            return [y, states]
        # With z the forward returns out_z = out * silu(z); `out` itself is kept for the backward only.
        return [torch.empty_like(delta), states, y]

    module = types.ModuleType("selective_scan_cuda")
    module.fwd = fwd
    return module


def make_triton_stub() -> tuple[types.ModuleType, types.ModuleType]:
    """Enough of ``triton`` for mamba-ssm's layer-norm module to import: decorators that do nothing.
    The Triton kernels themselves are never called (the reference replaces ``rms_norm_fn``)."""

    class Config:
        def __init__(self, kwargs=None, num_warps=4, num_stages=2, **extra):
            self.kwargs, self.num_warps, self.num_stages = kwargs or {}, num_warps, num_stages

    def decorator_factory(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used bare: @triton.jit
        return lambda fn: fn  # used with arguments: @triton.autotune(...)

    triton = types.ModuleType("triton")
    triton.__version__ = "0.0-stub"
    triton.Config = Config
    triton.jit = triton.autotune = triton.heuristics = decorator_factory
    triton.next_power_of_2 = lambda n: 1 << (int(n) - 1).bit_length()
    triton.cdiv = lambda a, b: -(-a // b)
    language = types.ModuleType("triton.language")
    language.constexpr = type("constexpr", (), {})
    language.__getattr__ = lambda name: language.constexpr  # dtypes etc. used in annotations only
    triton.language = language
    return triton, language


def causal_conv1d_reference(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                            final_states_out=None, activation=None):
    """``causal_conv1d_fn`` in plain PyTorch, with causal_conv1d.cpp's input checks (forward only).

    out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - (width - 1) + k]), zeros before t = 0,
    computed in fp32 (as the kernel) and returned in x's dtype.
    """
    if activation not in (None, "silu", "swish"):
        raise NotImplementedError("activation must be None, silu, or swish")
    _check(seq_idx is None and initial_states is None and not return_final_states and final_states_out is None,
           "the model never passes seq_idx or states")
    if x.stride(2) != 1 and x.stride(1) != 1:  # as CausalConv1dFn.forward
        x = x.contiguous()
    _check(x.dtype in FLOATS and weight.dtype in FLOATS, f"dtypes x {x.dtype}, weight {weight.dtype}")
    _, dim, seqlen = x.shape
    width = weight.shape[-1]
    _check(tuple(weight.shape) == (dim, width), f"weight shape {tuple(weight.shape)} for dim {dim}")
    _check(2 <= width <= 4, "width between 2 and 4")
    if x.stride(1) == 1 and x.stride(2) > 1:  # channel-last layout
        _check(dim % 8 == 0, "channel-last needs dim % 8 == 0")
        _check(x.stride(2) % 8 == 0 and x.stride(0) % 8 == 0, "channel-last needs x.stride(0), x.stride(2) multiples of 8")
    if bias is not None:
        _check(bias.dtype == weight.dtype and bias.stride(-1) == 1 and tuple(bias.shape) == (dim,), "bias dtype/shape")
    with _no_autocast(x.device.type):
        out = F.conv1d(x.float(), weight.float().unsqueeze(1), None if bias is None else bias.float(),
                       padding=width - 1, groups=dim)[..., :seqlen]
        if activation is not None:
            out = F.silu(out)
    return out.to(x.dtype)


def make_rms_norm_fn(rms_norm_ref, seen: list):
    """``rms_norm_fn`` (keyword arguments as both mamba-ssm lines take them) over ``rms_norm_ref``.

    Dtypes as ``LayerNormFn.forward`` / ``_layer_norm_fwd``: the sum x + residual and the
    normalisation in fp32; y in x's dtype; the returned residual in the residual's dtype, or fp32
    when ``residual_in_fp32`` and there is none, else x's dtype. ``seen`` collects (x dtype,
    residual dtype or None) per call.
    """

    def rms_norm_fn(x, weight, bias, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-6):
        if residual is not None:
            _check(residual.shape == x.shape, f"residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
        _check(tuple(weight.shape) == (x.shape[-1],), f"weight shape {tuple(weight.shape)}")
        residual_dtype = residual.dtype if residual is not None else (torch.float32 if residual_in_fp32 else x.dtype)
        seen.append((x.dtype, None if residual is None else residual.dtype))
        with _no_autocast(x.device.type):
            out, summed = rms_norm_ref(x, weight, bias, residual=residual, eps=eps, prenorm=True, upcast=True)
        return (out, summed.to(residual_dtype)) if prenorm else out

    return rms_norm_fn


_STUBBED = ("mamba_ssm", "selective_scan_cuda", "triton", "causal_conv1d", "causal_conv1d_cuda")


@contextlib.contextmanager
def _isolated_modules():
    """The stubs and the sdist's modules leave no trace in sys.modules (real packages, if any, come back)."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in _STUBBED}
    for k in saved:
        del sys.modules[k]
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in _STUBBED]:
            del sys.modules[k]
        sys.modules.update(saved)


@dataclasses.dataclass
class Reference:
    """The reference kernels of one mamba-ssm release, counting their calls."""

    version: str
    kernels: Kernels
    calls: Counter
    #: (x dtype, residual dtype or None) of every rms_norm_fn call.
    norm_dtypes: list

    def reset(self) -> None:
        self.calls.clear()
        self.norm_dtypes.clear()


def _counted(calls: Counter, name: str, fn):
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return fn(*args, **kwargs)
    return wrapper


def load_reference(version: str) -> Reference:
    """mamba-ssm ``version``'s Python code with its compiled parts stubbed, as kernels for CPU tensors."""
    root = unpacked_sources(version)
    try:
        importlib.import_module("einops")
    except ImportError:
        # A pure-Python wheel imports from its zip; it stays on sys.path (einops loads backends lazily).
        sys.path.append(str(fetch("einops", EINOPS_WHEEL[0], EINOPS_WHEEL[1], wheel=True)))
    calls: Counter = Counter()
    norm_dtypes: list = []
    with _isolated_modules():
        triton, language = make_triton_stub()
        extension = types.ModuleType("selective_scan_cuda")  # fwd is set once selective_scan_ref exists
        # None in sys.modules makes `import causal_conv1d` raise ImportError: "not installed".
        sys.modules.update({"triton": triton, "triton.language": language, "selective_scan_cuda": extension,
                            "causal_conv1d": None, "causal_conv1d_cuda": None})
        # The package without its __init__, which would import every model of the release.
        package = types.ModuleType("mamba_ssm")
        package.__path__ = [str(root / "mamba_ssm")]
        sys.modules["mamba_ssm"] = package
        interface = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        norm_module = "layer_norm" if (root / "mamba_ssm" / "ops" / "triton" / "layer_norm.py").exists() else "layernorm"
        norm = importlib.import_module(f"mamba_ssm.ops.triton.{norm_module}")
    extension.fwd = _counted(calls, "selective_scan_cuda.fwd", make_selective_scan_cuda(interface.selective_scan_ref).fwd)
    assert interface.selective_scan_cuda is extension  # mamba-ssm's wrapper calls the stub
    kernels = Kernels(
        selective_scan_fn=_counted(calls, "selective_scan_fn", interface.selective_scan_fn),
        causal_conv1d_fn=_counted(calls, "causal_conv1d_fn", causal_conv1d_reference),
        rms_norm_fn=_counted(calls, "rms_norm_fn", make_rms_norm_fn(norm.rms_norm_ref, norm_dtypes)),
        source=f"mamba-ssm {version} reference functions (CPU)",
    )
    return Reference(version, kernels, calls, norm_dtypes)


@functools.cache
def _reference_or_error(version: str) -> Reference | str:
    try:
        return load_reference(version)
    except RuntimeError as exc:
        return str(exc)


def reference_kernels(version: str) -> Reference:
    """The reference of ``version``; fails on CI when it cannot be had, skips (saying why) elsewhere."""
    got = _reference_or_error(version)
    if isinstance(got, Reference):
        return got
    if ON_CI:
        pytest.fail(f"CI must run the GPU-path test, but mamba-ssm's sources could not be fetched: {got}")
    pytest.skip(f"mamba-ssm {version} sources not available (no network?): {got}. Run once with network "
                f"access, or put the sdist into {cache_dir()} (or set CADUCEUS_VEP_MAMBA_SDIST_DIR)")


@pytest.fixture(params=sorted(MAMBA_SDISTS))
def reference(request) -> Reference:
    return reference_kernels(request.param)


@pytest.fixture
def reference_trained_line() -> Reference:
    """mamba-ssm 1.2.2: the release line the Caduceus checkpoints were trained with."""
    return reference_kernels("1.2.2")


# ----------------------------------------------------------------------------------------------
# Models and inputs.

def model_config(rcps: bool, d_model: int = 32, n_layer: int = 2, residual_in_fp32: bool = False) -> CaduceusConfig:
    return CaduceusConfig.from_dict({
        "d_model": d_model, "n_layer": n_layer, "vocab_size": 16, "rcps": rcps, "residual_in_fp32": residual_in_fp32,
        "fused_add_norm": True, "ssm_cfg": {"d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": "auto"},
    })


def perturbed_model(config: CaduceusConfig, seed: int = 0) -> torch.nn.Module:
    """A random model in which every parameter matters: norm weights != 1, D random, A_log jittered
    (the initialisation's D = 1 and unit norm weights would hide a dropped D or norm weight)."""
    model = build_caduceus(config, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(("norm.weight", "norm_f.weight")):
                p.copy_(1 + 0.3 * noise)
            elif name.endswith(".D"):
                p.copy_(noise)
            elif name.endswith("A_log"):
                p.add_(0.3 * noise)
    return model


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, 11, (batch, length), generator=g)  # A, C, G, T
    ids[:, ::17] = 11  # some N
    return ids


def gpu_path(reference: Reference, model, ids: torch.Tensor, autocast: torch.dtype | None = None) -> torch.Tensor:
    """The model's GPU code path on CPU tensors (reference kernels; autocast like embed.autocast_context)."""
    reference.reset()
    ctx = torch.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.inference_mode(), use_kernels(reference.kernels, ["cpu"]), ctx:
        return model(ids)


def cpu_path(model, ids: torch.Tensor) -> torch.Tensor:
    assert kernels_for(ids) is None
    with torch.inference_mode():
        return model(ids)


def pooled(hidden: torch.Tensor, rcps: bool, lo: int, hi: int) -> torch.Tensor:
    """The embedding stage's feature: mean over the pooling window (PS: forward half and RC half)."""
    return hidden[:, lo:hi].float().mean(dim=1)


def expected_calls(config: CaduceusConfig) -> dict[str, int]:
    # Per layer: BiMamba runs two directions (the PS doubled batch is one call each);
    # norms: every block and the final norm, once per half for PS.
    per_norm = 2 if config.rcps else 1
    return {"selective_scan_fn": 2 * config.n_layer, "selective_scan_cuda.fwd": 2 * config.n_layer,
            "causal_conv1d_fn": 2 * config.n_layer, "rms_norm_fn": per_norm * (config.n_layer + 1)}


# ----------------------------------------------------------------------------------------------
# Tests.

def test_kernels_are_looked_up_per_device_and_override_nests() -> None:
    cpu = torch.zeros(1)
    assert kernels_for(cpu) is None  # the CPU path never imports mamba-ssm
    outer, inner = Kernels(source="outer"), Kernels(source="inner")
    with use_kernels(outer, ["cpu"]):
        assert kernels_for(cpu) is outer
        with use_kernels(inner, ["cpu"]):
            assert kernels_for(cpu) is inner
        with use_kernels(Kernels(source="gpu only"), ["cuda"]):
            assert kernels_for(cpu) is outer
        assert kernels_for(cpu) is outer
    assert kernels_for(cpu) is None


def test_reference_extension_applies_the_cuda_checks(reference: Reference) -> None:
    """The stub extension rejects what selective_scan.cpp rejects (so a dtype slip on the GPU path fails here)."""
    from conftest import random_scan_inputs

    x = random_scan_inputs(12, d_inner=8, n=4)
    fn = reference.kernels.selective_scan_fn
    with pytest.raises(_KernelCheck, match="D must be fp32"):
        fn(**{**x, "D": x["D"].bfloat16()}, delta_softplus=True)
    with pytest.raises(_KernelCheck, match="delta dtype"):
        fn(**{**x, "delta": x["delta"].double()}, delta_softplus=True)
    with pytest.raises(_KernelCheck, match="z dtype"):
        fn(**{**x, "z": x["z"].half()}, delta_softplus=True)


@pytest.mark.parametrize("layout", ["contiguous", "model"])
def test_scan_through_mamba_ssm_matches_the_cpu_scan(reference: Reference, layout: str) -> None:
    """scan_with_kernel (the GPU call: argument order, fp32 A/D/delta_bias, softplus, z gate) vs the CPU scan."""
    from conftest import random_scan_inputs

    x = random_scan_inputs(80, d_inner=16, n=8, seed=3)
    if layout == "model":  # the strided views Mamba.mix passes (delta, B, C, z transposed from [B, L, ...])
        x = {k: (v.transpose(1, 2).contiguous().transpose(1, 2) if v.dim() == 3 else v) for k, v in x.items()}
    reference.reset()
    got = scan_with_kernel(reference.kernels.selective_scan_fn, **x, delta_softplus=True)
    want = selective_scan(**x, delta_softplus=True)
    assert reference.calls["selective_scan_cuda.fwd"] == 1
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_causal_conv_through_the_kernel_signature_matches_the_module(reference: Reference) -> None:
    model = perturbed_model(model_config(rcps=False))
    mamba = model.backbone.layers[0].mixer.mamba_fwd
    xz = mamba.in_proj(torch.randn(2, 40, model.config.d_model, generator=torch.Generator().manual_seed(5)))
    x = xz.chunk(2, dim=-1)[0].transpose(1, 2)  # channel-last [B, d_inner, L], as Mamba.mix passes it
    reference.reset()
    with torch.no_grad():
        with use_kernels(reference.kernels, ["cpu"]):
            got = mamba._conv_silu(x)
        want = mamba._conv_silu(x)
    assert reference.calls["causal_conv1d_fn"] == 1
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
def test_gpu_path_matches_cpu_path_fp32(reference: Reference, rcps: bool) -> None:
    config = model_config(rcps, d_model=32, n_layer=3)
    model = perturbed_model(config, seed=11)
    ids = random_ids(2, 96)
    want = cpu_path(model, ids)
    got = gpu_path(reference, model, ids)
    assert dict(reference.calls) == expected_calls(config)  # every kernel of the GPU path ran
    assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pooled(got, rcps, 24, 72), pooled(want, rcps, 24, 72), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("rcps,residual_in_fp32", [(True, False), (False, False), (True, True)], ids=["PS", "Ph", "PS-res32"])
def test_gpu_path_under_autocast_stays_within_the_precision_of_the_cpu_path(
    reference: Reference, dtype: torch.dtype, rcps: bool, residual_in_fp32: bool,
) -> None:
    """Autocast as a GPU run uses it: the kernels get the dtypes they check, and the GPU path's
    error against the fp32 CPU path is no larger than the CPU path's own error under the same autocast."""
    config = model_config(rcps, d_model=32, n_layer=3, residual_in_fp32=residual_in_fp32)
    model = perturbed_model(config, seed=12)
    ids = random_ids(2, 96, seed=1)
    exact = cpu_path(model, ids)
    got = gpu_path(reference, model, ids, autocast=dtype)
    assert dict(reference.calls) == expected_calls(config)
    # As under CUDA autocast upstream: the embedding (and so the residual stream) stays fp32, the
    # mixer outputs are in the autocast dtype.
    per_norm = 2 if rcps else 1
    assert reference.norm_dtypes[:per_norm] == [(torch.float32, None)] * per_norm
    assert set(reference.norm_dtypes[per_norm:]) == {(dtype, torch.float32)}
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        cpu_low = model(ids)
    assert got.dtype == cpu_low.dtype == dtype
    scale = exact.abs().max()
    err_gpu = (got.float() - exact).abs().max() / scale
    err_cpu = (cpu_low.float() - exact).abs().max() / scale
    assert err_gpu < 0.05, f"{dtype} GPU path: max error {err_gpu:.3g} of the largest |h|"
    assert err_gpu <= 2 * err_cpu + 1e-3, f"GPU path error {err_gpu:.3g} vs the CPU path's {err_cpu:.3g}"
    feat_err = (pooled(got, rcps, 24, 72) - pooled(exact, rcps, 24, 72)).abs().max()
    assert feat_err < 0.02 * pooled(exact, rcps, 24, 72).abs().max()


@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
def test_gpu_path_matches_cpu_path_at_the_released_size(reference_trained_line: Reference, rcps: bool) -> None:
    """d_model 256, 16 layers (the 131k checkpoints' shape), a short window."""
    reference = reference_trained_line
    config = model_config(rcps, d_model=256, n_layer=16)
    model = perturbed_model(config, seed=13)
    ids = random_ids(1, 48, seed=2)
    want = cpu_path(model, ids)
    got = gpu_path(reference, model, ids)
    assert dict(reference.calls) == expected_calls(config)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
