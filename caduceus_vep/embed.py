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
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from caduceus_vep.atomic import atomic_path
from caduceus_vep.genome import Genome
from caduceus_vep.windows import alt_sequence, fetch_context

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc")
# SHA-256 (first 32 hex digits) of the exact ref context string that was embedded: part of the
# cache key, and provenance of which sequence (genome build, N padding) stands behind each vector.
DIGEST_COLUMN = "context_sha256"
METADATA_KEY = b"caduceus_vep"
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
    from caduceus_vep.model import ps_forward_hidden, ps_rc_hidden, reverse_complement_ids

    start, end = pool
    if getattr(model, "is_rcps", False):
        hidden = model(input_ids)
        fwd, rc = ps_forward_hidden(hidden), ps_rc_hidden(hidden, upstream_length_flip=True)
    else:
        # Ph: the reverse-complement sequences join the same batch (one model call of 2B rows
        # instead of two calls of B), which keeps a GPU busier; the RC half is flipped back along
        # length so that position i describes base i (same result as ph_rc_hidden).
        rc_ids = reverse_complement_ids(input_ids, model.config.complement_list)
        fwd, rc = model(torch.cat([input_ids, rc_ids])).chunk(2, dim=0)
        rc = rc.flip(-2)
    return fwd[:, start:end].float().mean(dim=1), rc[:, start:end].float().mean(dim=1)


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


@dataclass
class FeatureBlock:
    """Features of N variants in one table: ids, context digests, and four [N, H] float32 matrices."""

    variant_id: list[str]
    context_sha256: list[str]
    matrices: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.variant_id)

    def take(self, index: Sequence[int]) -> FeatureBlock:
        """The rows at ``index``, in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return FeatureBlock([self.variant_id[i] for i in idx], [self.context_sha256[i] for i in idx],
                            {c: m[idx] for c, m in self.matrices.items()})

    @staticmethod
    def concat(blocks: Sequence[FeatureBlock]) -> FeatureBlock:
        """Rows of ``blocks`` one after the other (empty blocks, whose width may be 0, are dropped)."""
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return FeatureBlock([], [], {c: np.zeros((0, 0), np.float32) for c in FEATURE_COLUMNS})
        return FeatureBlock([v for b in blocks for v in b.variant_id], [d for b in blocks for d in b.context_sha256],
                            {c: np.concatenate([b.matrices[c] for b in blocks]) for c in FEATURE_COLUMNS})


def write_block(block: FeatureBlock, path: str | os.PathLike[str], metadata: dict) -> None:
    """Write a feature block as parquet (fixed-size float32 lists) with ``metadata`` in the schema, atomically."""
    arrays = {"variant_id": pa.array([str(v) for v in block.variant_id], type=pa.string()),
              DIGEST_COLUMN: pa.array([str(d) for d in block.context_sha256], type=pa.string())}
    for column in FEATURE_COLUMNS:
        matrix = np.ascontiguousarray(block.matrices[column], dtype=np.float32)
        width = matrix.shape[1] if matrix.ndim == 2 else 0
        arrays[column] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), width)
    table = pa.table(arrays).replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str)})
    with atomic_path(path, suffix=".parquet") as tmp:
        # Byte-stream-split + zstd: float32 features shrink ~35 % against the default dictionary +
        # snappy (3.4 vs 5.4 KB per variant at d_model 256); ids are unique, so no dictionary.
        pq.write_table(table, tmp, compression="zstd", use_dictionary=False,
                       use_byte_stream_split=[f"{c}.list.element" for c in FEATURE_COLUMNS])


def read_block(path: str | os.PathLike[str]) -> tuple[FeatureBlock, dict]:
    """Read a feature parquet written by :func:`write_block` (or :func:`write_embeddings`): ``(block, metadata)``."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    ids = table.column("variant_id").to_pylist()
    digests = table.column(DIGEST_COLUMN).to_pylist() if DIGEST_COLUMN in table.column_names else [""] * len(ids)
    matrices = {}
    for column in FEATURE_COLUMNS:
        arr = table.column(column).combine_chunks()
        width = arr.type.list_size
        matrices[column] = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), width)
    return FeatureBlock(ids, digests, matrices), meta


def write_embeddings(frame: pd.DataFrame, path: str | os.PathLike[str], metadata: dict) -> None:
    """Write a frame of ``variant_id`` + per-row feature arrays (and optionally ``context_sha256``) atomically."""
    n = len(frame)
    matrices = {c: np.stack(frame[c].to_numpy()).astype(np.float32) if n else np.zeros((0, 0), np.float32) for c in FEATURE_COLUMNS}
    digests = frame[DIGEST_COLUMN].astype(str).tolist() if DIGEST_COLUMN in frame else [""] * n
    write_block(FeatureBlock(frame["variant_id"].astype(str).tolist(), digests, matrices), path, metadata)


def read_embeddings(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict]:
    """Read an embeddings parquet: ``(ids frame, {column: [N, H] float32 matrix}, metadata)``."""
    block, meta = read_block(path)
    return pd.DataFrame({"variant_id": block.variant_id, DIGEST_COLUMN: block.context_sha256}), block.matrices, meta
