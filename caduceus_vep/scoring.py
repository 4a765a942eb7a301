"""Per-variant scores of a dataset: zero-shot scores and classifier probabilities, as tables and a VCF.

Per model the scores of a variant are the zero-shot ``llr`` (log p(alt) - log p(ref) at the SNP,
unmasked), ``llr_masked`` (the SNP token masked), ``l2`` and ``cosine`` (pooled-embedding
distances), and, when the dataset names classifier bundles (``caduceus_vep.bundle``), ``p``: the
probability of being causal from the bucket model that the variant's TSS distance falls in, plus
``p_<bucket>`` from every bucket model.

Probability: Platt scaling, p = 1 / (1 + exp(-(a·s + b))), s = the SVM decision score and (a, b)
fitted on out-of-fold decision scores. The tissue is a one-hot input of the classifier: a row whose
tissue the classifier saw uses it; any other tissue (a VCF carries ``NA`` by default) gets the
tissue-marginal probability (the mean over the training tissues). All tissues cost one kernel:
with the design row x = [e, onehot(t)], ||x - sv||^2 splits into an embedding part (shared) and a
tissue part (a number per support vector and tissue), so decision_t = K_emb @ (dual * exp(-γ d_t)) + b.

Everything streams in blocks of variants (embeddings are read by parquet row groups), so memory
grows with the number of variants only by the score columns themselves.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from caduceus_vep.atomic import kill_point
from caduceus_vep.bundle import Bundle, BundleError, check_bundle, load_bundle
from caduceus_vep.evaluate import rbf_kernel, variant_features
from caduceus_vep.feature_file import FEATURE_COLUMNS
from caduceus_vep.metrics import bootstrap_metrics
from caduceus_vep.modelspec import ModelSpec
from caduceus_vep.provenance import sha256_file
from caduceus_vep.windows import WindowSpec

PathLike = str | os.PathLike[str]
ZERO_SHOT_COLUMNS = ("llr", "llr_masked", "l2", "cosine")
# score -> sign making higher = more likely causal (for AUROC): an unlikely alt allele is damaging.
SCORE_SIGNS = {"p": 1.0, "llr": -1.0, "llr_masked": -1.0, "l2": 1.0, "cosine": 1.0}
BLOCK_VARIANTS = 4096
SKIPPED_COLUMNS = ["source", "line", "id", "chrom", "pos", "ref", "alt", "reason"]


def bucket_key(name: str) -> str:
    """A bucket name as part of a column or INFO key: ``0-30kb`` -> ``0_30kb``, ``>100kb`` -> ``gt100kb``."""
    return re.sub(r"[^0-9A-Za-z]", "_", name.replace(">", "gt").replace("<", "lt"))


@dataclass
class ModelScores:
    """Scores of every kept variant (windows order) for every model; see the module docstring."""

    variant_ids: np.ndarray
    models: list[str]
    tissues: list[str]                                         # probability columns 0..T-1; column T: marginal
    zero_shot: dict[str, pd.DataFrame] = field(default_factory=dict)
    probabilities: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> bucket -> [N, T+1]
    bucket_models: dict[str, Bundle] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)      # bucket name -> description
    bundles: dict[str, dict] = field(default_factory=dict)     # model -> provenance of its bundle


def tissue_decisions(model, embedding_design: np.ndarray, n_tissue_columns: int, tissue_rows: np.ndarray) -> np.ndarray:
    """Decision values [N, K] of a bucket model for N embedding rows and K tissue one-hot rows [K, T].

    Equals ``model.decision_function(column_stack([embedding_design, tissue_rows[k]]))`` for every k.
    """
    split = embedding_design.shape[1]
    if split + n_tissue_columns != len(model.scaler_mean):
        raise ValueError(f"the bundle expects {len(model.scaler_mean)} design columns, got {split} + {n_tissue_columns}")
    scaled = (np.asarray(embedding_design, np.float64) - model.scaler_mean[:split]) / model.scaler_scale[:split]
    tissue_scaled = (np.asarray(tissue_rows, np.float64) - model.scaler_mean[split:]) / model.scaler_scale[split:]
    sv_emb, sv_tis = model.support_vectors[:, :split], model.support_vectors[:, split:]
    tissue_sq = ((tissue_scaled[:, None, :] - sv_tis[None, :, :]) ** 2).sum(axis=2)  # [K, S]
    weights = model.dual_coef[:, None] * np.exp(-model.gamma * tissue_sq.T)  # [S, K]
    return rbf_kernel(scaled, sv_emb, model.gamma) @ weights + model.intercept


def _bucket_description(bucket) -> str:
    return f"TSS distance [{bucket.low}, {bucket.high if bucket.high is not None else 'inf'}{']' if bucket.closed_high else ')'}"


def _probabilities(bundle: Bundle, embeddings_path: PathLike, tissues: list[str]) -> dict[str, np.ndarray]:
    """Per bucket model: probabilities [N, T+1] for the dataset's tissues (unknown = marginal) and the marginal."""
    onehots = np.eye(len(bundle.tissues))
    known = [bundle.tissues.index(t) if t in bundle.tissues else -1 for t in tissues]
    out = {name: [] for name in bundle.models}
    parquet = pq.ParquetFile(embeddings_path)
    for batch in parquet.iter_batches(batch_size=BLOCK_VARIANTS, columns=list(FEATURE_COLUMNS)):
        matrices = {c: np.asarray(batch.column(c).flatten().to_numpy(zero_copy_only=False), np.float32)
                    .reshape(batch.num_rows, -1) for c in FEATURE_COLUMNS}
        design = variant_features(matrices, bundle.feature_kind)
        for name, model in bundle.models.items():
            probs = model.probability(tissue_decisions(model, design, len(bundle.tissues), onehots))  # [n, T_train]
            marginal = probs.mean(axis=1) if probs.shape[1] else np.full(len(probs), np.nan)
            columns = [probs[:, k] if k >= 0 else marginal for k in known] + [marginal]
            out[name].append(np.column_stack(columns))
    return {name: np.concatenate(parts) if parts else np.zeros((0, len(tissues) + 1)) for name, parts in out.items()}


def model_scores(*, windows_path: PathLike, specs: list[ModelSpec], zero_shot_paths: list[PathLike],
                 embedding_paths: list[PathLike], bundle_paths: list[PathLike], records: dict[str, dict],
                 window_spec: WindowSpec, tissues: list[str], threads: int = 1) -> ModelScores:
    """Zero-shot scores and (where bundles are given) probabilities of every kept variant, per model.

    Bundles are matched to models by the model name in their sidecar, and checked against the
    model's weights checksum, the window spec and the feature width before use.
    """
    from caduceus_vep.evaluate import blas_threads

    variant_ids = pd.read_parquet(windows_path, columns=["variant_id"])["variant_id"].astype(str).to_numpy()
    scores = ModelScores(variant_ids=variant_ids, models=[s.name for s in specs], tissues=list(tissues))
    for path in zero_shot_paths:
        frame = pd.read_parquet(path)
        name = Path(path).stem
        aligned = frame.set_index("variant_id").reindex(variant_ids)
        # A model without an LM head (Enformer) has NaN LLRs throughout: check the ids, not the values.
        if len(frame) == len(variant_ids) and not pd.Index(variant_ids).isin(frame["variant_id"].astype(str)).all():
            raise ValueError(f"{path}: zero-shot scores do not match this dataset's windows")
        scores.zero_shot[name] = aligned[list(ZERO_SHOT_COLUMNS)].reset_index(drop=True)
    embeddings = {Path(p).stem: p for p in embedding_paths}
    for path in bundle_paths:
        bundle = load_bundle(path)
        name = bundle.model_name
        if name not in embeddings:
            raise ValueError(f"{path}: a bundle for model {name!r}, which is not among this dataset's models {sorted(embeddings)}")
        width = pq.ParquetFile(embeddings[name]).schema_arrow.field(FEATURE_COLUMNS[0]).type.list_size
        check_bundle(bundle, path, model=name, weights_sha256=(records.get(name) or {}).get("weights_sha256"),
                     window_spec=window_spec.to_dict(), feature_width=width)
        spec = next((s for s in specs if s.name == name), None)
        trained_context = bundle.sidecar["model"].get("context_length")
        if spec is not None and spec.context_length and trained_context and trained_context != spec.context_length:
            raise BundleError(f"{path} cannot score this dataset: it was trained on model {name!r} at a {trained_context} bp "
                              f"context, this run feeds it {spec.context_length} bp (models[].context_length)")
        with blas_threads(threads):
            scores.probabilities[name] = _probabilities(bundle, embeddings[name], tissues)
        scores.bucket_models[name] = bundle
        for bucket_name, m in bundle.models.items():
            scores.buckets.setdefault(bucket_name, _bucket_description(m.bucket))
        scores.bundles[name] = {"path": str(path), "sha256": sha256_file(path), "trained_on": bundle.sidecar.get("training_data"),
                                "model": bundle.sidecar["model"], "windows": bundle.sidecar["windows"]}
    return scores


def _own_bucket(distance: np.ndarray, bundle: Bundle) -> np.ndarray:
    """The bucket whose model applies to each variant (by TSS distance; '' when the distance is unknown)."""
    result = np.full(len(distance), "", dtype=object)
    series = pd.Series(distance)
    for name, model in bundle.models.items():
        result[((series >= 0) & model.bucket.mask(series)).to_numpy()] = name
    return result


def score_table(variants: pd.DataFrame, scores: ModelScores) -> pd.DataFrame:
    """One row per (variant, tissue) of the dataset: the user's id, the variant, and per model its scores.

    Variants that did not survive the windows stage are in the skipped table, not here.
    """
    position = pd.Series(np.arange(len(scores.variant_ids)), index=scores.variant_ids)
    kept = variants[variants["variant_id"].isin(position.index)].reset_index(drop=True)
    table = kept[["snp", "variant_id", "chrom", "pos", "ref", "alt", "tissue", "split", "label", "distance_to_nearest_TSS",
                  "source_line"]].rename(columns={"snp": "id", "source_line": "line"})
    row = position.reindex(table["variant_id"]).to_numpy()
    column = pd.Series(range(len(scores.tissues)), index=scores.tissues).reindex(table["tissue"]).fillna(len(scores.tissues))
    column = column.to_numpy().astype(np.int64)
    distance = table["distance_to_nearest_TSS"].to_numpy()
    for name in scores.models:
        if name in scores.zero_shot:
            zs = scores.zero_shot[name]
            for c in ZERO_SHOT_COLUMNS:
                table[f"{name}_{c}"] = zs[c].to_numpy()[row]
        if name in scores.probabilities:
            bundle = scores.bucket_models[name]
            own = _own_bucket(distance, bundle)
            table[f"{name}_bucket"] = own
            p = np.full(len(table), np.nan)
            for bucket_name, probs in scores.probabilities[name].items():
                values = probs[row, column]
                table[f"{name}_p_{bucket_key(bucket_name)}"] = values
                p = np.where(own == bucket_name, values, p)
            table[f"{name}_p"] = p
    return table


def combined_skips(paths: list[PathLike]) -> pd.DataFrame:
    """The variants and windows stages' skipped records, in input-line order, with the user's id."""
    frames = [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in paths]
    frame = pd.concat([f.reindex(columns=SKIPPED_COLUMNS, fill_value="") for f in frames], ignore_index=True)
    order = pd.to_numeric(frame["line"], errors="coerce")
    return frame.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def labelled_auroc(table: pd.DataFrame, models: list[str], buckets: dict[str, str], n_resamples: int, seed: int) -> pd.DataFrame:
    """AUROC/AUPRC per model, score and bucket (plus ``all``) where labels are present; else an empty table."""
    columns = ["model", "score", "bucket", "auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi", "n", "n_pos"]
    labelled = table[table["label"] >= 0]
    records = []
    for model in models:
        for score, sign in SCORE_SIGNS.items():
            column = f"{model}_{score}"
            if column not in labelled:
                continue
            # Per-bucket rows exist only for models with classifiers (they assign the bucket).
            per_bucket = list(buckets) if f"{model}_bucket" in labelled else []
            for bucket in ["all", *per_bucket]:
                part = labelled if bucket == "all" else labelled[labelled[f"{model}_bucket"] == bucket]
                part = part[part[column].notna()]
                y = part["label"].to_numpy().astype(np.int64)
                if len(np.unique(y)) < 2:
                    continue
                metrics = bootstrap_metrics(y, sign * part[column].to_numpy(), n_resamples=n_resamples, seed=seed)
                records.append({"model": model, "score": score, "bucket": bucket, **metrics, "n": len(y), "n_pos": int(y.sum())})
    return pd.DataFrame(records, columns=columns)


# ----------------------------------------------------------------------------- the scored VCF


def info_fields(scores: ModelScores) -> list[tuple[str, str, str, str, str]]:
    """(INFO id, Number, Type, Description, table column suffix) of every INFO field the scored VCF gets."""
    fields = []
    for m in scores.models:
        M = m.upper()
        if m in scores.probabilities:
            fields.append((f"CVEP_{M}_P", "A", "Float", f"caduceus-vep {m}: probability of being a causal eQTL (Platt-scaled RBF SVM "
                           "of the TSS-distance bucket the variant falls in; tissue-marginal unless the dataset's tissue was trained on)", "p"))
            for name, description in scores.buckets.items():
                fields.append((f"CVEP_{M}_P_{bucket_key(name)}", "A", "Float",
                               f"caduceus-vep {m}: probability of being causal from the {name} bucket model ({description})", f"p_{bucket_key(name)}"))
        if m in scores.zero_shot:
            fields += [
                (f"CVEP_{M}_LLR", "A", "Float", f"caduceus-vep {m}: zero-shot log p(alt) - log p(ref) at the SNP from the MLM head on the "
                 "unmasked ref context, forward/RC averaged (lower = more damaging)", "llr"),
                (f"CVEP_{M}_LLR_MASKED", "A", "Float", f"caduceus-vep {m}: the same LLR with the SNP token masked", "llr_masked"),
                (f"CVEP_{M}_L2", "A", "Float", f"caduceus-vep {m}: zero-shot L2 distance of RC-averaged pooled ref/alt embeddings", "l2"),
                (f"CVEP_{M}_COS", "A", "Float", f"caduceus-vep {m}: zero-shot cosine distance of RC-averaged pooled ref/alt embeddings", "cosine"),
            ]
    return fields


def _header_value(text: object) -> str:
    """A quoted VCF header value ('.' for none)."""
    if text is None:
        return '"."'
    return '"' + str(text).replace("\\", "/").replace('"', "'") + '"'


def _per_variant(table: pd.DataFrame, dataset_tissue: str) -> pd.DataFrame:
    """One row per variant for the VCF: the dataset tissue's row where present, else the first row."""
    if table["variant_id"].is_unique:
        return table
    preferred = table.assign(_rank=(table["tissue"] != dataset_tissue).astype(int)).sort_values(["_rank"], kind="stable")
    return preferred.drop_duplicates("variant_id").drop(columns="_rank")


def _open_source_vcf(source: Path, work: Path):
    """pysam handle on the source VCF; a plain-gzip (non-BGZF) file is decompressed to ``work`` first."""
    import pysam

    with open(source, "rb") as handle:
        head = handle.read(18)
    if head[:2] == b"\x1f\x8b" and not (head[3] & 4 and head[12:14] == b"BC"):
        with gzip.open(source, "rb") as src, open(work, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return pysam.VariantFile(str(work))
    return pysam.VariantFile(str(source))


def write_scored_vcf(source: PathLike, out_vcf: PathLike, out_tbi: PathLike, table: pd.DataFrame, scores: ModelScores,
                     fmt: str, *, records: dict[str, dict] | None = None, dataset_tissue: str = "NA") -> int:
    """The scored VCF (bgzipped, tabix-indexed, written with pysam); returns the number of records written.

    A VCF/BCF dataset keeps every input record (scores in INFO, Number=A, '.' for alleles not
    scored); a table dataset becomes a sites-only VCF of its kept variants. The header declares
    every INFO field and records each model's source, revision and weights checksum and each
    classifier bundle's checksum. Both files are written under temporary names and renamed.
    """
    import pysam

    from caduceus_vep.variants import detect_format, make_variant_id

    source, out_vcf, out_tbi = Path(source), Path(out_vcf), Path(out_tbi)
    fields = info_fields(scores)
    per_variant = _per_variant(table, dataset_tissue)
    columns = {}  # INFO id -> its table column
    for m in scores.models:
        for info_id, _, _, _, suffix in fields:
            if info_id.startswith(f"CVEP_{m.upper()}_") and f"{m}_{suffix}" in per_variant:
                columns[info_id] = f"{m}_{suffix}"
    values = _InfoMatrix(per_variant, columns)
    index = {v: i for i, v in enumerate(per_variant["variant_id"].to_numpy())}
    tmp_vcf = out_vcf.parent / f".{out_vcf.name}.tmp.vcf.gz"
    tmp_plain = out_vcf.parent / f".{out_vcf.name}.source.vcf"
    out_vcf.parent.mkdir(parents=True, exist_ok=True)
    is_vcf = (fmt == "vcf") or (fmt == "auto" and detect_format(source) == "vcf")
    n = 0
    try:
        if is_vcf:
            vcf_in = _open_source_vcf(source, tmp_plain)
            header = vcf_in.header.copy()
            if "END" not in header.info:
                # htslib stores a symbolic allele's END under a tag id the copied header would lack.
                header.info.add("END", 1, "Integer", "End position of the variant (reserved VCF field; undeclared in the input)")
        else:
            vcf_in = None
            header = pysam.VariantHeader()
            for chrom in pd.unique(per_variant["chrom"]):
                header.contigs.add(str(chrom))
        for info_id, number, kind, description, _ in fields:
            if info_id in header.info:
                header.info.remove_header(info_id)
            header.info.add(info_id, number, kind, description)
        for name, record in (records or {}).items():
            header.add_line(f"##caduceus_vep_model=<ID={name},Source={_header_value(record.get('source'))},"
                            f"Revision={_header_value(record.get('resolved_commit') or record.get('revision'))},"
                            f"WeightsSHA256={record.get('weights_sha256')}>")
        for name, info in scores.bundles.items():
            header.add_line(f"##caduceus_vep_classifiers=<ID={name},Bundle={_header_value(Path(info['path']).name)},SHA256={info['sha256']}>")
        with pysam.VariantFile(str(tmp_vcf), "wz", header=header) as vcf_out:
            if vcf_in is not None:
                with vcf_in:
                    for rec in vcf_in:
                        rec.translate(header)
                        rows = [index.get(make_variant_id(rec.chrom, rec.pos, (rec.ref or "").upper(), str(a).upper())) for a in (rec.alts or ())]
                        _set_info(rec, rows, values)
                        vcf_out.write(rec)
                        n += 1
            else:
                ordered = per_variant.assign(row_index=np.arange(len(per_variant))).sort_values(["chrom", "pos", "alt"], kind="stable")
                for r in ordered.itertuples(index=False):
                    rec = vcf_out.new_record(contig=str(r.chrom), start=int(r.pos) - 1, alleles=(str(r.ref), str(r.alt)),
                                             id=str(r.id) if r.id else str(r.variant_id))
                    _set_info(rec, [int(r.row_index)], values)
                    vcf_out.write(rec)
                    n += 1
        _tabix_sorted(tmp_vcf)
        os.replace(str(tmp_vcf) + ".tbi", out_tbi)
        kill_point("write")  # the nastiest moment: the index in place, the VCF not yet
        os.replace(tmp_vcf, out_vcf)
    finally:
        for leftover in (tmp_vcf, Path(str(tmp_vcf) + ".tbi"), tmp_plain):
            leftover.unlink(missing_ok=True)
    return n


class _InfoMatrix:
    """The scored VCF's INFO values as one [N, F] float64 matrix (rows in ``per_variant`` order).

    A record's values come out with one ``tolist()`` (Python floats) instead of F numpy-scalar reads
    and ``np.isnan`` calls: at 18 INFO fields those cost ~45 of the ~70 µs per record of the writer.
    """

    def __init__(self, per_variant: pd.DataFrame, columns: dict[str, str]) -> None:
        self.names = list(columns)
        # Filled column by column, so the table's columns are never held twice as separate arrays.
        self.matrix = np.empty((len(per_variant), len(columns)), np.float64)
        for j, column in enumerate(columns.values()):
            self.matrix[:, j] = per_variant[column].to_numpy(dtype=np.float64)


def _set_info(rec, rows: list[int | None], values: _InfoMatrix) -> None:
    """INFO values of a record's ALT alleles (``rows``: their per-variant rows; None = not scored).

    A field is written when any allele has a value; rounding and the NaN rule are the same for the
    one-allele fast path and the general one.
    """
    if len(rows) == 1:  # nearly every record: no generator per field
        if rows[0] is None:
            return
        for info_id, v in zip(values.names, values.matrix[rows[0]].tolist()):
            if v == v:  # not NaN
                rec.info[info_id] = (round(v, 6),)
        return
    per_allele = [None if r is None else values.matrix[r].tolist() for r in rows]
    for j, info_id in enumerate(values.names):
        scored = tuple(None if p is None or p[j] != p[j] else round(p[j], 6) for p in per_allele)
        if any(v is not None for v in scored):
            rec.info[info_id] = scored


def _tabix_sorted(path: Path) -> None:
    """Tabix-index a bgzipped VCF; an unsorted one is sorted (in memory) and rewritten first."""
    import pysam

    try:
        pysam.tabix_index(str(path), preset="vcf", force=True)
        return
    except OSError:
        pass
    with pysam.VariantFile(str(path)) as vcf:
        header = vcf.header.copy()
        order = {name: i for i, name in enumerate(header.contigs)}
        records = sorted(vcf, key=lambda r: (order.get(r.chrom, len(order)), r.pos))
        sorted_path = path.with_name(path.name + ".sorted.vcf.gz")
        with pysam.VariantFile(str(sorted_path), "wz", header=header) as out:
            for rec in records:
                out.write(rec)
    os.replace(sorted_path, path)
    pysam.tabix_index(str(path), preset="vcf", force=True)
