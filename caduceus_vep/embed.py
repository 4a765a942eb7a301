"""The embedding driver: windows in, pooled features out (parquet keyed by variant id), for any model
family of ``caduceus_vep.model.registry`` (Caduceus, HyenaDNA, NT-v2, ...).

For every variant the ref and alt contexts (cut to the model's own ``context_length`` around the
SNP, :func:`centred_rows`) go through the model in one batch. Per sequence we keep the last hidden
state mean-pooled over the pooling window in the model's tokens or bins, clamped (protocol §2: the
index list ``clamp(v + arange(-w, w + 1), 0, T - 1)`` is gathered, so where the window runs off the
context the edge token counts once per clamped index), for the forward strand and, where the
model's ``rc_mode`` asks for it, for the reverse complement:

- Caduceus-PS (RC-equivariant): one pass; the RC features are its second half flipped along
  length and channels, exactly as the paper's embedding script does (this pools the RC view over
  the window mirrored about the sequence centre, one position off the forward window; see
  ``caduceus_vep.model.ps_rc_hidden``);
- Caduceus-Ph: a pass on the reverse complement, flipped back along length ("post-hoc
  conjoining" averages the two); the RC sequences join the forward ones in the same model call;
- models the paper uses with forward features only (HyenaDNA, NT-v2, Enformer; ``rc_rule:
  forward``): no RC pass; the stored RC columns are copies of the forward ones.

Which of these the classifier uses is the evaluation's business (see ``evaluate.py``); this stage
stores all four vectors (``ref_fwd``, ``alt_fwd``, ``ref_rc``, ``alt_rc``).

This module holds the model-facing part and the feature files; sharding, checkpoints and resume are
in ``caduceus_vep.shards``, the content-addressed feature cache in ``caduceus_vep.embed_cache``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from caduceus_vep.feature_file import DIGEST_COLUMN, FEATURE_COLUMNS, METADATA_KEY, FeatureBlock, read_block, read_embeddings, write_block, write_embeddings  # noqa: F401  (re-exported: the old home of the format)
from caduceus_vep.genome import Genome
from caduceus_vep.model.registry import LoadedModel, as_loaded
from caduceus_vep.windows import alt_sequence, fetch_context

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EmbedSettings:
    """How to run the model: variants per model call on a GPU and on the CPU, device, autocast dtype, CPU threads.

    The two batch sizes differ because the devices want opposite things: a GPU is busy only with
    many rows per call, while on the CPU one variant per call was fastest per token (its activations
    stay in cache; ``benchmarks/results/cpu_batch.md``).
    """

    batch_size: int = 8
    device: str = "auto"
    autocast_dtype: str = "bfloat16"
    threads: int = 1
    cpu_batch_size: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.cpu_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got batch_size {self.batch_size}, cpu_batch_size {self.cpu_batch_size}")
        if self.autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast_dtype must be one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast_dtype!r}")


    def batch_for(self, device: torch.device) -> int:
        """Variants per model call on ``device``."""
        return self.batch_size if device.type == "cuda" else self.cpu_batch_size


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for ``cuda`` without one is an error, not a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "embedding was asked to run on CUDA (device setting or the gpu profile's gpu=1 resource), "
            "but torch.cuda.is_available() is False: install a CUDA build of torch or use the default profile"
        )
    return device


def autocast_context(device: torch.device, dtype_name: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; a no-op on CPU or for float32."""
    # fp16/bf16 autocast is the GPU path (as in the reference script); CPU stays in fp32, where
    # reduced precision buys nothing for this model and would change results between machines.
    dtype = AUTOCAST_DTYPES[dtype_name]
    if device.type != "cuda" or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def pooled_features(model: torch.nn.Module, input_ids: torch.Tensor, pool: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Caduceus only (benchmarks, tests): forward and RC-aligned hidden states mean-pooled over ``pool``
    (a half-open token range, not clamped). The embedding stage pools through the model interface
    (``caduceus_vep.model.registry``: the clamped window of protocol §2) instead.

    Returns two float32 tensors of shape [B, d_model] for both PS and Ph.
    """
    from caduceus_vep.model.features import forward_and_rc_hidden

    start, end = pool
    # PS: the RC half as the paper's embedding script takes it (length and channels flipped).
    fwd, rc = forward_and_rc_hidden(model, input_ids, upstream_length_flip=True)
    return fwd[:, start:end].float().mean(dim=1), rc[:, start:end].float().mean(dim=1)


def feature_width(model: torch.nn.Module | LoadedModel) -> int:
    """Width of one pooled feature vector of ``model`` (d_model for Caduceus PS and Ph)."""
    return as_loaded(model).hidden_size


def centred_rows(rows: pd.DataFrame, context_length: int | None) -> pd.DataFrame:
    """Windows rows with their context cut to ``context_length`` bp around the same SNP (index L/2 of
    every slice): for even L, ``chrom[i - L/2 : i + L/2]``. ``None`` or the rows' own length: unchanged."""
    if rows.empty or context_length is None:
        return rows
    own = rows["context_end"] - rows["context_start"]
    if (own == context_length).all():
        return rows
    if context_length % 2 or context_length < 2:
        raise ValueError(f"a model's context_length must be an even number >= 2, got {context_length}")
    if (own < context_length).any():
        raise ValueError(f"the model's context_length {context_length} exceeds the windows' context {int(own.max())}: the "
                         "windows stage must use the largest context of the run")
    centre = rows["context_start"] + own // 2
    out = rows.copy()
    out["context_start"] = centre - context_length // 2
    out["context_end"] = centre + context_length // 2
    return out


def context_sequences(rows: pd.DataFrame, genome: Genome, context_length: int | None = None) -> tuple[list[str], list[str]]:
    """Ref and alt context strings of windows rows (the SNP at index L/2 of each context), cut to
    ``context_length`` bp around the SNP when given (see :func:`centred_rows`)."""
    rows = centred_rows(rows, context_length)
    refs = [fetch_context(genome, r) for r in rows.itertuples(index=False)]
    alts = [alt_sequence(s, a, len(s) // 2) for s, a in zip(refs, rows["alt"])]
    return refs, alts


def embed_sequences(
    refs: Sequence[str],
    alts: Sequence[str],
    model: torch.nn.Module | LoadedModel,
    settings: EmbedSettings,
    pooling_window: int,
    progress: Callable[[int], None] | None = None,
    rc_mode: str | None = None,
) -> dict[str, np.ndarray]:
    """The four pooled feature matrices [N, H] for N (ref, alt) pairs, ``settings.batch_for(device)`` pairs per call.

    Pooling is the clamped mean over ``pooling_window`` bp around the SNP in the model's own tokens
    (``ModelFamily.pooled``); ``rc_mode`` as ``ModelFamily.rc_mode`` gives it (default: with RC
    features, ``rc_rule: ph``). Without RC features (``none``) the RC columns are copies of the
    forward ones, so RC-averaged features are the forward features.

    Batches are consecutive slices starting at index 0, so the same input list always runs in the
    same batch composition (results are then bit-for-bit repeatable on one machine).
    """
    loaded = as_loaded(model)
    family, module = loaded.family, loaded.module
    mode = rc_mode or family.rc_mode(module, "ph")
    device = next(module.parameters()).device
    out: dict[str, list[np.ndarray]] = {c: [] for c in FEATURE_COLUMNS}
    step = settings.batch_for(device)
    for start in range(0, len(refs), step):
        ref_batch, alt_batch = list(refs[start:start + step]), list(alts[start:start + step])
        with torch.inference_mode(), autocast_context(device, settings.autocast_dtype):
            fwd, rc = family.pooled(module, ref_batch, alt_batch, pooling_window, mode)
        n = len(ref_batch)
        fwd = fwd.float().cpu().numpy()
        rc = fwd.copy() if rc is None else rc.float().cpu().numpy()
        out["ref_fwd"].append(fwd[:n])
        out["alt_fwd"].append(fwd[n:])
        out["ref_rc"].append(rc[:n])
        out["alt_rc"].append(rc[n:])
        if progress is not None:
            progress(n)
    width = loaded.hidden_size
    return {c: np.concatenate(parts) if parts else np.zeros((0, width), np.float32) for c, parts in out.items()}


def window_pooling_bp(windows: pd.DataFrame) -> int:
    """The pooling window (bp) a windows table was made with, from its (possibly clamped) pool columns."""
    row = windows.iloc[0]
    v = int(row.context_end - row.context_start) // 2
    return 2 * max(v - int(row.pool_start), int(row.pool_end) - 1 - v)


def embed_windows(
    windows: pd.DataFrame,
    genome: Genome,
    model: torch.nn.Module | LoadedModel,
    settings: EmbedSettings,
    progress: Callable[[int], None] | None = None,
    *,
    pooling_window: int | None = None,
    context_length: int | None = None,
    rc_mode: str | None = None,
) -> pd.DataFrame:
    """Embed every row of a windows table; returns variant ids plus the four pooled feature arrays.

    ``pooling_window`` defaults to the table's own; ``context_length`` (the model's) to the table's.
    """
    if windows.empty:
        return pd.DataFrame({"variant_id": [], **{c: [] for c in FEATURE_COLUMNS}})
    refs, alts = context_sequences(windows, genome, context_length)
    pool_bp = window_pooling_bp(windows) if pooling_window is None else pooling_window
    matrices = embed_sequences(refs, alts, model, settings, pool_bp, progress, rc_mode)
    frame = pd.DataFrame({"variant_id": windows["variant_id"].to_numpy()})
    for column, matrix in matrices.items():
        frame[column] = list(matrix)
    return frame
