"""Reports: the paper-shaped VEP table (TSV and Markdown), a Fig. 4-style bar chart, provenance."""

from __future__ import annotations

import io
import math
import os

import pandas as pd

from caduceus_vep.atomic import atomic_path, write_text_atomic


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
    """Tab-separated, fixed float format so two runs give byte-identical files."""
    buffer = io.StringIO()
    frame.to_csv(buffer, sep="\t", index=False, float_format="%.6f", lineterminator="\n")
    write_text_atomic(path, buffer.getvalue())


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
