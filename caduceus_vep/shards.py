"""Sharded, resumable embedding: one job per (model, shard), checkpointed in fixed chunks, then merged.

- **Split.** Shard k of S takes the windows rows ``[k*n//S, (k+1)*n//S)``: a pure function of the row
  count, so Snakemake needs no checkpoint and every job agrees on the split. The windows table holds
  each unique variant once, so every variant is embedded once however many tissues list it.
- **Checkpoints.** A shard works through chunks of ``checkpoint_every`` rows at fixed offsets; each
  finished chunk is written atomically as ``chunk-NNNNNN.parquet`` in the shard's work folder. A
  killed job loses at most the chunk in progress; the rerun reuses finished chunks and recomputes
  the rest in the same batch composition (batches start at the chunk's first row), so the resumed
  result equals an uninterrupted run's bit for bit. ``manifest.json`` fingerprints the work (model,
  settings, the shard's variant ids); chunks from other work are discarded, never mixed in.
- **Cache.** Before running the model, each chunk looks its rows up in the content-addressed cache
  (``caduceus_vep.embed_cache``) and embeds only the misses; what it computes goes into the cache.
- **Merge.** ``merge_shards`` checks that every kept variant has features exactly once, orders the
  rows as the windows table and writes the per-model embeddings file. Its metadata holds only what
  determines the features (no timings, no cache hit counts), so reruns give the same bytes; the
  per-attempt numbers go to the logs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from caduceus_vep.atomic import write_text_atomic
from caduceus_vep.devices import embed_device
from caduceus_vep.embed_cache import FeatureCache, cache_key, context_digest
from caduceus_vep.feature_file import FEATURE_COLUMNS, FeatureBlock, read_block, write_block
from caduceus_vep.genome import Genome

if TYPE_CHECKING:
    from caduceus_vep.embed import EmbedSettings

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def shard_bounds(n_rows: int, shard: int, shards: int) -> tuple[int, int]:
    """Half-open row range of shard ``shard`` (0-based) of ``shards``; the ranges tile ``[0, n_rows)``."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards} is not a valid shard")
    return shard * n_rows // shards, (shard + 1) * n_rows // shards


def chunk_bounds(n_rows: int, size: int) -> list[tuple[int, int]]:
    """Fixed checkpoint chunks ``[i*size, min((i+1)*size, n))``."""
    if size < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {size}")
    return [(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


@dataclass(frozen=True)
class ShardJob:
    """Which part of the work one job does, and where it keeps its checkpoints and the shared cache."""

    shard: int
    shards: int
    checkpoint_every: int
    work_dir: Path
    cache_dir: Path | None = None


class _LogWriter(io.TextIOBase):
    """A file-like object for tqdm: each refresh of the bar becomes one INFO line of the rule's log."""

    def write(self, text: str) -> int:
        line = text.replace("\x1b[A", "").strip("\r\n ")  # tqdm's carriage returns and cursor-up codes
        if line:
            log.info("%s", line)
        return len(text)


def progress_bar(total: int, description: str, interval_s: float = 15.0) -> tqdm:
    """A tqdm bar (variants, variants/s, ETA) logged at most every ``interval_s`` seconds."""
    return tqdm(total=total, desc=description, unit="variant", file=_LogWriter(), mininterval=interval_s,
                maxinterval=max(interval_s, 60.0), ascii=True, ncols=110, dynamic_ncols=False, smoothing=0.3)


class WorkFolder:
    """The checkpoint chunks of one shard job; reset when the work it was made for differs."""

    def __init__(self, folder: PathLike, fingerprint: str) -> None:
        self.folder = Path(folder)
        manifest = self.folder / "manifest.json"
        old = json.loads(manifest.read_text()).get("fingerprint") if manifest.exists() else None
        if old != fingerprint:
            if self.folder.exists():
                log.info("work folder %s was made for other work; starting it afresh", self.folder)
                shutil.rmtree(self.folder)
            write_text_atomic(manifest, json.dumps({"fingerprint": fingerprint}))

    def part(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.parquet"

    def read(self, index: int, expected_ids: list[str]) -> FeatureBlock | None:
        """A finished chunk, or None when missing or not holding exactly ``expected_ids``."""
        path = self.part(index)
        if not path.exists():
            return None
        try:
            block, _ = read_block(path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            # A damaged checkpoint costs one chunk of recomputation, never the job.
            log.warning("checkpoint %s is unreadable (%s); recomputing that chunk", path, err)
            path.unlink(missing_ok=True)
            return None
        return block if block.variant_id == expected_ids else None

    def write(self, index: int, block: FeatureBlock) -> None:
        write_block(block, self.part(index), {"chunk": index})

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _assemble(ids: list[str], digests: list[str], hits: list, computed: FeatureBlock | None) -> FeatureBlock:
    """Cached rows (``hits``) and computed rows (for each ``None`` hit, in order) back into chunk order."""
    sources = []
    j = 0
    for hit in hits:
        if hit is None:
            sources.append((computed, j))
            j += 1
        else:
            sources.append(hit)
    width = sources[0][0].matrices[FEATURE_COLUMNS[0]].shape[1] if sources else 0
    matrices = {c: np.empty((len(ids), width), np.float32) for c in FEATURE_COLUMNS}
    for i, (block, row) in enumerate(sources):
        for c in FEATURE_COLUMNS:
            matrices[c][i] = block.matrices[c][row]
    return FeatureBlock(list(ids), list(digests), matrices)


def run_shard(windows_path: PathLike, fasta: PathLike, model_spec: dict, settings: EmbedSettings, job: ShardJob,
              output: PathLike) -> dict:
    """Embed one shard of the windows table (resuming from checkpoints, using the cache); returns a summary.

    ``model_spec``: ``path`` (a local folder), ``name``, and optionally ``architecture`` (else inferred
    from the checkpoint), ``context_length`` (else the windows' own), ``rc_rule`` (else ``ph``: with RC
    features).
    """
    # torch and the models load here, not at import: the merge jobs import this module too, and a
    # second or two of torch import per job is most of what a merge of a few MB costs.
    import torch

    from caduceus_vep.embed import context_sequences, embed_sequences
    from caduceus_vep.model.registry import load_model

    started = time.perf_counter()
    torch.set_num_threads(settings.threads)
    # The scan's decay factors underflow into denormal floats, which x86 CPUs process up to ~100x
    # slower; flushing them to zero changes nothing above 1e-38.
    torch.set_flush_denormal(True)
    # Shard k on GPU k mod N of this box (the first free one when jobs share GPUs); in a Slurm job the
    # GPU that Slurm gave it (caduceus_vep.devices).
    choice = embed_device(settings.device, job.shard)
    device = torch.device(choice.device)
    log.info("%s", choice.reason)
    windows = pd.read_parquet(windows_path)
    lo, hi = shard_bounds(len(windows), job.shard, job.shards)
    rows = windows.iloc[lo:hi].reset_index(drop=True)
    windows_context = int(windows.context_end.iloc[0] - windows.context_start.iloc[0]) if len(windows) else 0
    context_length = int(model_spec.get("context_length") or windows_context)
    pooling_window = _pooling_window(windows_path, windows)
    loaded = load_model(model_spec, device=str(device), context_length=context_length or None)
    family, model = loaded.family, loaded.module
    if model_spec.get("source"):
        # Loaded from the fetch_model rule's local copy: provenance names what the config asked for.
        model.provenance.update(name_or_path=model_spec["source"], revision=model_spec.get("source_revision"))
    rc_features = family.rc_mode(model, model_spec.get("rc_rule") or "ph")
    half = family.pool_half_window(pooling_window)
    key, fields = cache_key(model.provenance, context_length, (-half, half), rc_features, device.type, settings.autocast_dtype,
                            architecture=family.name, pooling_window=pooling_window)
    cache = FeatureCache(job.cache_dir, key, fields, {"name": model_spec["name"], **{k: model.provenance.get(k) for k in ("name_or_path", "revision")}})
    ids = rows["variant_id"].astype(str).tolist()
    fingerprint = hashlib.sha256(json.dumps([key, settings.batch_for(device), job.checkpoint_every, ids]).encode()).hexdigest()
    work = WorkFolder(job.work_dir, fingerprint)
    known = cache.lookup(set(ids)) if cache.enabled else {}
    log.info("shard %d of %d: windows rows %d..%d (%d variants); cache %s: %d of them present; device %s",
             job.shard, job.shards, lo, hi, len(rows), cache.folder or "disabled", len({v for v, _ in known}), device)
    counts: Counter[str] = Counter()
    blocks = []
    bar = progress_bar(len(rows), f"{model_spec['name']} shard {job.shard}-of-{job.shards}")
    with Genome(fasta) as genome:
        for index, (a, b) in enumerate(chunk_bounds(len(rows), job.checkpoint_every)):
            chunk = rows.iloc[a:b]
            block = work.read(index, ids[a:b])
            if block is not None:
                counts["resumed"] += len(block)
                bar.update(len(block))
            else:
                refs, alts = context_sequences(chunk, genome, context_length)
                digests = [context_digest(s) for s in refs]
                hits = [known.get((v, d)) for v, d in zip(ids[a:b], digests)]
                miss = [i for i, h in enumerate(hits) if h is None]
                bar.update(len(chunk) - len(miss))
                computed = None
                if miss:
                    matrices = embed_sequences([refs[i] for i in miss], [alts[i] for i in miss], loaded, settings, pooling_window,
                                               bar.update, rc_features)
                    computed = FeatureBlock([ids[a + i] for i in miss], [digests[i] for i in miss], matrices)
                    cache.store(computed, {"model": model_spec["name"]})
                block = _assemble(ids[a:b], digests, hits, computed)
                work.write(index, block)
                counts["cached"] += len(chunk) - len(miss)
                counts["computed"] += len(miss)
            blocks.append(block)
            bar.set_postfix(computed=counts["computed"], cached=counts["cached"], resumed=counts["resumed"], refresh=False)
    bar.close()
    seconds = time.perf_counter() - started
    summary = {
        "model": {"name": model_spec["name"], **getattr(model, "provenance", {})},
        "settings": {**asdict(settings), "device": device.type},
        "shard": job.shard, "shards": job.shards, "rows": [lo, hi], "n_variants": len(rows),
        "family": family.describe(), "architecture": family.name, "context_length": context_length, "pooling_window": pooling_window,
        "pool_half_window": half, "pooling": "clamped mean", "rc_features": rc_features,
        # The module's own width (Caduceus-PS: 2 x d_model, [forward | RC]); the features are loaded.hidden_size wide.
        "hidden_size": int(getattr(model, "hidden_size", loaded.hidden_size)),
        "cache_key": key, "cache": fields, "checkpoint_every": job.checkpoint_every,
        "attempt": {**{k: counts[k] for k in ("computed", "cached", "resumed")}, "seconds": round(seconds, 3),
                    "computed_per_second": round(counts["computed"] / seconds, 4) if seconds > 0 else None},
    }
    # A shard with no variants (a dataset with nothing scorable) still writes a valid, empty file.
    write_block(FeatureBlock.concat(blocks) if rows.shape[0] else FeatureBlock.empty(loaded.hidden_size), output, summary)
    work.remove()  # the shard file is the checkpoint now
    log.info("shard %d of %d done: %d variants, %d computed, %d from the cache, %d resumed from checkpoints, %.1f s",
             job.shard, job.shards, len(rows), counts["computed"], counts["cached"], counts["resumed"], seconds)
    return summary


def _pooling_window(windows_path: PathLike, windows: pd.DataFrame) -> int:
    """The run's pooling window in bp: the windows file's spec (or, for a table without one, its pool columns)."""
    from caduceus_vep.windows import read_window_spec

    try:
        return read_window_spec(windows_path).pooling_window
    except ValueError:
        from caduceus_vep.embed import window_pooling_bp

        return window_pooling_bp(windows) if len(windows) else 0


def merge_shards(shard_paths: list[PathLike], windows_path: PathLike, output: PathLike,
                 variants_path: PathLike | None = None) -> dict:
    """Gather shard files into one embeddings file in windows order; every kept variant exactly once."""
    windows_ids = pd.read_parquet(windows_path, columns=["variant_id"])["variant_id"].astype(str).tolist()
    read = [read_block(p) for p in shard_paths]
    metas = [m for _, m in read]
    merged = FeatureBlock.concat([b for b, _ in read])
    ids = pd.Series(merged.variant_id, dtype=object)
    duplicated = ids[ids.duplicated()].unique().tolist()
    missing = sorted(set(windows_ids) - set(merged.variant_id))
    extra = sorted(set(merged.variant_id) - set(windows_ids))
    if duplicated or missing or extra:
        raise ValueError(f"shards do not cover the windows exactly once: {len(duplicated)} duplicated (e.g. {duplicated[:3]}), "
                         f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} not in the windows (e.g. {extra[:3]})")
    for field_name in ("cache_key", "shards"):
        if len({json.dumps(m.get(field_name)) for m in metas}) > 1:
            raise ValueError(f"shard files disagree on {field_name}: they come from different models or settings")
    position = {v: i for i, v in enumerate(merged.variant_id)}
    final = merged.take([position[v] for v in windows_ids])
    dedup = None
    if variants_path is not None:
        variant_rows = pd.read_parquet(variants_path, columns=["variant_id"])["variant_id"].astype(str)
        kept_rows = int(variant_rows.isin(set(windows_ids)).sum())
        dedup = {"rows": kept_rows, "unique_variants": len(windows_ids),
                 "rows_per_unique_variant": round(kept_rows / len(windows_ids), 4) if windows_ids else None}
    first = metas[0] if metas else {}
    metadata = {
        "model": first.get("model", {}), "settings": first.get("settings", {}), "n_variants": len(final),
        "rc_features": first.get("rc_features"), "hidden_size": first.get("hidden_size"),
        **{k: first.get(k) for k in ("architecture", "context_length", "pooling_window", "pool_half_window", "pooling")},
        "feature_size": int(final.matrices[FEATURE_COLUMNS[0]].shape[1]) if len(final) else 0,
        "shards": len(shard_paths), "checkpoint_every": first.get("checkpoint_every"),
        "cache_key": first.get("cache_key"), "cache_key_fields": first.get("cache"), "dedup": dedup,
        "embedded_once": "each unique (variant, model, context) is embedded once and shared by all its (variant, tissue) rows",
    }
    write_block(final, output, metadata)
    attempts = Counter()
    for m in metas:
        attempts.update({k: v for k, v in m.get("attempt", {}).items() if k in ("computed", "cached", "resumed", "seconds")})
    log.info("merged %d shards: %d variants (%s); in the last attempt of each shard: %d computed, %d from the cache, "
             "%d resumed from checkpoints, %.1f shard-seconds", len(shard_paths), len(final),
             f"{dedup['rows']} (variant, tissue) rows, {dedup['rows_per_unique_variant']} rows per unique variant" if dedup else "no variants table",
             attempts["computed"], attempts["cached"], attempts["resumed"], attempts["seconds"])
    return {"n_variants": len(final), "dedup": dedup, "attempts": dict(attempts)}
