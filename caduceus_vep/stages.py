"""One function per workflow stage: file paths in, files out. Used by the Snakemake scripts and the CLI.

Each function reads its inputs, calls the library, writes every output atomically and returns a
small summary dict (also logged) so that runs are explainable from their logs alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import pandas as pd

from caduceus_vep import evaluate as ev
from caduceus_vep import provenance, report
from caduceus_vep.atomic import atomic_path, write_text_atomic
from caduceus_vep.embed import EmbedSettings, read_embeddings
from caduceus_vep.genome import Genome
from caduceus_vep.tss import fill_tss_distances
from caduceus_vep.variants import ReadOptions, read_variants, unique_variants
from caduceus_vep.windows import WindowSpec, write_windows

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


def variants_stage(source: PathLike, options: dict, out_variants: PathLike, out_skipped: PathLike,
                   tss_gtf: PathLike | None = None) -> dict:
    """Normalise the input variants to one row per (variant, tissue); record skips.

    ``options`` is the config's ``variants`` section; ``tss_gtf`` (the ``tss.gtf`` key) fills in
    missing distances to the nearest TSS.
    """
    read_options = ReadOptions(**{k: (tuple(v) if k == "test_chromosomes" else v) for k, v in options.items()
                                  if k in ReadOptions.__dataclass_fields__ and v is not None})
    table = read_variants(source, options.get("format", "auto"), read_options)
    variants, notes = table.variants, list(table.notes)
    if tss_gtf:
        variants, tss_notes = fill_tss_distances(variants, tss_gtf)
        notes += tss_notes
    elif (variants["distance_to_nearest_TSS"] < 0).any():
        notes.append(f"{int((variants['distance_to_nearest_TSS'] < 0).sum())} rows have no distance_to_nearest_TSS "
                     "(-1, in no bucket): give distance_info / a distance column, or a tss.gtf to compute it")
    _write_parquet(variants, out_variants)
    report.write_tsv(table.skipped, out_skipped)
    summary = {"input_records": table.n_input_records, "input_alleles": table.n_input_alleles, "rows": len(variants),
               "unique_variants": int(variants["variant_id"].nunique()), "skipped": len(table.skipped),
               "skip_reasons": _reason_counts(table.skipped), "notes": notes}
    log.info("variants: %s", summary)
    return summary


def _reason_counts(skipped: pd.DataFrame) -> dict[str, int]:
    # Reasons carry alleles, positions and percentages; masking them groups the reasons for the log.
    if skipped.empty:
        return {}
    kinds = (skipped["reason"].astype(str).str.partition(" (")[0].str.replace(r"\d[\d.,%:]*", "#", regex=True)
             .str.replace(r"\b[ACGTN]+\b", "X", regex=True).str.replace(r"'[^']*'", "'.'", regex=True))
    return {str(k): int(v) for k, v in kinds.value_counts().items()}


def windows_stage(variants_path: PathLike, fasta: PathLike, spec: dict, out_windows: PathLike, out_skipped: PathLike,
                  source: PathLike | None = None, out_flags: PathLike | None = None) -> dict:
    """Check unique variants against the genome and record their context and pooling windows.

    ``source`` names the original input file in the skipped-records table (line numbers refer to it);
    ``out_flags`` lists variants kept despite a REF mismatch (``windows.ref_mismatch: flag``).
    """
    window_spec = WindowSpec.from_config(spec)
    unique = unique_variants(pd.read_parquet(variants_path))
    with Genome(fasta) as genome:
        result = write_windows(unique, genome, window_spec, out_windows, source=str(source or variants_path))
    report.write_tsv(result.skipped, out_skipped)
    if out_flags is not None:
        report.write_tsv(result.flags, out_flags)
    summary = {"unique_variants": len(unique), "kept": result.n_kept, "skipped": len(result.skipped),
               "flagged": len(result.flags), "ref_checked": result.n_ref_checked, "ref_mismatch": result.n_ref_mismatch,
               "skip_reasons": _reason_counts(result.skipped)}
    log.info("windows: %s", summary)
    return summary


def _embed_settings(settings: dict, threads: int, require_gpu: bool) -> EmbedSettings:
    return EmbedSettings(
        batch_size=int(settings.get("batch_size", 8)),
        device="cuda" if require_gpu else settings.get("device", "auto"),
        autocast_dtype=settings.get("autocast_dtype", "bfloat16"),
        threads=threads,
    )


def embed_shard_stage(windows_path: PathLike, fasta: PathLike, model: dict, settings: dict, shard: int, shards: int,
                      output: PathLike, work_dir: PathLike, threads: int = 1, require_gpu: bool = False) -> dict:
    """Embed shard ``shard`` of ``shards`` of the kept variants with one model (resumable, cached)."""
    from caduceus_vep.shards import ShardJob, run_shard

    cache_dir = settings.get("cache_dir")
    job = ShardJob(shard=int(shard), shards=int(shards), checkpoint_every=int(settings.get("checkpoint_every", 256)),
                   work_dir=Path(work_dir), cache_dir=Path(cache_dir) if cache_dir else None)
    return run_shard(windows_path, fasta, model, _embed_settings(settings, threads, require_gpu), job, output)


def embed_merge_stage(shard_paths: list[PathLike], windows_path: PathLike, variants_path: PathLike | None,
                      output: PathLike) -> dict:
    """Gather a model's shard files into ``embeddings/<model>.parquet``; every kept variant exactly once."""
    from caduceus_vep.shards import merge_shards

    return merge_shards(shard_paths, windows_path, output, variants_path=variants_path)


def embed_stage(windows_path: PathLike, fasta: PathLike, model: dict, settings: dict, output: PathLike,
                threads: int = 1, require_gpu: bool = False) -> dict:
    """Embed every kept variant with one model in a single job (the CLI): one shard, then the merge."""
    out = Path(output)
    work = out.parent / f".{out.stem}.work"
    shard_file = work / "shard-0-of-1.parquet"
    summary = embed_shard_stage(windows_path, fasta, model, settings, 0, 1, shard_file, work / "chunks",
                                threads=threads, require_gpu=require_gpu)
    embed_merge_stage([shard_file], windows_path, None, output)
    shard_file.unlink()
    with contextlib.suppress(OSError):
        work.rmdir()
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


def _buckets(settings: dict, closed_high: bool) -> tuple[ev.Bucket, ...]:
    base = ev.PAPER_BUCKETS if closed_high else ev.SOUND_BUCKETS
    return ev.buckets_from_config(settings["buckets"], closed_high) if settings.get("buckets") else base


def evaluate_sound_stage(variants_path: PathLike, windows_path: PathLike, embeddings_path: PathLike, model: dict,
                         settings: dict, windows_spec: dict, outputs: dict[str, PathLike], threads: int = 1) -> dict:
    """The sound protocol for one model: results table, test-row scores, fitted classifiers (+ sidecar)."""
    from caduceus_vep import scoring, sound

    rows = evaluation_rows(variants_path, windows_path)
    ids, matrices, meta = read_embeddings(embeddings_path)
    sound_settings = sound.SoundSettings.from_config(settings.get("sound"))
    result = sound.sound_protocol(rows, ids["variant_id"], matrices, model=model["name"], rc_rule=model["rc_rule"],
                                  settings=sound_settings, buckets=_buckets(settings, closed_high=False), n_jobs=threads)
    report.write_tsv(result.table, outputs["table"])
    report.write_tsv(result.test_scores, outputs["scores"])
    scoring.save_classifiers(result, outputs["classifiers"], {
        "model": {k: model.get(k) for k in ("name", "label", "path", "revision", "rc_rule")},
        "model_provenance": meta.get("model", {}), "windows": windows_spec, "protocol": "sound",
        "settings": {**sound_settings.__dict__, "c_grid": list(sound_settings.c_grid), "gamma_grid": list(sound_settings.gamma_grid)},
        "training_data": {"variants": provenance.file_record(variants_path), "embeddings": provenance.file_record(embeddings_path)},
    })
    log.info("evaluate_sound %s:\n%s", model["name"], result.table.to_string(index=False))
    return {"rows": len(rows), "buckets": len(result.models)}


def zero_shot_stage(variants_path: PathLike, windows_path: PathLike, fasta: PathLike, embeddings_path: PathLike, model: dict,
                    settings: dict, evaluate_settings: dict, outputs: dict[str, PathLike], threads: int = 1,
                    require_gpu: bool = False) -> dict:
    """Zero-shot scores (MLM LLR, embedding distances) of the test variants, and their AUROC per bucket."""
    from caduceus_vep import sound, zero_shot

    if require_gpu:
        settings = {**settings, "device": "cuda"}

    rows = evaluation_rows(variants_path, windows_path)
    test_ids = set(rows.loc[rows["split"] == "test", "variant_id"])
    scores, summary = zero_shot.score_variants(windows_path, fasta, embeddings_path, model, settings, threads, variant_ids=test_ids)
    sound_settings = sound.SoundSettings.from_config(evaluate_settings.get("sound"))
    table = zero_shot.zero_shot_auroc(rows, scores, model=model["name"], buckets=_buckets(evaluate_settings, closed_high=False),
                                      bootstrap=sound_settings.bootstrap, seed=sound_settings.seed)
    report.write_tsv(scores, outputs["scores"])
    report.write_tsv(table, outputs["auroc"])
    log.info("zero_shot %s: %s\n%s", model["name"], summary, table.to_string(index=False))
    return summary


def _read_tsv(paths: list[PathLike]) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", keep_default_na=False, na_values=["", "nan", "NaN"]) for p in paths]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "note" in frame.columns:
        frame["note"] = frame["note"].fillna("").astype(str)
    return frame


def report_stage(per_seed_paths: list[PathLike], embeddings_paths: list[PathLike], config: dict, inputs: dict[str, PathLike],
                 outputs: dict[str, PathLike], workflow_dir: PathLike, sound_paths: list[PathLike] = (),
                 sound_score_paths: list[PathLike] = (), zero_shot_paths: list[PathLike] = (),
                 reference_values: PathLike | None = None) -> pd.DataFrame:
    """Tables, figures and provenance for the whole run (paper, sound and zero-shot rows); returns the paper table."""
    settings = config["evaluate"]
    per_seed = _read_tsv(per_seed_paths) if per_seed_paths else pd.DataFrame(columns=ev.PER_SEED_COLUMNS)
    summary = ev.summarise(per_seed)
    bucket_order = [b.name for b in _buckets(settings, closed_high=True)]
    labels = {m["name"]: m.get("label", m["name"]) for m in config["models"]}
    wide = report.vep_table(summary, labels, bucket_order)
    title = f"eQTL VEP AUROC by distance to TSS ({config['run_name']})"
    sound_results = pd.concat([_read_tsv(list(sound_paths)), _read_tsv(list(zero_shot_paths))], ignore_index=True)
    sound_wide = report.sound_table(sound_results, labels, bucket_order) if len(sound_results) else pd.DataFrame()
    reference = report.read_reference_values(reference_values) if reference_values else pd.DataFrame(
        columns=["model", "protocol", "bucket", "auroc", "approximate", "source"])
    comparison = report.reference_comparison(wide, reference)
    report.write_tsv(wide, outputs["table_tsv"])
    report.write_tsv(sound_wide, outputs["sound_tsv"])
    report.write_tsv(comparison, outputs["reference_tsv"])
    write_text_atomic(outputs["table_md"], report.full_markdown(title, wide, bucket_order, sound_wide, bucket_order, comparison,
                                                                {**sound_defaults(), **(settings.get("sound") or {})}))
    report.write_tsv(per_seed, outputs["per_seed"])
    report.bar_chart(wide, bucket_order, outputs["figure"], title + ", paper protocol")
    test_scores = _read_tsv(list(sound_score_paths)) if sound_score_paths else pd.DataFrame(columns=["model", "bucket", "label", "score"])
    report.roc_figure(test_scores, labels, bucket_order, outputs["roc_figure"], f"ROC, sound protocol ({config['run_name']})")
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
        "protocol": {"name": "paper", "seeds": settings.get("seeds"), "c_grid": settings.get("c_grid"),
                     "train_subsample": settings.get("train_subsample"), "buckets": bucket_order,
                     "auroc": "from hard predict() labels (equals balanced accuracy)", "sd": "numpy std over seeds (ddof=0)"},
        "protocols": {
            "paper": "buckets inclusive on both edges; seeded subsamples; C by mean test AUROC; AUROC from predict() labels",
            "sound": {**sound_defaults(), **(settings.get("sound") or {}),
                      "buckets": "half-open", "selection": "chromosome-grouped CV on the training split",
                      "auroc": "from decision_function scores; 95 % percentile bootstrap CI over test rows",
                      "tissue": "one-hot"},
            "zero_shot": {"llr": "log p(alt) - log p(ref) at the SNP from mlm_logits on the ref context, forward/RC mean; score = -llr",
                          "l2": "||alt - ref|| of RC-averaged pooled embeddings", "cosine": "1 - cos(alt, ref), same vectors",
                          "settings": config.get("zero_shot", {})},
        },
        "environment": provenance.environment(),
        "results": summary.to_dict(orient="records"),
        "results_sound_and_zero_shot": sound_results.to_dict(orient="records"),
    }
    provenance.write_json(outputs["provenance"], payload)
    return wide


def sound_defaults() -> dict:
    """The sound protocol's settings when the config does not give them."""
    from caduceus_vep.sound import SoundSettings

    d = SoundSettings()
    return {"c_grid": list(d.c_grid), "gamma_grid": list(d.gamma_grid), "cv_folds": d.cv_folds, "bootstrap": d.bootstrap,
            "max_train_rows": d.max_train_rows, "seed": d.seed}


def score_stage(vcf: PathLike, fasta: PathLike, classifier_paths: list[PathLike], options: dict, outputs: dict[str, PathLike],
                workdir: PathLike, embed_settings: dict | None = None, zero_shot_settings: dict | None = None,
                threads: int = 1, bootstrap: int = 1000, seed: int = 1) -> dict:
    """Score a user's VCF with saved classifiers: TSV keyed by the user's ids, a scored VCF, skips, AUROC.

    Each classifier's sidecar names its model and window spec, so the VCF's features are made
    exactly as the training features were. Labels (``options['label_info']``) are optional: without
    them the AUROC table is empty.
    """
    from caduceus_vep import scoring, zero_shot

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    variants_path, windows_path = work / "variants.parquet", work / "windows.parquet"
    variants_stage(vcf, {"format": "vcf", **{k: v for k, v in options.items() if v is not None}}, variants_path, work / "variants_skipped.tsv")
    bundles = {Path(p).name.split(".")[0]: scoring.load_classifiers(p) for p in classifier_paths}
    specs = {b["sidecar"]["windows"]["context_length"] for b in bundles.values()}, {b["sidecar"]["windows"]["pooling_window"] for b in bundles.values()}
    if len(specs[0]) != 1 or len(specs[1]) != 1:
        raise ValueError("the classifiers were trained on different window specs; score with one spec at a time")
    spec = next(iter(bundles.values()))["sidecar"]["windows"]
    windows_stage(variants_path, fasta, spec, windows_path, work / "windows_skipped.tsv", source=vcf)
    variants = pd.read_parquet(variants_path)
    per_model, bucket_descriptions = {}, {}
    for name, bundle in bundles.items():
        model = bundle["sidecar"]["model"]
        embeddings = work / f"{name}.embeddings.parquet"
        embed_stage(windows_path, fasta, model, embed_settings or {}, embeddings, threads=threads)
        zs, _ = zero_shot.score_variants(windows_path, fasta, embeddings, model, zero_shot_settings or {}, threads)
        ids, matrices, _ = read_embeddings(embeddings)
        frame = pd.DataFrame({"variant_id": ids["variant_id"]})
        probs = scoring.predict(bundle, matrices, str(options.get("tissue") or "NA"))
        for bucket, values in probs.items():
            frame[f"p_{scoring.bucket_key(bucket)}"] = values
            m = bundle["models"][bucket].bucket
            bucket_descriptions[bucket] = f"TSS distance [{m.low}, {m.high if m.high is not None else 'inf'}{']' if m.closed_high else ')'}"
        distance = variants.drop_duplicates("variant_id").set_index("variant_id")["distance_to_nearest_TSS"].reindex(frame["variant_id"])
        frame["bucket"] = scoring.own_bucket(distance.reset_index(drop=True), bundle).to_numpy()
        frame["p"] = [row[f"p_{scoring.bucket_key(b)}"] if b else float("nan") for b, (_, row) in zip(frame["bucket"], frame.iterrows())]
        per_model[name] = frame.merge(zs[["variant_id", "llr", "l2", "cosine"]], on="variant_id", how="left")
    table = scoring.score_table(variants, per_model)
    skipped = pd.concat([pd.read_csv(work / "variants_skipped.tsv", sep="\t"), pd.read_csv(work / "windows_skipped.tsv", sep="\t")],
                        ignore_index=True)
    report.write_tsv(table, outputs["tsv"])
    report.write_tsv(skipped, outputs["skipped"])
    auroc = scoring.labelled_auroc(table, list(bundles), list(bucket_descriptions), bootstrap, seed)
    report.write_tsv(auroc, outputs["auroc"])
    n_scored = scoring.write_scored_vcf(vcf, outputs["vcf"], table, list(bundles), bucket_descriptions)
    summary = {"variants": len(variants), "scored_alleles": n_scored, "skipped": len(skipped), "labelled": bool(len(auroc))}
    log.info("score: %s\n%s", summary, auroc.to_string(index=False))
    return summary


def _download_records(inputs: dict[str, PathLike]) -> dict:
    """Download provenance written beside fetched inputs (``<file>.download.json``), where present."""
    records = {}
    for name, p in inputs.items():
        candidate = Path(str(p) + ".download.json")
        if candidate.exists():
            records[name] = json.loads(candidate.read_text())
    return records
