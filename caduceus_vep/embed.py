"""The embedding driver: windows in, pooled Caduceus features out (parquet keyed by variant id).

For every variant the ref and alt contexts go through the model in one batch. Per sequence we
keep the last hidden state mean-pooled over the pooling window, for the forward strand and for
the reverse complement aligned back to forward coordinates:

- Caduceus-PS (RC-equivariant): one pass; the RC features are its second half flipped along
  length and channels, exactly as the paper's embedding script does (this pools the RC view over
  the window mirrored about the sequence centre, one position off the forward window; see
  ``caduceus_vep.model.ps_rc_hidden``);
- Caduceus-Ph (and any non-equivariant model): a pass on the reverse complement, flipped back
  along length ("post-hoc conjoining" averages the two); the RC sequences join the forward ones
  in the same model call.

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
from caduceus_vep.windows import alt_sequence, fetch_context

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EmbedSettings:
    """How to run the model: batch size in variants, device, autocast dtype and CPU threads."""

    batch_size: int = 8
    device: str = "auto"
    autocast_dtype: str = "bfloat16"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast_dtype must be one of {sorted(AUTOCAST_DTYPES)}, got {self.autocast_dtype!r}")


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
    """Forward and RC-aligned hidden states mean-pooled over ``pool`` (half-open token range).

    Returns two float32 tensors of shape [B, H_feature]; H_feature = d_model for both PS and Ph.
    """
    from caduceus_vep.model.features import forward_and_rc_hidden

    start, end = pool
    # PS: the RC half as the paper's embedding script takes it (length and channels flipped).
    fwd, rc = forward_and_rc_hidden(model, input_ids, upstream_length_flip=True)
    return fwd[:, start:end].float().mean(dim=1), rc[:, start:end].float().mean(dim=1)


def feature_width(model: torch.nn.Module) -> int:
    """Width of one pooled feature vector of ``model`` (d_model for PS and Ph), from a 2-token pass."""
    from caduceus_vep.model import tokenize

    device = next(model.parameters()).device
    with torch.inference_mode():
        fwd, _ = pooled_features(model, tokenize(["AC"]).to(device), (0, 2))
    return int(fwd.shape[-1])


def context_sequences(rows: pd.DataFrame, genome: Genome) -> tuple[list[str], list[str]]:
    """Ref and alt context strings of windows rows (the SNP at index L/2 of each context)."""
    refs = [fetch_context(genome, r) for r in rows.itertuples(index=False)]
    alts = [alt_sequence(s, a, len(s) // 2) for s, a in zip(refs, rows["alt"])]
    return refs, alts


def embed_sequences(
    refs: Sequence[str],
    alts: Sequence[str],
    model: torch.nn.Module,
    settings: EmbedSettings,
    pool: tuple[int, int],
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """The four pooled feature matrices [N, H] for N (ref, alt) pairs, ``settings.batch_size`` pairs per model call.

    Batches are consecutive slices starting at index 0, so the same input list always runs in the
    same batch composition (results are then bit-for-bit repeatable on one machine).
    """
    from caduceus_vep.model import tokenize

    device = next(model.parameters()).device
    out: dict[str, list[np.ndarray]] = {c: [] for c in FEATURE_COLUMNS}
    for start in range(0, len(refs), settings.batch_size):
        ref_batch, alt_batch = list(refs[start:start + settings.batch_size]), list(alts[start:start + settings.batch_size])
        ids = tokenize(ref_batch + alt_batch).to(device)
        with torch.inference_mode(), autocast_context(device, settings.autocast_dtype):
            fwd, rc = pooled_features(model, ids, pool)
        n = len(ref_batch)
        fwd, rc = fwd.cpu().numpy(), rc.cpu().numpy()
        out["ref_fwd"].append(fwd[:n])
        out["alt_fwd"].append(fwd[n:])
        out["ref_rc"].append(rc[:n])
        out["alt_rc"].append(rc[n:])
        if progress is not None:
            progress(n)
    width = int(getattr(model, "hidden_size", 0) or 0)
    return {c: np.concatenate(parts) if parts else np.zeros((0, width), np.float32) for c, parts in out.items()}


def embed_windows(
    windows: pd.DataFrame,
    genome: Genome,
    model: torch.nn.Module,
    settings: EmbedSettings,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Embed every row of a windows table; returns variant ids plus the four pooled feature arrays."""
    if windows.empty:
        return pd.DataFrame({"variant_id": [], **{c: [] for c in FEATURE_COLUMNS}})
    refs, alts = context_sequences(windows, genome)
    pool = (int(windows.pool_start.iloc[0]), int(windows.pool_end.iloc[0]))
    matrices = embed_sequences(refs, alts, model, settings, pool, progress)
    frame = pd.DataFrame({"variant_id": windows["variant_id"].to_numpy()})
    for column, matrix in matrices.items():
        frame[column] = list(matrix)
    return frame


