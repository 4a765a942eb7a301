"""The embedding driver: windows in, pooled Caduceus features out (parquet keyed by variant id).

For every variant the ref and alt contexts go through the model in one batch. Per sequence we
keep the last hidden state mean-pooled over the pooling window, for the forward strand and for
the reverse complement aligned back to forward coordinates:

- Caduceus-PS (RC-equivariant): one pass; the RC features are its second half flipped along
  length and channels, exactly as the paper's embedding script does (this pools the RC view over
  the window mirrored about the sequence centre, one position off the forward window; see
  ``caduceus_vep.model.ps_rc_hidden``);
- Caduceus-Ph (and any non-equivariant model): a second pass on the reverse complement,
  flipped back along length ("post-hoc conjoining" averages the two).

Which of these the classifier uses is the evaluation's business (see ``evaluate.py``); this stage
stores all four vectors (``ref_fwd``, ``alt_fwd``, ``ref_rc``, ``alt_rc``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from caduceus_vep.atomic import atomic_path
from caduceus_vep.genome import Genome
from caduceus_vep.windows import alt_sequence

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ("ref_fwd", "alt_fwd", "ref_rc", "alt_rc")
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


def _autocast(device: torch.device, dtype_name: str) -> contextlib.AbstractContextManager:
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
    from caduceus_vep.model import ph_rc_hidden, ps_forward_hidden, ps_rc_hidden

    start, end = pool
    hidden = model(input_ids)
    if getattr(model, "is_rcps", False):
        fwd, rc = ps_forward_hidden(hidden), ps_rc_hidden(hidden, upstream_length_flip=True)
    else:
        fwd, rc = hidden, ph_rc_hidden(model, input_ids)
    return fwd[:, start:end].float().mean(dim=1), rc[:, start:end].float().mean(dim=1)


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start:start + size]


def embed_windows(
    windows: pd.DataFrame,
    genome: Genome,
    model: torch.nn.Module,
    settings: EmbedSettings,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Embed every row of a windows table; returns variant ids plus the four pooled feature arrays."""
    from caduceus_vep.model import tokenize

    device = next(model.parameters()).device
    out: dict[str, list[np.ndarray]] = {c: [] for c in FEATURE_COLUMNS}
    for batch in _batches(windows, settings.batch_size):
        refs = [genome.fetch(r.contig, int(r.context_start), int(r.context_end)) for r in batch.itertuples()]
        snp_index = (int(batch.context_end.iloc[0]) - int(batch.context_start.iloc[0])) // 2
        alts = [alt_sequence(s, a, snp_index) for s, a in zip(refs, batch.alt)]
        ids = tokenize(refs + alts).to(device)
        pool = (int(batch.pool_start.iloc[0]), int(batch.pool_end.iloc[0]))
        with torch.inference_mode(), _autocast(device, settings.autocast_dtype):
            fwd, rc = pooled_features(model, ids, pool)
        n = len(batch)
        fwd, rc = fwd.cpu().numpy(), rc.cpu().numpy()
        out["ref_fwd"].append(fwd[:n])
        out["alt_fwd"].append(fwd[n:])
        out["ref_rc"].append(rc[:n])
        out["alt_rc"].append(rc[n:])
        if progress is not None:
            progress(n)
    frame = pd.DataFrame({"variant_id": windows["variant_id"].to_numpy()})
    for column, parts in out.items():
        frame[column] = list(np.concatenate(parts)) if parts else []
    return frame


def write_embeddings(frame: pd.DataFrame, path: str | os.PathLike[str], metadata: dict) -> None:
    """Write features as parquet (fixed-size float32 lists) with ``metadata`` in the schema, atomically."""
    arrays = {"variant_id": pa.array(frame["variant_id"].astype(str).tolist(), type=pa.string())}
    for column in FEATURE_COLUMNS:
        matrix = np.stack(frame[column].to_numpy()).astype(np.float32) if len(frame) else np.zeros((0, 0), np.float32)
        width = matrix.shape[1] if matrix.ndim == 2 else 0
        arrays[column] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), width)
    table = pa.table(arrays).replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str)})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict]:
    """Read an embeddings parquet: ``(ids frame, {column: [N, H] float32 matrix}, metadata)``."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    ids = pd.DataFrame({"variant_id": table.column("variant_id").to_pylist()})
    matrices = {}
    for column in FEATURE_COLUMNS:
        arr = table.column(column).combine_chunks()
        width = arr.type.list_size
        matrices[column] = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), width)
    return ids, matrices, meta


def run_embedding(
    windows_path: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    model_spec: dict,
    settings: EmbedSettings,
    output: str | os.PathLike[str],
) -> dict:
    """Stage entry point: load the model, embed all windows, write parquet; returns a summary."""
    from caduceus_vep.model import load_caduceus

    torch.set_num_threads(settings.threads)
    # The scan's decay factors underflow into denormal floats, which x86 CPUs process up to ~100x
    # slower; flushing them to zero changes nothing above 1e-38 and halves the PS demo's time.
    torch.set_flush_denormal(True)
    device = resolve_device(settings.device)
    windows = pd.read_parquet(windows_path)
    model = load_caduceus(model_spec["path"], revision=model_spec.get("revision"), device=str(device))
    started = time.perf_counter()
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        rate = done / max(time.perf_counter() - started, 1e-9)
        eta = (len(windows) - done) / rate if rate > 0 else float("nan")
        log.info("embedded %d/%d variants (%.2f variants/s, ETA %.0f s)", done, len(windows), rate, eta)

    with Genome(fasta) as genome:
        features = embed_windows(windows, genome, model, settings, progress=report)
    seconds = time.perf_counter() - started
    summary = {
        "model": {"name": model_spec["name"], **getattr(model, "provenance", {})},
        "settings": {**asdict(settings), "device": str(device)},
        "n_variants": len(windows),
        "seconds": round(seconds, 3),
        "variants_per_second": round(len(windows) / seconds, 3) if seconds > 0 else None,
        "rc_features": "ps_second_half" if getattr(model, "is_rcps", False) else "ph_rc_pass",
        "hidden_size": int(getattr(model, "hidden_size", 0)),
    }
    write_embeddings(features, output, metadata=summary)
    return summary
