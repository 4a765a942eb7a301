"""One function per workflow stage: file paths in, files out. Used by the Snakemake scripts and the CLI.

Each function reads its inputs, calls the library, writes every output atomically and returns a
small summary dict (also logged) so that runs are explainable from their logs alone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd

from caduceus_vep import evaluate as ev
from caduceus_vep import provenance, report
from caduceus_vep.atomic import atomic_path, write_text_atomic
from caduceus_vep.embed import EmbedSettings, read_embeddings, run_embedding
from caduceus_vep.genome import Genome
from caduceus_vep.variants import read_variants, unique_variants
from caduceus_vep.windows import WindowSpec, build_windows

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def configure_logging(path: PathLike | None) -> None:
    """Log INFO and above to ``path`` (a rule's log file) or to stderr."""
    handler: logging.Handler = logging.FileHandler(path, mode="w") if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run_logged(log_path: PathLike | None, stage, *args, **kwargs):
    """Run ``stage`` with logging to ``log_path``; a failure is logged with its traceback, then re-raised."""
    configure_logging(log_path)
    try:
        return stage(*args, **kwargs)
    except Exception:
        log.exception("stage %s failed", getattr(stage, "__name__", stage))
        raise


def _write_parquet(frame: pd.DataFrame, path: PathLike) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def variants_stage(source: PathLike, options: dict, out_variants: PathLike, out_skipped: PathLike) -> dict:
    """Normalise the input variants to one row per (variant, tissue); record skips."""
    vcf_options = {k: options[k] for k in ("label_info", "distance_info", "tissue") if options.get(k) is not None}
    if "test_chromosomes" in options:
        vcf_options["test_chromosomes"] = tuple(options["test_chromosomes"])
    table = read_variants(source, options.get("format", "auto"), **vcf_options)
    _write_parquet(table.variants, out_variants)
    report.write_tsv(table.skipped, out_skipped)
    n_unique = table.variants["variant_id"].nunique()
    summary = {"input_records": table.n_input_records, "rows": len(table.variants), "unique_variants": n_unique,
               "skipped": len(table.skipped), "notes": table.notes}
    log.info("variants: %s", summary)
    return summary


def windows_stage(variants_path: PathLike, fasta: PathLike, spec: dict, out_windows: PathLike, out_skipped: PathLike,
                  source: PathLike | None = None) -> dict:
    """Check unique variants against the genome and record their context and pooling windows.

    ``source`` names the original input file in the skipped-records table (line numbers refer to it).
    """
    window_spec = WindowSpec(int(spec["context_length"]), int(spec["pooling_window"]), float(spec.get("max_n_fraction", 0.005)))
    unique = unique_variants(pd.read_parquet(variants_path))
    with Genome(fasta) as genome:
        windows, skipped = build_windows(unique, genome, window_spec, source=str(source or variants_path))
    _write_parquet(windows, out_windows)
    report.write_tsv(skipped, out_skipped)
    summary = {"unique_variants": len(unique), "kept": len(windows), "skipped": len(skipped)}
    log.info("windows: %s", summary)
    return summary


def embed_stage(windows_path: PathLike, fasta: PathLike, model: dict, settings: dict, output: PathLike,
                threads: int = 1, require_gpu: bool = False) -> dict:
    """Embed every kept variant with one model."""
    embed_settings = EmbedSettings(
        batch_size=int(settings.get("batch_size", 8)),
        device="cuda" if require_gpu else settings.get("device", "auto"),
        autocast_dtype=settings.get("autocast_dtype", "bfloat16"),
        threads=threads,
    )
    summary = run_embedding(windows_path, fasta, model, embed_settings, output)
    log.info("embed: %s", {k: summary[k] for k in ("n_variants", "seconds", "variants_per_second")})
    return summary


def evaluation_rows(variants_path: PathLike, windows_path: PathLike) -> pd.DataFrame:
    """The labelled (variant, tissue) rows whose variant survived the windows stage."""
    variants = pd.read_parquet(variants_path)
    kept = set(pd.read_parquet(windows_path, columns=["variant_id"])["variant_id"])
    rows = variants[variants["variant_id"].isin(kept) & (variants["label"] >= 0)]
    return rows.reset_index(drop=True)


def evaluate_stage(variants_path: PathLike, windows_path: PathLike, embeddings_path: PathLike, model: dict,
                   settings: dict, out_per_seed: PathLike, threads: int = 1) -> dict:
    """The paper's SVM protocol for one model; writes per-seed AUROCs."""
    rows = evaluation_rows(variants_path, windows_path)
    ids, matrices, _ = read_embeddings(embeddings_path)
    buckets = ev.buckets_from_config(settings["buckets"]) if settings.get("buckets") else ev.PAPER_BUCKETS
    per_seed = ev.paper_protocol(
        rows, ids["variant_id"], matrices, model=model["name"], rc_rule=model["rc_rule"],
        seeds=list(settings.get("seeds", [1, 2, 3, 4, 5])), c_grid=[float(c) for c in settings.get("c_grid", [1, 5, 10])],
        train_subsample=int(settings.get("train_subsample", 5000)), buckets=buckets, n_jobs=threads,
    )
    report.write_tsv(per_seed, out_per_seed)
    summary = ev.summarise(per_seed)
    log.info("evaluate %s:\n%s", model["name"], summary.to_string(index=False))
    return {"rows": len(rows), "fits": int(per_seed["auroc"].notna().sum())}


def report_stage(per_seed_paths: list[PathLike], embeddings_paths: list[PathLike], config: dict, inputs: dict[str, PathLike],
                 outputs: dict[str, PathLike], workflow_dir: PathLike) -> pd.DataFrame:
    """Tables, figure and provenance for the whole run; returns the wide table."""
    per_seed = pd.concat([pd.read_csv(p, sep="\t", keep_default_na=False, na_values=["", "nan", "NaN"]) for p in per_seed_paths], ignore_index=True)
    per_seed["note"] = per_seed["note"].fillna("").astype(str)
    summary = ev.summarise(per_seed)
    bucket_order = [b["name"] for b in config["evaluate"]["buckets"]] if config["evaluate"].get("buckets") else [b.name for b in ev.PAPER_BUCKETS]
    labels = {m["name"]: m.get("label", m["name"]) for m in config["models"]}
    wide = report.vep_table(summary, labels, bucket_order)
    title = f"eQTL VEP AUROC by distance to TSS ({config['run_name']})"
    report.write_tsv(wide, outputs["table_tsv"])
    write_text_atomic(outputs["table_md"], report.markdown_table(wide, bucket_order, title))
    report.write_tsv(per_seed, outputs["per_seed"])
    report.bar_chart(wide, bucket_order, outputs["figure"], title)
    models = {}
    for path in embeddings_paths:
        _, _, meta = read_embeddings(path)
        models[Path(path).stem] = meta
    payload = {
        "run_name": config["run_name"],
        "workflow": {"git_revision": provenance.git_revision(workflow_dir)},
        "inputs": {name: provenance.file_record(p) for name, p in inputs.items()},
        "downloads": _download_records(inputs),
        "models": models,
        "config": config,
        "protocol": {"name": "paper", "seeds": config["evaluate"].get("seeds"), "c_grid": config["evaluate"].get("c_grid"),
                     "train_subsample": config["evaluate"].get("train_subsample"), "buckets": bucket_order,
                     "auroc": "from hard predict() labels (equals balanced accuracy)", "sd": "numpy std over seeds (ddof=0)"},
        "environment": provenance.environment(),
        "results": summary.to_dict(orient="records"),
    }
    provenance.write_json(outputs["provenance"], payload)
    return wide


def _download_records(inputs: dict[str, PathLike]) -> dict:
    """Download provenance written beside fetched inputs (``<file>.download.json``), where present."""
    records = {}
    for name, p in inputs.items():
        candidate = Path(str(p) + ".download.json")
        if candidate.exists():
            records[name] = json.loads(candidate.read_text())
    return records
