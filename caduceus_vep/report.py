"""Reports: the paper-shaped VEP table (TSV and Markdown), a Fig. 4-style bar chart, provenance.

Rows follow the paper's Fig. 4 order (Enformer, NT-v2 500M, HyenaDNA, Caduceus w/o Equiv.,
Caduceus-Ph, Caduceus-PS) where a row's name or label is recognisable (``paper_row_kind``), or an
explicit ``evaluate.row_order``; other rows follow in config order.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import pandas as pd

from caduceus_vep.atomic import atomic_path

# The six rows of the paper's Fig. 4, in its order.
PAPER_ROW_ORDER = ("enformer", "ntv2", "hyenadna", "caduceus_wo_equiv", "caduceus_ph", "caduceus_ps")
PAPER_ROW_LABELS = {"enformer": "Enformer", "ntv2": "NT-v2 (500M)", "hyenadna": "HyenaDNA",
                    "caduceus_wo_equiv": "Caduceus w/o Equiv.", "caduceus_ph": "Caduceus-Ph", "caduceus_ps": "Caduceus-PS"}
# The paper's chosen C per row and bucket (its Table 7, buckets 0-30 kb / 30-100 kb / >100 kb;
# protocol reference section 4). The paper gives no AUROC numbers (Fig. 4 is a bar chart only).
PAPER_BUCKETS = ("0-30kb", "30-100kb", ">100kb")
PAPER_CHOSEN_C = {"caduceus_ps": (1, 1, 5), "caduceus_ph": (1, 5, 10), "caduceus_wo_equiv": (1, 1, 10),
                  "hyenadna": (1, 1, 5), "ntv2": (1, 1, 10), "enformer": (1, 1, 5)}


def paper_row_kind(name: str, label: str = "") -> str | None:
    """Which of the paper's Fig. 4 rows a result row is, from its name and label; None if none.

    E.g. ``caduceus_ps`` / "Caduceus-PS (tiny, untrained demo)" -> caduceus_ps, "Caduceus w/o Equiv."
    -> caduceus_wo_equiv, "NT-v2 500M" / "nucleotide_transformer" -> ntv2.
    """
    text = f"{name} {label}".lower()
    tokens = set(re.split(r"[^a-z0-9]+", text))
    if "enformer" in text:
        return "enformer"
    if "hyena" in text:
        return "hyenadna"
    if "nucleotide" in text or tokens & {"ntv2", "nt"} or re.search(r"\bnt[-_ ]?v2\b", text):
        return "ntv2"
    if "caduceus" not in text:
        return None
    if re.search(r"w/o|\bwo[-_ ]?equiv|without|no[-_ ]?equiv|noequiv", text):
        return "caduceus_wo_equiv"
    if "ph" in tokens:
        return "caduceus_ph"
    if "ps" in tokens:
        return "caduceus_ps"
    return None


def row_rank(rows: Sequence[tuple[str, str]], explicit: Sequence[str] | None = None) -> dict[str, int]:
    """Display rank of each (name, label) row: ``explicit`` names first (in that order), then the
    paper's Fig. 4 order for recognisable rows, then the rest in the given (config) order."""
    explicit = list(explicit or [])
    def key(item: tuple[int, tuple[str, str]]) -> tuple[int, int, int]:
        i, (name, label) = item
        if name in explicit:
            return (0, explicit.index(name), i)
        kind = paper_row_kind(name, label)
        return (1, PAPER_ROW_ORDER.index(kind), i) if kind else (2, 0, i)
    ordered = sorted(enumerate(rows), key=key)
    return {name: rank for rank, (_, (name, _)) in enumerate(ordered)}


def order_rows(frame: pd.DataFrame, rank: dict[str, int]) -> pd.DataFrame:
    """``frame`` (a ``model`` column of row names) sorted by ``rank``, protocols kept in first-seen order."""
    if frame.empty or "model" not in frame.columns:
        return frame
    protocol_first = {p: i for i, p in enumerate(pd.unique(frame["protocol"]))} if "protocol" in frame.columns else {}
    keys = pd.DataFrame({"p": frame["protocol"].map(protocol_first) if protocol_first else 0,
                         "r": frame["model"].map(lambda m: rank.get(m, len(rank)))}, index=frame.index)
    return frame.loc[keys.sort_values(["p", "r"], kind="stable").index].reset_index(drop=True)


def format_cell(mean: float, sd: float, c: float) -> str:
    """``0.675 ± 0.010 (C=1)``; ``n/a`` where the bucket could not be scored; no ``±`` for one seed."""
    if mean is None or math.isnan(mean):
        return "n/a"
    c_text = f"{c:g}" if not math.isnan(c) else "?"
    spread = f" ± {sd:.3f}" if sd is not None and not math.isnan(sd) else ""
    return f"{mean:.3f}{spread} (C={c_text})"


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
              "mean ± sample standard deviation over seeds, ddof=1)."]
    return "\n".join(lines) + "\n"


def write_tsv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Tab-separated, fixed float format so two runs give byte-identical files; streamed in row chunks
    into a temporary file that is renamed (a million-row score table never exists as one string)."""
    with atomic_path(path, suffix=".tsv") as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6f", lineterminator="\n", chunksize=50_000)


def bar_chart(wide: pd.DataFrame, bucket_order: list[str], path: str | os.PathLike[str], title: str,
              sound_wide: pd.DataFrame | None = None) -> None:
    """Fig. 4-style grouped bars: per bucket one bar per row (paper protocol, error bars = sample sd over
    seeds) and, where ``sound_wide`` has the row, a hatched bar beside it (sound AUROC, 95 % bootstrap CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    sound = {}
    if sound_wide is not None and len(sound_wide):
        sound = {r["model"]: r for _, r in sound_wide[sound_wide["protocol"] == "sound"].iterrows()}
    n = max(len(wide), 1)
    pair = 2 if sound else 1
    fig, ax = plt.subplots(figsize=(8 + 0.6 * n, 4.2), dpi=120)
    width = 0.8 / (n * pair)
    x = np.arange(len(bucket_order))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for i, (_, r) in enumerate(wide.iterrows()):
        colour = colours[i % len(colours)]
        base = x + (i * pair - (n * pair - 1) / 2) * width
        means = [r[f"{b} auroc_mean"] for b in bucket_order]
        sds = [0.0 if math.isnan(r[f"{b} auroc_sd"]) else r[f"{b} auroc_sd"] for b in bucket_order]
        ax.bar(base, means, width, yerr=sds, capsize=2, color=colour)
        handles.append(Patch(color=colour, label=str(r["model"])))
        if r["model"] in sound:
            s_row = sound[r["model"]]
            value = np.array([s_row.get(f"{b} auroc", np.nan) for b in bucket_order], dtype=float)
            lo = np.array([s_row.get(f"{b} auroc_lo", np.nan) for b in bucket_order], dtype=float)
            hi = np.array([s_row.get(f"{b} auroc_hi", np.nan) for b in bucket_order], dtype=float)
            err = np.nan_to_num(np.vstack([value - lo, hi - value]), nan=0.0).clip(min=0.0)
            ax.bar(base + width, value, width, yerr=err, capsize=2, color=colour, alpha=0.45, hatch="//", edgecolor=colour)
    if sound:
        handles += [Patch(facecolor="grey", label="paper protocol (± sd over seeds)"),
                    Patch(facecolor="grey", alpha=0.45, hatch="//", label="sound protocol (95 % CI)")]
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, bucket_order)
    ax.set_xlabel("distance to nearest TSS")
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(title, fontsize=9)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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


FIG4_COLUMNS = ["row", "label", "paper_row", "bucket", "paper_auroc_mean", "paper_auroc_sd", "paper_C", "paper_n_seeds",
                "sound_auroc", "sound_auroc_lo", "sound_auroc_hi", "published_auroc", "published_C"]


def fig4_comparison(summary: pd.DataFrame, sound_results: pd.DataFrame, rows: Sequence[tuple[str, str]],
                    bucket_order: list[str], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One line per (row, bucket), rows in the given order: our paper-protocol mean, sd and C, our
    sound AUROC with its 95 % CI, and the published AUROC and C of the paper's row of that kind.

    ``summary`` and ``sound_results`` carry row names in ``model``. The published C is the paper's
    Table 7 (``PAPER_CHOSEN_C``, for the paper's bucket names); a published AUROC comes only from a
    ``reference`` line with protocol ``paper`` whose model is recognised as the same kind of row
    (none in the bundled file: the paper gives a bar chart only), else NaN ("n/a").
    """
    nan = float("nan")
    paper = summary.set_index(["model", "bucket"]) if len(summary) else None
    sound = (sound_results[sound_results["protocol"] == "sound"].set_index(["model", "bucket"])
             if len(sound_results) and "protocol" in sound_results.columns else None)
    published: dict[tuple[str, str], float] = {}
    for _, ref in (reference if reference is not None else pd.DataFrame()).iterrows():
        kind = paper_row_kind(str(ref["model"]))
        if kind and ref["protocol"] == "paper":
            published[(kind, str(ref["bucket"]))] = float(ref["auroc"])
    records = []
    for name, label in rows:
        kind = paper_row_kind(name, label)
        for bucket in bucket_order:
            p = paper.loc[(name, bucket)] if paper is not None and (name, bucket) in paper.index else {}
            q = sound.loc[(name, bucket)] if sound is not None and (name, bucket) in sound.index else {}
            chosen = PAPER_CHOSEN_C.get(kind) if kind else None
            records.append({
                "row": name, "label": label, "paper_row": PAPER_ROW_LABELS.get(kind, "") if kind else "", "bucket": bucket,
                "paper_auroc_mean": float(p.get("auroc_mean", nan)), "paper_auroc_sd": float(p.get("auroc_sd", nan)),
                "paper_C": float(p.get("C", nan)), "paper_n_seeds": float(p.get("n_seeds", nan)),
                "sound_auroc": float(q.get("auroc", nan)), "sound_auroc_lo": float(q.get("auroc_lo", nan)),
                "sound_auroc_hi": float(q.get("auroc_hi", nan)),
                "published_auroc": published.get((kind, bucket), nan) if kind else nan,
                "published_C": float(chosen[PAPER_BUCKETS.index(bucket)]) if chosen and bucket in PAPER_BUCKETS else nan})
    return pd.DataFrame(records, columns=FIG4_COLUMNS)


def fig4_markdown(fig4: pd.DataFrame) -> str:
    """The Fig. 4 comparison as Markdown: ours (paper protocol, sound protocol) beside the paper's values."""
    lines = ["| model | bucket | ours, paper protocol (mean ± sd, C) | ours, sound protocol (95 % CI) | published AUROC | paper's C (Table 7) |",
             "|---|---|---|---|---|---|"]
    for r in fig4.itertuples():
        published = f"{r.published_auroc:.3f}" if not math.isnan(r.published_auroc) else "n/a"
        paper_c = f"{r.published_C:g}" if not math.isnan(r.published_C) else "n/a"
        lines.append(f"| {r.label} | {r.bucket} | {format_cell(r.paper_auroc_mean, r.paper_auroc_sd, r.paper_C)} | "
                     f"{format_ci(r.sound_auroc, r.sound_auroc_lo, r.sound_auroc_hi)} | {published} | {paper_c} |")
    return "\n".join(lines) + "\n"


def full_markdown(title: str, paper_wide: pd.DataFrame, paper_buckets: list[str], sound_wide: pd.DataFrame,
                  sound_buckets: list[str], comparison: pd.DataFrame, sound_settings: dict,
                  fig4: pd.DataFrame | None = None) -> str:
    """The report's Markdown: paper table first (the existing layout), then sound/zero-shot, the Fig. 4
    comparison (when given), then published values."""
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
    if fig4 is not None and len(fig4):
        text += ("\n## The paper's Fig. 4 rows: ours beside the published values\n\n"
                 "Rows in the paper's order. The paper shows AUROCs only as a bar chart (no numbers: n/a; the approximate "
                 "secondary-source values, for an unstated Caduceus variant, are listed below); its chosen C per bucket is its "
                 "Table 7. The sound protocol's buckets are half-open.\n\n" + fig4_markdown(fig4))
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
