"""A small Python API for notebooks: score your own variants with a checkpoint, in one call.

    from caduceus_vep import score_variants
    table = score_variants("my.vcf.gz", genome="hg38.fa", models=["kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"],
                           gtf="gencode.gtf.gz", out_dir="my_scores")

It runs the workflow's own stages in order (variants -> windows -> model fetch -> embeddings ->
zero-shot -> scores), with every setting the schema's default unless given, and writes the same
files as a workflow dataset (``<out_dir>/scores/<name>.scored.vcf.gz`` and friends). The returned
DataFrame is the per-variant score table.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from caduceus_vep import settings as config_schema
from caduceus_vep import stages
from caduceus_vep.modelspec import resolve_model_entries, run_context_length

PathLike = str | os.PathLike[str]


def model_entry(text: str | dict, rc_rule: str | None = None) -> dict:
    """A ``models[]`` entry from ``NAME=PATH`` or ``PATH`` (name from the folder or repo name)."""
    if isinstance(text, dict):
        return dict(text)
    name, _, path = text.rpartition("=") if "=" in text else ("", "", text)
    name = name or re.sub(r"[^A-Za-z0-9_]", "_", Path(path.rstrip("/")).name) or "model"
    guess = "ps" if "caduceus-ps" in path.lower() else "ph" if "caduceus-ph" in path.lower() else "forward"
    return {"name": name, "path": path, "rc_rule": rc_rule or guess}


def score_variants(variants: PathLike, genome: PathLike, models: list[str | dict], *, out_dir: PathLike | None = None,
                   gtf: PathLike | None = None, classifiers: list[PathLike] | None = None, name: str = "variants",
                   dataset: dict | None = None, windows: dict | None = None, embed: dict | None = None,
                   zero_shot: dict | None = None, threads: int = 1) -> pd.DataFrame:
    """Score every SNV of ``variants`` (VCF/BCF/TSV/parquet) with each model; returns the score table.

    ``classifiers`` are bundle files (``.cvep.npz``) from a workflow run, matched to models by name;
    without them the scores are zero-shot only. ``dataset``, ``windows``, ``embed`` and
    ``zero_shot`` override the schema's defaults of those config sections (e.g.
    ``windows={"context_length": 1536}`` for a quick CPU run).
    """
    entries = [model_entry(m) for m in models]
    config = config_schema.with_defaults({
        "run_name": "api", "genome": {"fasta": str(genome)}, "models": entries,
        "datasets": {name: {"path": str(variants), **(dataset or {})}},
        "windows": windows or {}, "embed": {"cache_dir": None, **(embed or {})}, "zero_shot": zero_shot or {},
        **({"tss": {"gtf": str(gtf)}} if gtf else {}),
    })
    config["models"] = resolve_model_entries(config)  # each model's context_length (default: the windows')
    options = config["datasets"][name]
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="caduceus-vep-")
    out = Path(out_dir)
    files = {
        "variants": out / "variants/variants.parquet", "variants_skipped": out / "variants/skipped.tsv",
        "windows": out / "windows/windows.parquet", "windows_skipped": out / "windows/skipped.tsv", "flags": out / "windows/flags.tsv",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    stages.variants_stage(source=variants, options=options, out_variants=files["variants"], out_skipped=files["variants_skipped"],
                          tss=gtf, dataset=name)
    stages.windows_stage(variants=files["variants"], fasta=genome, spec={**config["windows"], "context_length": run_context_length(config)},
                         out_windows=files["windows"],
                         out_skipped=files["windows_skipped"], out_flags=files["flags"], source=variants)
    records, embeddings, scores = [], [], []
    for entry in config["models"]:
        record = out / "models" / f"{entry['name']}.json"
        stages.fetch_model_stage(model=entry, cache_dir=config["model_cache"], out_record=record)
        features = out / "embeddings" / f"{entry['name']}.parquet"
        stages.embed_stage(windows=files["windows"], fasta=genome, model=entry, settings=config["embed"], out_embeddings=features,
                           model_record=record, threads=threads)
        zs = out / "zero_shot" / f"{entry['name']}.parquet"
        stages.zero_shot_stage(windows=files["windows"], fasta=genome, embeddings=features, model=entry, settings=config["zero_shot"],
                               out_scores=zs, model_record=record, threads=threads)
        records.append(record)
        embeddings.append(features)
        scores.append(zs)
    base = out / "scores" / name
    outputs = {k: f"{base}.{suffix}" for k, suffix in (
        ("parquet", "scores.parquet"), ("tsv", "scores.tsv"), ("vcf", "scored.vcf.gz"), ("tbi", "scored.vcf.gz.tbi"),
        ("skipped", "skipped.tsv"), ("auroc", "auroc.tsv"), ("provenance", "provenance.json"))}
    stages.score_stage(source=variants, variants=files["variants"], variants_skipped=files["variants_skipped"], windows=files["windows"],
                       windows_skipped=files["windows_skipped"], models=config["models"], options=options, settings=config["evaluate"],
                       zero_shot=scores, embeddings=embeddings if classifiers else None, classifiers=list(classifiers or []) or None,
                       model_records=records, dataset=name, config=config, threads=threads,
                       **{f"out_{k}": v for k, v in outputs.items()})
    return pd.read_parquet(outputs["parquet"])
