"""Zero-shot variant scores (no training): the LM log-likelihood ratio and embedding distances.

**LLR** (``ModelFamily.snp_llr``, ``caduceus_vep.model.registry``). For a variant with ref context
x (the SNP at string index L/2, its token t found by the paper script's rule) the forward LLR is
``log p(alt) - log p(ref)`` with p the model's distribution over its whole vocabulary for token t
given x: for MLMs (Caduceus, NT-v2) the LM head's softmax at t (for NT-v2 the ref and alt tokens are
the SNP's 6-mer with REF and with ALT); for the causal HyenaDNA the next-token distribution from
token t-1. Only the ref context goes through the model (one pass per strand). The RC LLR is the same
on the reverse complement rc(x) (the SNP's token found again there; complemented alleles). ``llr``
is their mean. For Caduceus-PS the RC-equivariant head makes the two equal up to float rounding
(``tests/test_zero_shot.py`` checks it), so its RC pass is skipped (llr_rc := llr_fwd), halving
the cost. Two flavours are computed for every variant: ``llr`` on the unmasked ref sequence, and
``llr_masked`` with the SNP token replaced by the mask token first (the GPN / TraitGym
convention; for a causal LM it equals ``llr``, the SNP never conditioning its own prediction).
Families without an LM head (Enformer) get NaN LLRs and only the distances.

**Distances.** From the embeddings parquet, with RC-averaged pooled vectors
r = (ref_fwd + ref_rc) / 2 and a = (alt_fwd + alt_rc) / 2: ``l2`` = ||a - r||_2 and
``cosine`` = 1 - cos(a, r).

**Sign convention** for AUROC (higher score = more likely causal): ``score_llr = -llr`` (an alt
allele the model finds unlikely is taken as more damaging), ``score_l2 = l2``,
``score_cosine = cosine``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from caduceus_vep.evaluate import SOUND_BUCKETS, Bucket
from caduceus_vep.feature_file import read_embeddings
from caduceus_vep.genome import Genome
from caduceus_vep.metrics import METRIC_COLUMNS, bootstrap_metrics
from caduceus_vep.windows import fetch_context

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["variant_id", "llr_fwd", "llr_rc", "llr", "llr_masked", "l2", "cosine"]
# Zero-shot "protocols" in the tables: name -> (column, sign making higher = more likely causal).
ZERO_SHOT_SCORES = {"zero_shot_llr": ("llr", -1.0), "zero_shot_llr_masked": ("llr_masked", -1.0), "zero_shot_l2": ("l2", 1.0),
                    "zero_shot_cosine": ("cosine", 1.0)}
AUROC_COLUMNS = ["model", "protocol", "bucket", *METRIC_COLUMNS, "n_test", "n_test_pos", "note"]


def llr_scores(windows: pd.DataFrame, genome: Genome, model, *, batch_size: int, autocast_dtype: str,
               rc_pass: bool | None = None, progress: Callable[[int], None] | None = None,
               context_length: int | None = None) -> pd.DataFrame:
    """variant_id, llr_fwd, llr_rc, llr (unmasked) and llr_masked for every row of a windows table.

    ``model`` is a loaded model of any family (``caduceus_vep.model.registry``; a bare module is
    wrapped with its family); its ``ModelFamily.snp_llr`` does the model-specific part. A family
    without a zero-shot head (``zero_shot is None``) gets NaN LLRs. ``rc_pass=None``: as the family
    says (skipped for RC-equivariant heads, i.e. Caduceus-PS). ``context_length``: the model's own
    context, cut around the SNP (default: the windows').
    """
    import torch

    from caduceus_vep.embed import autocast_context, centred_rows
    from caduceus_vep.model.registry import as_loaded

    loaded = as_loaded(model)
    family, module = loaded.family, loaded.module
    if family.zero_shot is None:
        nan = np.full(len(windows), np.nan)
        if progress is not None:
            progress(len(windows))
        return pd.DataFrame({"variant_id": windows["variant_id"].to_numpy(), "llr_fwd": nan, "llr_rc": nan, "llr": nan,
                             "llr_masked": nan})
    device = next(module.parameters()).device
    if rc_pass is None:
        rc_pass = family.llr_rc_pass(module)
    rows = centred_rows(windows, context_length)
    parts = []
    for start in range(0, len(rows), batch_size):
        batch = rows.iloc[start:start + batch_size]
        refs = [fetch_context(genome, r) for r in batch.itertuples()]
        with torch.inference_mode(), autocast_context(device, autocast_dtype):
            f, r = family.snp_llr(module, refs, list(batch.ref), list(batch.alt), masked=False, rc_pass=rc_pass)
            if family.zero_shot == "causal_lm":  # the SNP's own token never conditions its prediction
                mf, mr = f, r
            else:
                mf, mr = family.snp_llr(module, refs, list(batch.ref), list(batch.alt), masked=True, rc_pass=rc_pass)
        parts.append(torch.stack([f, r, mf, mr], dim=1).float().cpu().numpy())
        if progress is not None:
            progress(len(batch))
    values = np.concatenate(parts) if parts else np.zeros((0, 4))
    return pd.DataFrame({"variant_id": windows["variant_id"].to_numpy(), "llr_fwd": values[:, 0], "llr_rc": values[:, 1],
                         "llr": values[:, :2].mean(axis=1), "llr_masked": values[:, 2:].mean(axis=1)})


def embedding_distances(variant_ids: pd.Series, matrices: dict[str, np.ndarray]) -> pd.DataFrame:
    """L2 and cosine distance between the RC-averaged pooled ref and alt vectors, per variant."""
    ref = (matrices["ref_fwd"].astype(np.float64) + matrices["ref_rc"]) / 2
    alt = (matrices["alt_fwd"].astype(np.float64) + matrices["alt_rc"]) / 2
    l2 = np.linalg.norm(alt - ref, axis=1)
    norms = np.linalg.norm(alt, axis=1) * np.linalg.norm(ref, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = 1.0 - np.where(norms > 0, (alt * ref).sum(axis=1) / norms, np.nan)
    return pd.DataFrame({"variant_id": variant_ids.to_numpy(), "l2": l2, "cosine": cosine})


def score_variants(windows_path: str | os.PathLike[str], fasta: str | os.PathLike[str], embeddings_path: str | os.PathLike[str],
                   model_spec: dict, settings: dict, threads: int = 1) -> tuple[pd.DataFrame, dict]:
    """All zero-shot scores (``SCORE_COLUMNS``) of every kept variant for one model, and a summary.

    ``model_spec['path']`` is a local checkpoint folder (the fetch_model rule's record) or a Hub id;
    the model is loaded once. Progress goes to the log at most every 15 s.
    """
    # torch loads here, not at import: the zero-shot AUROC jobs import this module and never need it.
    import torch

    from caduceus_vep.embed import resolve_device
    from caduceus_vep.model.registry import load_model
    from caduceus_vep.shards import progress_bar

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # same reason as in the embedding driver: denormals are slow on x86
    device = resolve_device(settings["device"])
    windows = pd.read_parquet(windows_path)
    context_length = model_spec.get("context_length")
    loaded = load_model(model_spec, device=str(device), context_length=context_length)
    started = time.perf_counter()
    bar = progress_bar(len(windows), f"{model_spec['name']} zero-shot")
    with Genome(fasta) as genome:
        llr = llr_scores(windows, genome, loaded, batch_size=int(model_spec.get("batch_size") or settings["batch_size"]),
                         autocast_dtype=settings["autocast_dtype"], progress=bar.update, context_length=context_length)
    bar.close()
    seconds = time.perf_counter() - started
    ids, matrices, _ = read_embeddings(embeddings_path)
    distances = embedding_distances(ids["variant_id"].astype(str), matrices)
    # astype(str): an empty dataset's id columns would otherwise be float and refuse to merge.
    scores = llr.astype({"variant_id": str}).merge(distances.astype({"variant_id": str}), on="variant_id", how="left")
    family = loaded.family
    summary = {"model": {"name": model_spec["name"], **loaded.provenance}, "device": str(device),
               "architecture": family.name, "zero_shot": family.zero_shot, "context_length": context_length,
               "n_variants": len(windows), "llr_seconds": round(seconds, 3),
               "rc_pass": bool(family.zero_shot) and family.llr_rc_pass(loaded.module)}
    return scores[SCORE_COLUMNS], summary


def zero_shot_auroc(rows: pd.DataFrame, scores: pd.DataFrame, *, model: str, buckets: tuple[Bucket, ...] = SOUND_BUCKETS,
                    bootstrap: int = 1000, seed: int = 1) -> pd.DataFrame:
    """Per bucket and zero-shot score: AUROC/AUPRC with bootstrap CIs on the test rows.

    ``rows`` are (variant, tissue) rows as in the SVM protocols, so a variant tested in k tissues
    counts k times, exactly as in the SVM rows beside it.
    """
    test = rows[rows["split"] == "test"].merge(scores, on="variant_id", how="inner")
    records = []
    for protocol, (column, sign) in ZERO_SHOT_SCORES.items():
        for bucket in buckets:
            part = test[bucket.mask(test["distance_to_nearest_TSS"]).to_numpy()]
            no_score = bool(len(part)) and part[column].isna().all()  # e.g. the LLR of a model without an LM head
            part = part[part[column].notna()]
            y = part["label"].to_numpy().astype(np.int64)
            metrics = bootstrap_metrics(y, sign * part[column].to_numpy(), n_resamples=bootstrap, seed=seed)
            note = ("the model has no zero-shot head for this score" if no_score else
                    "" if len(np.unique(y)) == 2 else "test bucket has one class or no rows; AUROC undefined")
            records.append({"model": model, "protocol": protocol, "bucket": bucket.name, **metrics,
                            "n_test": len(y), "n_test_pos": int(y.sum()), "note": note})
    return pd.DataFrame(records, columns=AUROC_COLUMNS)
