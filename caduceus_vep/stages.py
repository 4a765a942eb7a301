"""One function per workflow stage: file paths in, files out. Used by the Snakemake rules (through
``workflow_scripts/_adapter.py``), the CLI and :mod:`caduceus_vep.api`.

Every stage takes keyword arguments named as the rule's inputs and params, with ``out_<name>`` for
its outputs; it writes every output atomically and returns a small summary dict (also logged), so
runs are explainable from their logs alone. Settings arrive complete (the schema fills defaults);
no stage carries defaults of its own.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from caduceus_vep import evaluate as ev
from caduceus_vep import provenance, report
from caduceus_vep.atomic import atomic_path, write_text_atomic
from caduceus_vep.feature_file import read_embeddings
from caduceus_vep.genome import Genome, GenomeError
from caduceus_vep.modelspec import ModelSpec, read_model_record
from caduceus_vep.settings import ConfigError
from caduceus_vep.tss import AnnotationError, fill_tss_distances
from caduceus_vep.variants import VariantInputError, read_options_from_config, read_variants, unique_variants
from caduceus_vep.windows import WindowError, WindowSpec, read_window_spec, write_windows

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


class StageError(ValueError):
    """A stage cannot go on for a reason the user can fix; the message says what and how."""


# Problems with the user's inputs or config: one clear line, no traceback (the log keeps it).
USER_ERRORS = (StageError, ConfigError, VariantInputError, WindowError, GenomeError, AnnotationError, FileNotFoundError)


def configure_logging(path: PathLike | None) -> None:
    """Log INFO and above to ``path`` (a rule's log file) or to stderr."""
    handler: logging.Handler = logging.FileHandler(path, mode="w") if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # On a full results disk the log file cannot grow either: drop those lines instead of printing
    # a "Logging error" traceback per line; the job's one-line error still reaches stderr.
    logging.raiseExceptions = False


def _user_errors() -> tuple[type[BaseException], ...]:
    try:
        from caduceus_vep.model.loading import CheckpointError
    except ImportError:  # torch missing: no model errors can occur either
        return USER_ERRORS
    from caduceus_vep import fetch
    from caduceus_vep.model import loading

    extra = [CheckpointError, fetch.DownloadError, fetch.FastaPrepError]

    if hasattr(loading, "ModelUnavailableError"):
        extra.append(loading.ModelUnavailableError)
    return (*USER_ERRORS, *extra)


def run_logged(log_path: PathLike | None, stage, *args, **kwargs):
    """Run ``stage`` with logging to ``log_path``.

    A user-fixable error (bad input, config, missing model) is logged and ends the process with its
    message alone (``SystemExit``), so Snakemake shows one line, not a traceback; anything else is
    logged with its traceback and re-raised.
    """
    configure_logging(log_path)
    try:
        return stage(*args, **kwargs)
    except _user_errors() as err:
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
    except OSError as err:
        if err.errno not in _DISK_ERRNOS:
            log.exception("stage %s failed", getattr(stage, "__name__", stage))
            raise
        message = _disk_message(err, kwargs)
        log.error("%s", message)
        raise SystemExit(f"error: {message}") from None
    except Exception:
        log.exception("stage %s failed", getattr(stage, "__name__", stage))
        raise


# A full or read-only results disk is the user's to fix, not a bug: one line naming where, no traceback.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _disk_message(err: OSError, kwargs: dict) -> str:
    outputs = [str(v) for k, v in kwargs.items() if k.startswith("out_") and isinstance(v, (str, os.PathLike))]
    where = err.filename or (os.path.dirname(outputs[0]) if outputs else "the results folder")
    cause = "no space left on the device" if err.errno != errno.EROFS else "the file system is read-only"
    return (f"cannot write {where}: {cause} ({os.strerror(err.errno)}). Nothing half-written was kept; "
            "free space (or make it writable) and re-run: finished jobs are not repeated")


def _write_parquet(frame: pd.DataFrame, path: PathLike) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def _reason_counts(skipped: pd.DataFrame) -> dict[str, int]:
    # Reasons carry alleles, positions and percentages; masking them groups the reasons for the log.
    if skipped.empty:
        return {}
    kinds = (skipped["reason"].astype(str).str.partition(" (")[0].str.replace(r"\d[\d.,%:]*", "#", regex=True)
             .str.replace(r"\b[ACGTN]+\b", "X", regex=True).str.replace(r"'[^']*'", "'.'", regex=True))
    return {str(k): int(v) for k, v in kinds.value_counts().items()}


# ----------------------------------------------------------------------------- inputs


def variants_stage(*, source: PathLike, options: dict, out_variants: PathLike, out_skipped: PathLike,
                   tss: PathLike | None = None, dataset: str = "variants") -> dict:
    """Normalise a dataset's variants to one row per (variant, tissue); record skips.

    ``options`` is the dataset's config entry; ``tss`` (the ``tss.gtf`` key) fills in missing
    distances to the nearest TSS. A dataset with ``evaluate: true`` must carry 0/1 labels: without
    them this stage stops at once, pointing at scoring.
    """
    table = read_variants(source, options["format"], read_options_from_config(options))
    variants, notes = table.variants, list(table.notes)
    if options["evaluate"] and not (variants["label"] >= 0).any():
        raise StageError(
            f"dataset {dataset} ({source}) has evaluate: true but no 0/1 labels "
            f"(label_info {options['label_info']!r}, label_column {options['label_column']!r}); evaluation needs labels. "
            f"To score these variants without labels set datasets.{dataset}.evaluate: false (scores with zero-shot and, "
            f"with datasets.{dataset}.classifiers, classifier probabilities) and run `snakemake score_all` or "
            "`caduceus-vep score`.")
    if tss:
        variants, tss_notes = fill_tss_distances(variants, tss)
        notes += tss_notes
    elif (variants["distance_to_nearest_TSS"] < 0).any():
        notes.append(f"{int((variants['distance_to_nearest_TSS'] < 0).sum())} rows have no distance_to_nearest_TSS "
                     "(-1, in no bucket): give distance_info / a distance column, or a tss.gtf to compute it")
    _write_parquet(variants, out_variants)
    report.write_tsv(table.skipped, out_skipped)
    summary = {"input_records": table.n_input_records, "input_alleles": table.n_input_alleles, "rows": len(variants),
               "unique_variants": int(variants["variant_id"].nunique()), "labelled_rows": int((variants["label"] >= 0).sum()),
               "skipped": len(table.skipped), "skip_reasons": _reason_counts(table.skipped), "notes": notes}
    log.info("variants: %s", summary)
    if not len(variants):
        log.warning("dataset %s: no scorable variant in %s (every record is in %s)", dataset, source, out_skipped)
    return summary


def windows_stage(*, variants: PathLike, fasta: PathLike, spec: dict, out_windows: PathLike, out_skipped: PathLike,
                  source: PathLike | None = None, out_flags: PathLike | None = None, index: object = None) -> dict:
    """Check unique variants against the genome and record their context and pooling windows.

    ``source`` names the original input file in the skipped-records table (line numbers refer to
    it); ``out_flags`` lists variants kept despite a REF mismatch (``windows.ref_mismatch: flag``).
    ``index`` (the FASTA's index files) is only a dependency. The spec goes into the file's metadata.
    """
    window_spec = WindowSpec.from_config(spec)
    unique = unique_variants(pd.read_parquet(variants))
    with Genome(fasta) as genome:
        result = write_windows(unique, genome, window_spec, out_windows, source=str(source or variants))
    report.write_tsv(result.skipped, out_skipped)
    if out_flags is not None:
        report.write_tsv(result.flags, out_flags)
    summary = {"unique_variants": len(unique), "kept": result.n_kept, "skipped": len(result.skipped),
               "flagged": len(result.flags), "ref_checked": result.n_ref_checked, "ref_mismatch": result.n_ref_mismatch,
               "skip_reasons": _reason_counts(result.skipped)}
    log.info("windows: %s", summary)
    return summary


def fetch_file_stage(*, url: str, sha256: str | None, out_provenance: PathLike, expect: str | None = None,
                     **outputs: PathLike) -> dict:
    """Download ``url`` into the rule's one other output (resume, retries, checksum) and record it.

    ``expect`` is checked on the content when no checksum is pinned (``fetch.download``): e.g.
    ``fasta``, ``gtf`` or ``csv_header:CHROM,POS,...``; an HTML error page is always refused.
    """
    from caduceus_vep import fetch

    (dest,) = outputs.values()
    record = fetch.download(url, dest, sha256=sha256, expect=expect)
    fetch.write_download_provenance(record, out_provenance)
    log.info("downloaded %s", record.to_dict())
    return record.to_dict()


def prepare_genome_stage(*, archive: PathLike, out_fasta: PathLike, out_fai: PathLike) -> dict:
    """A downloaded gzip/bgzip/plain FASTA into a plain FASTA plus ``.fai``."""
    from caduceus_vep import fetch

    fetch.prepare_fasta(archive, out_fasta)
    return {"fasta": str(out_fasta), "fai": str(out_fai)}


def index_genome_stage(*, fasta: PathLike, out_index: PathLike | list[PathLike]) -> dict:
    """Index a plain or bgzipped FASTA (``.fai``, plus ``.gzi`` for bgzip) where the index is missing or stale."""
    from caduceus_vep.genome import index_fasta

    written = index_fasta(fasta)
    log.info("indexed %s: %s", fasta, written)
    return {"index": [str(p) for p in written]}


def fetch_model_stage(*, model: dict, cache_dir: PathLike | None, out_record: PathLike) -> dict:
    """Download a Hub checkpoint (or check a local folder) on this machine and record where it is."""
    from caduceus_vep.model.loading import fetch_checkpoint
    from caduceus_vep.model.registry import resolve_family

    spec = ModelSpec.from_config(model)

    def check(folder):
        resolve_family(spec.architecture, folder).check_config(folder)

    record = {"name": spec.name, **fetch_checkpoint(spec.path, spec.revision, cache_dir=cache_dir, check_config=check)}
    record["architecture"] = resolve_family(spec.architecture, record["local_path"]).name
    provenance.write_json(out_record, record)
    log.info("model %s: %s", spec.name, record)
    return record


# ----------------------------------------------------------------------------- embeddings


# A test cluster with fake GPUs (tests/test_slurm.py): jobs are given a GPU by Slurm but run on the CPU.
GPU_JOBS_ON_CPU = "CADUCEUS_VEP_GPU_JOBS_ON_CPU"


def _gpu_required(require_gpu: bool) -> bool:
    """Whether a job given the gpu resource must run on CUDA (always, unless GPU_JOBS_ON_CPU is set)."""
    if require_gpu and os.environ.get(GPU_JOBS_ON_CPU):
        log.info("CUDA_VISIBLE_DEVICES=%s (gpu job run on the CPU: %s is set)", os.environ.get("CUDA_VISIBLE_DEVICES", ""), GPU_JOBS_ON_CPU)
        return False
    return require_gpu


def _embed_settings(settings: dict, threads: int, require_gpu: bool, model: dict | None = None):
    from caduceus_vep.embed import EmbedSettings

    batch_size = (model or {}).get("batch_size") or settings["batch_size"]  # a model's own batch size wins
    return EmbedSettings(batch_size=batch_size, device="cuda" if _gpu_required(require_gpu) else settings["device"],
                         autocast_dtype=settings["autocast_dtype"], threads=threads,
                         cpu_batch_size=settings["cpu_batch_size"])


def _load_spec(model: dict, model_record: PathLike | None) -> dict:
    """The model entry with ``path`` pointing at the fetched local folder (compute jobs never reach the Hub)."""
    spec = ModelSpec.from_config(model).to_dict()
    if model_record:
        record = read_model_record(model_record)
        spec.update(path=record["local_path"], revision=None, source=record.get("source"),
                    source_revision=record.get("resolved_commit") or record.get("revision"),
                    architecture=spec.get("architecture") or record.get("architecture"))
    return spec


def embed_shard_stage(*, windows: PathLike, fasta: PathLike, model: dict, settings: dict, shard: int, shards: int,
                      out_features: PathLike, work_dir: PathLike, model_record: PathLike | None = None, threads: int = 1,
                      require_gpu: bool = False, index: object = None) -> dict:
    """Embed shard ``shard`` of ``shards`` of the kept variants with one model (resumable, cached)."""
    from caduceus_vep.shards import ShardJob, run_shard

    cache_dir = settings["cache_dir"]
    job = ShardJob(shard=int(shard), shards=int(shards), checkpoint_every=int(settings["checkpoint_every"]),
                   work_dir=Path(work_dir), cache_dir=Path(cache_dir) if cache_dir else None)
    return run_shard(windows, fasta, _load_spec(model, model_record), _embed_settings(settings, threads, require_gpu, model), job,
                     out_features)


def embed_merge_stage(*, shards: list[PathLike], windows: PathLike, out_embeddings: PathLike,
                      variants: PathLike | None = None) -> dict:
    """Gather a model's shard files into ``embeddings/<model>.parquet``; every kept variant exactly once."""
    from caduceus_vep.shards import merge_shards

    return merge_shards(list(shards), windows, out_embeddings, variants_path=variants)


def embed_stage(*, windows: PathLike, fasta: PathLike, model: dict, settings: dict, out_embeddings: PathLike,
                model_record: PathLike | None = None, threads: int = 1, require_gpu: bool = False) -> dict:
    """Embed every kept variant with one model in a single job (CLI, API): one shard, then the merge."""
    out = Path(out_embeddings)
    work = out.parent / f".{out.stem}.work"
    shard_file = work / "shard-0-of-1.parquet"
    summary = embed_shard_stage(windows=windows, fasta=fasta, model=model, settings=settings, shard=0, shards=1,
                                out_features=shard_file, work_dir=work / "chunks", model_record=model_record,
                                threads=threads, require_gpu=require_gpu)
    embed_merge_stage(shards=[shard_file], windows=windows, out_embeddings=out_embeddings)
    shard_file.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return summary


# ----------------------------------------------------------------------------- zero-shot and evaluation


def zero_shot_stage(*, windows: PathLike, fasta: PathLike, embeddings: PathLike, model: dict, settings: dict,
                    out_scores: PathLike, model_record: PathLike | None = None, threads: int = 1, require_gpu: bool = False,
                    index: object = None) -> dict:
    """Zero-shot scores of every kept variant: LLR unmasked and SNP-masked, embedding distances."""
    from caduceus_vep import zero_shot

    run_settings = {**settings, "device": "cuda"} if _gpu_required(require_gpu) else settings
    scores, summary = zero_shot.score_variants(windows, fasta, embeddings, _load_spec(model, model_record), run_settings, threads)
    _write_parquet(scores, out_scores)
    log.info("zero_shot %s: %s", model["name"], summary)
    return summary


def evaluation_rows(variants_path: PathLike, windows_path: PathLike) -> pd.DataFrame:
    """The labelled (variant, tissue) rows whose variant survived the windows stage."""
    variants = pd.read_parquet(variants_path)
    kept = set(pd.read_parquet(windows_path, columns=["variant_id"])["variant_id"])
    rows = variants[variants["variant_id"].isin(kept) & (variants["label"] >= 0)]
    return rows.reset_index(drop=True)


def _buckets(settings: dict, closed_high: bool) -> tuple[ev.Bucket, ...]:
    return ev.buckets_from_config(settings["buckets"], closed_high)


def zero_shot_auroc_stage(*, variants: PathLike, windows: PathLike, scores: PathLike, model: dict, settings: dict,
                          out_auroc: PathLike) -> dict:
    """AUROC/AUPRC with bootstrap CIs of the zero-shot scores on the test split, per bucket."""
    from caduceus_vep import zero_shot

    rows = evaluation_rows(variants, windows)
    sound = settings["sound"]
    table = zero_shot.zero_shot_auroc(rows, pd.read_parquet(scores), model=model["name"], buckets=_buckets(settings, closed_high=False),
                                      bootstrap=sound["bootstrap"], seed=sound["seed"])
    report.write_tsv(table, out_auroc)
    log.info("zero_shot auroc %s:\n%s", model["name"], table.to_string(index=False))
    return {"rows": len(rows)}


def evaluate_stage(*, variants: PathLike, windows: PathLike, embeddings: PathLike, model: dict, settings: dict,
                   out_per_seed: PathLike, threads: int = 1) -> dict:
    """The paper's SVM protocol for one model's result rows (its own and its ``evaluate.extra_rows``, all
    from the same feature file); writes per-seed AUROCs, the row name in the ``model`` column."""
    rows = evaluation_rows(variants, windows)
    ids, matrices, _ = read_embeddings(embeddings)
    per_seed = pd.concat([ev.paper_protocol(
        rows, ids["variant_id"], matrices, model=row.name, rc_rule=row.rc_rule, seeds=list(settings["seeds"]),
        c_grid=[float(c) for c in settings["c_grid"]], train_subsample=int(settings["train_subsample"]),
        buckets=_buckets(settings, closed_high=True), n_jobs=threads)
        for row in ev.rows_of_model(model, settings["extra_rows"])], ignore_index=True)
    report.write_tsv(per_seed, out_per_seed)
    summary = ev.summarise(per_seed)
    log.info("evaluate %s:\n%s", model["name"], summary.to_string(index=False))
    return {"rows": len(rows), "fits": int(per_seed["auroc"].notna().sum())}


def evaluate_sound_stage(*, variants: PathLike, windows: PathLike, embeddings: PathLike, model: dict, settings: dict,
                         out_table: PathLike, out_scores: PathLike, out_bundle: PathLike, model_record: PathLike | None = None,
                         threads: int = 1) -> dict:
    """The sound protocol for one model's result rows (its own and its ``evaluate.extra_rows``): results
    table and test-row scores of every row; the classifier bundle of the model's own row."""
    from caduceus_vep import bundle, sound

    rows = evaluation_rows(variants, windows)
    ids, matrices, meta = read_embeddings(embeddings)
    sound_settings = sound.SoundSettings.from_config(settings["sound"])
    results = [sound.sound_protocol(rows, ids["variant_id"], matrices, model=row.name, rc_rule=row.rc_rule,
                                    settings=sound_settings, buckets=_buckets(settings, closed_high=False), n_jobs=threads)
               for row in ev.rows_of_model(model, settings["extra_rows"])]
    result = results[0]  # the model's own row: its classifiers score users' variants
    report.write_tsv(pd.concat([r.table for r in results], ignore_index=True), out_table)
    report.write_tsv(pd.concat([r.test_scores for r in results], ignore_index=True), out_scores)
    record = read_model_record(model_record) if model_record else {}
    bundle.save_bundle(result, out_bundle, {
        "model": {**ModelSpec.from_config(model).to_dict(), "weights_sha256": meta.get("model", {}).get("weights_sha256"),
                  "source": record.get("source"), "resolved_commit": record.get("resolved_commit")},
        "windows": read_window_spec(windows).to_dict(), "protocol": "sound", "settings": settings["sound"],
        "feature_width": int(matrices["ref_fwd"].shape[1]) if len(ids) else 0,
        "training_data": {"variants": provenance.file_record(variants), "embeddings": provenance.file_record(embeddings)},
    })
    for r in results:
        log.info("evaluate_sound %s:\n%s", model["name"], r.table.to_string(index=False))
    return {"rows": len(rows), "buckets": len(result.models), "result_rows": len(results)}


# ----------------------------------------------------------------------------- scores and reports


def score_stage(*, source: PathLike, variants: PathLike, variants_skipped: PathLike, windows: PathLike,
                windows_skipped: PathLike, models: list[dict], options: dict, settings: dict,
                out_parquet: PathLike, out_tsv: PathLike, out_vcf: PathLike, out_tbi: PathLike, out_skipped: PathLike,
                out_auroc: PathLike, out_provenance: PathLike, zero_shot: list[PathLike] | None = None,
                embeddings: list[PathLike] | None = None, classifiers: list[PathLike] | None = None,
                model_records: list[PathLike] | None = None, dataset: str = "variants", config: dict | None = None,
                threads: int = 1) -> dict:
    """Per-variant scores of a dataset: zero-shot, classifier probabilities (when bundles are given),
    AUROC where labelled; writes parquet, TSV, a bgzipped + tabix-indexed scored VCF and the skips."""
    from caduceus_vep import scoring

    specs = [ModelSpec.from_config(m) for m in models]
    records = {r["name"]: r for r in (read_model_record(p) for p in model_records or [])}
    window_spec = read_window_spec(windows)
    variant_rows = pd.read_parquet(variants)
    per_model = scoring.model_scores(
        windows_path=windows, specs=specs, zero_shot_paths=zero_shot or [], embedding_paths=embeddings or [],
        bundle_paths=classifiers or [], records=records, window_spec=window_spec,
        tissues=sorted(set(variant_rows["tissue"].astype(str))), threads=threads)
    table = scoring.score_table(variant_rows, per_model)
    _write_parquet(table, out_parquet)
    report.write_tsv(table, out_tsv)
    skipped = scoring.combined_skips([variants_skipped, windows_skipped])
    report.write_tsv(skipped, out_skipped)
    sound = settings["sound"]
    auroc = scoring.labelled_auroc(table, per_model.models, per_model.buckets, sound["bootstrap"], sound["seed"])
    report.write_tsv(auroc, out_auroc)
    n_records = scoring.write_scored_vcf(source, out_vcf, out_tbi, table, per_model, options["format"], records=records,
                                         dataset_tissue=options["tissue"])
    summary = {"dataset": dataset, "rows": len(table), "scored_vcf_records": n_records, "skipped": len(skipped),
               "scored_rows": {m: int(table[f"{m}_llr"].notna().sum()) for m in per_model.zero_shot},
               "labelled": bool(len(auroc)), "models": per_model.models, "classifiers": sorted(per_model.bundles)}
    provenance.write_json(out_provenance, {
        "dataset": dataset, "source": provenance.file_record(source), "options": options, "windows": window_spec.to_dict(),
        "models": records, "classifier_bundles": per_model.bundles, "summary": summary,
        "config": config or {}, "environment": provenance.environment()})
    log.info("score: %s\n%s", summary, auroc.to_string(index=False))
    return summary


def _read_tsv(paths: list[PathLike] | None) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", keep_default_na=False, na_values=["", "nan", "NaN"]) for p in paths or []]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "note" in frame.columns:
        frame["note"] = frame["note"].fillna("").astype(str)
    return frame


def report_stage(*, config: dict, dataset: str, embeddings: list[PathLike], source: PathLike, fasta: PathLike,
                 workflow_dir: PathLike, out_table_tsv: PathLike, out_table_md: PathLike, out_per_seed: PathLike,
                 out_figure: PathLike, out_provenance: PathLike, out_sound_tsv: PathLike, out_reference_tsv: PathLike,
                 out_roc_figure: PathLike, out_fig4_tsv: PathLike, per_seed: list[PathLike] | None = None, sound: list[PathLike] | None = None,
                 sound_scores: list[PathLike] | None = None, zero_shot: list[PathLike] | None = None,
                 model_records: list[PathLike] | None = None, tss: PathLike | None = None,
                 reference_values: PathLike | None = None, **dependencies: object) -> pd.DataFrame:
    """Tables, figures and provenance of an evaluated dataset (paper, sound and zero-shot rows); returns the paper table.

    ``dependencies`` (variants, windows, skipped tables) only order the rule after those stages.
    """
    settings = config["evaluate"]
    table_rows = ev.table_rows(config["models"], settings["extra_rows"])
    labels = {r.name: r.label for r in table_rows}
    rank = report.row_rank([(r.name, r.label) for r in table_rows], settings["row_order"])
    ordered = sorted(table_rows, key=lambda r: rank[r.name])
    per_seed_frame = _read_tsv(per_seed) if per_seed else pd.DataFrame(columns=ev.PER_SEED_COLUMNS)
    summary = report.order_rows(ev.summarise(per_seed_frame), rank)
    bucket_order = [b.name for b in _buckets(settings, closed_high=True)]
    wide = report.vep_table(summary, labels, bucket_order)
    title = f"eQTL VEP AUROC by distance to TSS ({config['run_name']}, {dataset})"
    sound_results = report.order_rows(pd.concat([_read_tsv(sound), _read_tsv(zero_shot)], ignore_index=True), rank)
    sound_wide = report.sound_table(sound_results, labels, bucket_order) if len(sound_results) else pd.DataFrame()
    reference = report.read_reference_values(reference_values) if reference_values else pd.DataFrame(
        columns=["model", "protocol", "bucket", "auroc", "approximate", "source"])
    comparison = report.reference_comparison(wide, reference)
    fig4 = report.fig4_comparison(summary, sound_results, [(r.name, r.label) for r in ordered], bucket_order, reference)
    report.write_tsv(wide, out_table_tsv)
    report.write_tsv(sound_wide, out_sound_tsv)
    report.write_tsv(comparison, out_reference_tsv)
    report.write_tsv(fig4, out_fig4_tsv)
    write_text_atomic(out_table_md, report.full_markdown(title, wide, bucket_order, sound_wide, bucket_order, comparison,
                                                         settings["sound"], fig4))
    report.write_tsv(per_seed_frame, out_per_seed)
    report.bar_chart(wide, bucket_order, out_figure, title + ": paper protocol (± sd over seeds), sound protocol (95 % CI)",
                     sound_wide)
    test_scores = _read_tsv(sound_scores) if sound_scores else pd.DataFrame(columns=["model", "bucket", "label", "score"])
    test_scores = report.order_rows(test_scores, rank)
    report.roc_figure(test_scores, labels, bucket_order, out_roc_figure, f"ROC, sound protocol ({config['run_name']}, {dataset})")
    models = {}
    for path in embeddings:
        _, _, meta = read_embeddings(path)
        models[Path(path).stem] = meta
    inputs = {"variants": source, "genome_fasta": fasta, **({"tss_gtf": tss} if tss else {})}
    payload = {
        "run_name": config["run_name"], "dataset": dataset,
        "workflow": {"git_revision": provenance.git_revision(workflow_dir)},
        "inputs": {name: provenance.file_record(p) for name, p in inputs.items()},
        "downloads": provenance.download_records(inputs),
        "models": models,
        "model_records": [read_model_record(p) for p in model_records or []],
        "config": config,
        "protocol": {"name": "paper", "seeds": settings["seeds"], "c_grid": settings["c_grid"],
                     "train_subsample": settings["train_subsample"], "buckets": bucket_order,
                     "auroc": "from hard predict() labels (equals balanced accuracy)", "sd": "sample sd over seeds (ddof=1)",
                     "train_draw": "np.random.seed(seed); np.random.choice(n, train_subsample, replace=train_subsample > n)",
                     "tissue_codes": "LabelEncoder fitted on the test split; training rows of other tissues dropped",
                     "nan_rows": "rows with NaN features dropped before bucketing",
                     "rows": [{"name": r.name, "label": r.label, "model": r.model, "rc_rule": r.rc_rule} for r in ordered]},
        "protocols": {
            "paper": "buckets inclusive on both edges; seeded draws (with replacement for small buckets); C by mean test AUROC; "
                     "AUROC from predict() labels",
            "sound": {**settings["sound"], "buckets": "half-open", "selection": "chromosome-grouped CV on the training split",
                      "auroc": "from decision_function scores; 95 % percentile bootstrap CI over test rows", "tissue": "one-hot"},
            "zero_shot": {"llr": "log p(alt) - log p(ref) at the SNP from mlm_logits on the ref context, forward/RC mean; score = -llr",
                          "llr_masked": "the same with the SNP token masked", "l2": "||alt - ref|| of RC-averaged pooled embeddings",
                          "cosine": "1 - cos(alt, ref), same vectors", "settings": config["zero_shot"]},
        },
        "environment": provenance.environment(),
        "results": summary.to_dict(orient="records"),
        "results_sound_and_zero_shot": sound_results.to_dict(orient="records"),
    }
    provenance.write_json(out_provenance, payload)
    return wide
