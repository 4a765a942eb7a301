"""Reports: the paper-shaped VEP table (TSV and Markdown), a Fig. 4-style bar chart, provenance."""

from __future__ import annotations

import math
import os

import pandas as pd

from caduceus_vep.atomic import atomic_path


def format_cell(mean: float, sd: float, c: float) -> str:
    """``0.675 ± 0.010 (C=1)``; ``n/a`` where the bucket could not be scored."""
    if mean is None or math.isnan(mean):
        return "n/a"
    c_text = f"{c:g}" if not math.isnan(c) else "?"
    return f"{mean:.3f} ± {sd:.3f} (C={c_text})"


def vep_table(summary: pd.DataFrame, model_labels: dict[str, str], bucket_order: list[str]) -> pd.DataFrame:
    """Wide table: one row per (model, protocol), per bucket the mean AUROC, sd and chosen C."""
    rows = []
    for (model, protocol), group in summary.groupby(["model", "protocol"], sort=False):
        by_bucket = group.set_index("bucket")
        row: dict[str, object] = {"model": model_labels.get(model, model), "protocol": protocol}
        for bucket in bucket_order:
            if bucket in by_bucket.index:
                r = by_bucket.loc[bucket]
                row[f"{bucket} auroc_mean"] = round(float(r["auroc_mean"]), 6)
                row[f"{bucket} auroc_sd"] = round(float(r["auroc_sd"]), 6)
                row[f"{bucket} C"] = r["C"]
            else:
                row[f"{bucket} auroc_mean"] = row[f"{bucket} auroc_sd"] = row[f"{bucket} C"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(wide: pd.DataFrame, bucket_order: list[str], title: str) -> str:
    """The same table as Markdown, one ``mean ± sd (C=…)`` cell per bucket."""
    header = "| model | protocol | " + " | ".join(bucket_order) + " |"
    rule = "|---|---|" + "---|" * len(bucket_order)
    lines = [f"# {title}", "", header, rule]
    for _, r in wide.iterrows():
        cells = [format_cell(r[f"{b} auroc_mean"], r[f"{b} auroc_sd"], r[f"{b} C"]) for b in bucket_order]
        lines.append(f"| {r['model']} | {r['protocol']} | " + " | ".join(cells) + " |")
    lines += ["", "AUROC (paper protocol: from hard predict() labels, C chosen by mean test AUROC over seeds; "
              "mean ± standard deviation over seeds)."]
    return "\n".join(lines) + "\n"


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Tab-separated, fixed float format so two runs give byte-identical files; streamed in row chunks
    into a temporary file that is renamed (a million-row score table never exists as one string)."""
    with atomic_path(path, suffix=".tsv") as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6f", lineterminator="\n", chunksize=50_000)


def bar_chart(wide: pd.DataFrame, bucket_order: list[str], path: str | os.PathLike[str], title: str) -> None:
    """Grouped bars per bucket, one bar per model, error bars = sd over seeds (as the paper's Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    n = max(len(wide), 1)
    width = 0.8 / n
    x = np.arange(len(bucket_order))
    for i, (_, r) in enumerate(wide.iterrows()):
        means = [r[f"{b} auroc_mean"] for b in bucket_order]
        sds = [r[f"{b} auroc_sd"] for b in bucket_order]
        ax.bar(x + (i - (n - 1) / 2) * width, means, width, yerr=sds, capsize=3, label=f"{r['model']} ({r['protocol']})")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, bucket_order)
    ax.set_xlabel("distance to nearest TSS")
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


# --- sound protocol, zero-shot scores, published values, ROC curves -------------------------

SOUND_METRICS = ["auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi"]


def sound_table(results: pd.DataFrame, model_labels: dict[str, str], bucket_order: list[str]) -> pd.DataFrame:
    """Wide table for sound-protocol and zero-shot rows: per bucket AUROC/AUPRC with 95 % CI, C, gamma, n."""
    rows = []
    for (model, protocol), group in results.groupby(["model", "protocol"], sort=False):
        by_bucket = group.set_index("bucket")
        row: dict[str, object] = {"model": model_labels.get(model, model), "protocol": protocol}
        for bucket in bucket_order:
            r = by_bucket.loc[bucket] if bucket in by_bucket.index else pd.Series(dtype=object)
            for metric in SOUND_METRICS:
                row[f"{bucket} {metric}"] = round(float(r.get(metric, float("nan"))), 6)
            row[f"{bucket} C"] = float(r.get("C", float("nan")))
            row[f"{bucket} gamma_factor"] = float(r.get("gamma_factor", float("nan")))
            row[f"{bucket} n_test"] = r.get("n_test", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def format_ci(value: float, lo: float, hi: float, extra: str = "") -> str:
    """``0.712 [0.650, 0.770]`` (+ `` (C=1, γ=1×scale)``); ``n/a`` where undefined."""
    if value is None or math.isnan(value):
        return "n/a"
    ci = f" [{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else ""
    return f"{value:.3f}{ci}{extra}"


def sound_markdown(wide: pd.DataFrame, bucket_order: list[str], metric: str) -> str:
    """Markdown rows ``value [95 % CI]`` for one metric (auroc or auprc) of the sound/zero-shot table."""
    lines = ["| model | protocol | " + " | ".join(bucket_order) + " |", "|---|---|" + "---|" * len(bucket_order)]
    for _, r in wide.iterrows():
        cells = []
        for b in bucket_order:
            C, g = r[f"{b} C"], r[f"{b} gamma_factor"]
            extra = f" (C={C:g}, γ={g:g}×scale)" if metric == "auroc" and not math.isnan(C) else ""
            cells.append(format_ci(r[f"{b} {metric}"], r[f"{b} {metric}_lo"], r[f"{b} {metric}_hi"], extra))
        lines.append(f"| {r['model']} | {r['protocol']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_reference_values(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The bundled published values (``resources/reference_values.tsv``), all approximate."""
    return pd.read_csv(path, sep="\t", dtype={"bucket": str, "auroc": float})


COMPARISON_COLUMNS = ["bucket", "reference_model", "reference_protocol", "reference_auroc", "approximate", "source", "our_model",
                      "our_protocol", "our_auroc_mean", "our_auroc_sd"]


def reference_comparison(paper_wide: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Each published value beside our paper-protocol value for the same bucket (NaN where none)."""
    records = []
    # Without paper-protocol rows (evaluate.protocols: [sound]) the published values are still listed.
    ours_rows = list(paper_wide.iterrows()) or [(None, pd.Series({"model": "", "protocol": ""}))]
    for _, ref in reference.iterrows():
        for _, ours in ours_rows:
            column = f"{ref['bucket']} auroc_mean"
            records.append({"bucket": ref["bucket"], "reference_model": ref["model"], "reference_protocol": ref["protocol"],
                            "reference_auroc": ref["auroc"], "approximate": ref["approximate"], "source": ref["source"],
                            "our_model": ours["model"], "our_protocol": ours["protocol"],
                            "our_auroc_mean": ours[column] if column in ours.index and ref["protocol"] == "paper" else float("nan"),
                            "our_auroc_sd": ours[column.replace("mean", "sd")] if column in ours.index and ref["protocol"] == "paper" else float("nan")})
    return pd.DataFrame(records, columns=COMPARISON_COLUMNS)


def reference_markdown(comparison: pd.DataFrame) -> str:
    """Published values (approximate) and ours, one line per published value."""
    lines = ["| bucket | published (approximate) | value | source | ours (paper protocol) |", "|---|---|---|---|---|"]
    for (bucket, model, value, source), group in comparison.groupby(["bucket", "reference_model", "reference_auroc", "source"], sort=False):
        ours = "; ".join(f"{r.our_model}: {r.our_auroc_mean:.3f} ± {r.our_auroc_sd:.3f}" for r in group.itertuples()
                         if not math.isnan(r.our_auroc_mean)) or "not comparable (different protocol)"
        lines.append(f"| {bucket} | {model} | ~{value:.3f} | {source} | {ours} |")
    return "\n".join(lines) + "\n"


def full_markdown(title: str, paper_wide: pd.DataFrame, paper_buckets: list[str], sound_wide: pd.DataFrame,
                  sound_buckets: list[str], comparison: pd.DataFrame, sound_settings: dict) -> str:
    """The report's Markdown: paper table first (the existing layout), then sound/zero-shot, then published values."""
    text = markdown_table(paper_wide, paper_buckets, title)
    text += ("\n## Sound protocol and zero-shot scores (AUROC, 95 % bootstrap CI)\n\n"
             "Half-open buckets [0, 30 kb), [30 kb, 100 kb), [100 kb, ∞); scores from `decision_function`; "
             f"C and γ chosen by {sound_settings.get('cv_folds')}-fold chromosome-grouped CV on the training split; "
             f"at most {sound_settings.get('max_train_rows')} training rows per bucket; "
             f"{sound_settings.get('bootstrap')} bootstrap resamples of the test rows. Zero-shot rows need no training: "
             "score = -LLR (MLM log-likelihood ratio), or the L2 / cosine distance of the pooled ref/alt embeddings.\n\n")
    text += sound_markdown(sound_wide, sound_buckets, "auroc") if len(sound_wide) else "(no sound or zero-shot results)\n"
    if len(sound_wide):
        text += "\n### AUPRC (95 % bootstrap CI)\n\n" + sound_markdown(sound_wide, sound_buckets, "auprc")
    text += "\n## Published values (approximate, from the protocol reference section 5)\n\n" + reference_markdown(comparison)
    return text


def roc_figure(test_scores: pd.DataFrame, model_labels: dict[str, str], bucket_order: list[str],
               path: str | os.PathLike[str], title: str) -> None:
    """ROC curves of the sound protocol's decision scores, one panel per bucket, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from caduceus_vep.metrics import auroc

    fig, axes = plt.subplots(1, max(len(bucket_order), 1), figsize=(4 * max(len(bucket_order), 1), 4), dpi=110, squeeze=False)
    for ax, bucket in zip(axes[0], bucket_order):
        part = test_scores[test_scores["bucket"] == bucket]
        for model, group in part.groupby("model", sort=False):
            y, s = group["label"].to_numpy(), group["score"].to_numpy()
            if len(set(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{model_labels.get(model, model)} ({auroc(y, s):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(bucket)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
