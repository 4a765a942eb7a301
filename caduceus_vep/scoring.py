"""Score users' variants with saved sound-protocol classifiers and zero-shot scores; write TSV + VCF.

A classifier file (``<model>.sound_models.joblib``) holds one fitted StandardScaler + RBF SVC per
TSS-distance bucket with its Platt coefficients; its JSON sidecar records the model, the window
spec, the feature layout, training-data checksums and the sklearn version, so a file can be used
(and audited) without the run that made it.

Probability of being causal: Platt scaling, p = 1 / (1 + exp(-(a·s + b))), s = the SVM decision
score and (a, b) a logistic regression fitted on the *out-of-fold* decision scores of the chosen
(C, gamma) in the grouped cross-validation (so not on scores of rows the SVM was fitted on).
A tissue the classifier never saw (a VCF carries one tissue, ``NA`` by default) is handled by
averaging the probability over all training tissues (the tissue-marginal probability).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn

from caduceus_vep.atomic import atomic_path, write_text_atomic
from caduceus_vep.evaluate import variant_features
from caduceus_vep.metrics import bootstrap_metrics
from caduceus_vep.sound import SoundResult, sound_design

PathLike = str | os.PathLike[str]
FORMAT_VERSION = 1


def save_classifiers(result: SoundResult, path: PathLike, meta: dict) -> dict:
    """Write the fitted bucket models (joblib) and a JSON sidecar ``<path>.json``; returns the sidecar."""
    sidecar = {
        "format_version": FORMAT_VERSION,
        **meta,
        "sklearn_version": sklearn.__version__,
        "feature_layout": {"embedding": f"concat(ref_{result.feature_kind}, alt_{result.feature_kind})",
                           "feature_kind": result.feature_kind, "tissue_onehot": result.tissues},
        "buckets": [{"name": name, "low": m.bucket.low, "high": m.bucket.high, "closed_high": m.bucket.closed_high,
                     "C": m.C, "gamma_factor": m.gamma_factor, "platt": list(m.platt), "train_sha256": m.train_sha256}
                    for name, m in result.models.items()],
    }
    bundle = {"format_version": FORMAT_VERSION, "models": result.models, "tissues": result.tissues,
              "feature_kind": result.feature_kind, "sidecar": sidecar}
    with atomic_path(path, suffix=".joblib") as tmp:
        joblib.dump(bundle, tmp)
    write_text_atomic(str(path) + ".json", json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n")
    return sidecar


def load_classifiers(path: PathLike) -> dict:
    """Load a classifier bundle; refuses another sklearn version (pickled SVMs are not portable)."""
    bundle = joblib.load(path)
    saved = bundle["sidecar"]["sklearn_version"]
    if saved != sklearn.__version__:
        raise RuntimeError(f"{path} was saved with scikit-learn {saved}; this environment has {sklearn.__version__}. "
                           "Re-run the evaluate_sound rule to refit it.")
    return bundle


def bucket_key(name: str) -> str:
    """A bucket name as part of a VCF INFO key: ``0-30kb`` -> ``0_30kb``, ``>100kb`` -> ``gt100kb``."""
    return re.sub(r"[^0-9A-Za-z]", "_", name.replace(">", "gt").replace("<", "lt"))


def predict(bundle: dict, matrices: dict[str, np.ndarray], tissue: str) -> dict[str, np.ndarray]:
    """Probability of being causal from every bucket model, per variant: {bucket name: [N]}."""
    features = variant_features(matrices, bundle["feature_kind"])
    tissues = bundle["tissues"] if tissue not in bundle["tissues"] else [tissue]
    out = {}
    for name, model in bundle["models"].items():
        probs = [model.probability(model.pipeline.decision_function(
            sound_design(features, pd.Series([t] * len(features)), bundle["tissues"]))) for t in tissues]
        out[name] = np.mean(probs, axis=0) if probs else np.zeros(0)
    return out


def own_bucket(distance: pd.Series, bundle: dict) -> pd.Series:
    """The bucket whose model applies to each variant (by TSS distance; '' when the distance is unknown)."""
    result = pd.Series([""] * len(distance), index=distance.index, dtype=object)
    for name, model in bundle["models"].items():
        result[(distance >= 0) & model.bucket.mask(distance)] = name
    return result


def score_table(variants: pd.DataFrame, per_model: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per input SNV: the user's id and alleles, label/distance, and per model its scores.

    ``per_model[name]`` is keyed by variant_id with columns p, p_<bucket>, llr, l2, cosine.
    """
    table = variants[["snp", "chrom", "pos", "ref", "alt", "variant_id", "source_line", "label",
                      "distance_to_nearest_TSS"]].rename(columns={"snp": "id", "source_line": "record"})
    for name, frame in per_model.items():
        table = table.merge(frame.rename(columns={c: f"{name}_{c}" for c in frame.columns if c != "variant_id"}),
                            on="variant_id", how="left")
    return table


def labelled_auroc(table: pd.DataFrame, models: list[str], buckets: list[str], n_resamples: int, seed: int) -> pd.DataFrame:
    """AUROC/AUPRC per model, score and bucket (plus ``all``) where labels are present; else an empty table."""
    columns = ["model", "score", "bucket", "auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi", "n", "n_pos"]
    labelled = table[(table["label"] >= 0)]
    records = []
    for model in models:
        scored = labelled[labelled[f"{model}_llr"].notna()]
        for score, sign in (("p", 1.0), ("llr", -1.0), ("l2", 1.0), ("cosine", 1.0)):
            for bucket in ["all", *buckets]:
                part = scored if bucket == "all" else scored[scored[f"{model}_bucket"] == bucket]
                part = part[part[f"{model}_{score}"].notna()]
                y = part["label"].to_numpy().astype(np.int64)
                if len(np.unique(y)) < 2:
                    continue
                metrics = bootstrap_metrics(y, sign * part[f"{model}_{score}"].to_numpy(), n_resamples=n_resamples, seed=seed)
                records.append({"model": model, "score": score, "bucket": bucket, **metrics, "n": len(y), "n_pos": int(y.sum())})
    return pd.DataFrame(records, columns=columns)


def info_fields(models: list[str], buckets: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(id, Number, Type, Description) of every INFO field the scored VCF gets."""
    fields = []
    for m in models:
        M = m.upper()
        fields.append((f"CVEP_{M}_P", "A", "Float", f"caduceus-vep {m}: probability of being a causal eQTL (Platt-scaled RBF SVM of the TSS-distance bucket the variant falls in; sound protocol)"))
        for name, description in buckets.items():
            fields.append((f"CVEP_{M}_P_{bucket_key(name)}", "A", "Float", f"caduceus-vep {m}: probability of being causal from the {name} bucket model ({description})"))
        fields.append((f"CVEP_{M}_LLR", "A", "Float", f"caduceus-vep {m}: zero-shot log p(alt) - log p(ref) at the SNP from the MLM head, forward/RC averaged (lower = more damaging)"))
        fields.append((f"CVEP_{M}_L2", "A", "Float", f"caduceus-vep {m}: zero-shot L2 distance of RC-averaged pooled ref/alt embeddings"))
        fields.append((f"CVEP_{M}_COS", "A", "Float", f"caduceus-vep {m}: zero-shot cosine distance of RC-averaged pooled ref/alt embeddings"))
    return fields


def write_scored_vcf(source: PathLike, dest: PathLike, table: pd.DataFrame, models: list[str], buckets: dict[str, str]) -> int:
    """Copy ``source`` to ``dest`` with the scores in INFO (Number=A; '.' for alleles not scored).

    Alleles are matched by variant id (``chrom:pos:REF:ALT``, as the variants stage builds it), so
    the match does not depend on how records were numbered. Returns the number of alleles scored.
    """
    import pysam

    from caduceus_vep.variants import make_variant_id

    fields = info_fields(models, buckets)
    by_key = {str(r.variant_id): r for r in table.drop_duplicates("variant_id").itertuples(index=False)}
    columns = []
    for m in models:
        columns += [(f"CVEP_{m.upper()}_P", f"{m}_p")]
        columns += [(f"CVEP_{m.upper()}_P_{bucket_key(b)}", f"{m}_p_{bucket_key(b)}") for b in buckets]
        columns += [(f"CVEP_{m.upper()}_LLR", f"{m}_llr"), (f"CVEP_{m.upper()}_L2", f"{m}_l2"), (f"CVEP_{m.upper()}_COS", f"{m}_cosine")]
    n_scored = 0
    with pysam.VariantFile(str(source)) as vcf_in:
        records = list(vcf_in)
        header = vcf_in.header.copy()
        if "END" not in header.info:
            # htslib stores a symbolic allele's END under a tag id the copied header would lack;
            # declaring the reserved END field (VCF 4.2 spec) makes the records writable.
            header.info.add("END", 1, "Integer", "End position of the variant (reserved VCF field; undeclared in the input)")
        for field_id, number, kind, description in fields:
            header.info.add(field_id, number, kind, description)
        with atomic_path(dest, suffix=".vcf") as tmp, pysam.VariantFile(str(tmp), "w", header=header) as vcf_out:
            for rec in records:
                rec.translate(header)
                rows = [by_key.get(make_variant_id(rec.chrom, rec.pos, rec.ref.upper(), str(a).upper())) for a in (rec.alts or ())]
                n_scored += sum(r is not None and not _missing(getattr(r, f"{models[0]}_llr")) for r in rows)
                for info_id, column in columns:
                    values = tuple(None if r is None or _missing(getattr(r, column)) else round(float(getattr(r, column)), 6) for r in rows)
                    if rows and any(v is not None for v in values):
                        rec.info[info_id] = values
                vcf_out.write(rec)
    return n_scored


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def read_sidecar(path: PathLike) -> dict:
    """The JSON sidecar of a classifier file."""
    return json.loads(Path(str(path) + ".json").read_text())
