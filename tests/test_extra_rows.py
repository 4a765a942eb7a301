"""``evaluate.extra_rows``: a second result row ("Caduceus w/o Equiv.") from one model's feature file,
through the paper protocol, the sound protocol, the report tables and the Fig. 4-style figure."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO
from test_evaluate import synthetic

from caduceus_vep import evaluate as ev
from caduceus_vep import stages
from caduceus_vep.feature_file import FeatureBlock, write_block
from caduceus_vep.settings import with_defaults
from caduceus_vep.windows import METADATA_KEY, WindowSpec

WO = {"name": "caduceus_wo_equiv", "label": "Caduceus w/o Equiv.", "model": "caduceus_ph", "rc_rule": "forward"}


def config(**evaluate):
    return with_defaults({
        "run_name": "t", "datasets": {"eqtl": {"path": "x.csv", "format": "eqtl_table", "evaluate": True}},
        "genome": {"fasta": "g.fa"},
        "models": [{"name": "caduceus_ps", "label": "Caduceus-PS", "path": "p", "rc_rule": "ps"},
                   {"name": "caduceus_ph", "label": "Caduceus-Ph", "path": "p", "rc_rule": "ph"}],
        "evaluate": {"seeds": [1, 2], "c_grid": [1, 5], "train_subsample": 30, "threads": 1,
                     "sound": {"c_grid": [1], "gamma_grid": [1], "bootstrap": 50, "max_train_rows": None},
                     "extra_rows": [WO], **evaluate}})


def inputs(tmp_path):
    """A feature file whose label signal is in the forward features only, plus variants and windows files."""
    rows, ids, m = synthetic(n_variants=150, signal_in="fwd")
    rows = rows.assign(chrom=np.where(np.arange(len(rows)) % 3 == 1, "chr1", "chr2"))
    write_block(FeatureBlock(ids.tolist(), [""] * len(ids), {k: v.astype(np.float32) for k, v in m.items()}),
                tmp_path / "caduceus_ph.parquet", {"model": {"name": "caduceus_ph"}})
    rows.to_parquet(tmp_path / "variants.parquet")
    spec = WindowSpec(context_length=1536, pooling_window=1536).to_dict()
    pq.write_table(pa.table({"variant_id": ids.tolist()}).replace_schema_metadata({METADATA_KEY: json.dumps(spec)}),
                   tmp_path / "windows.parquet")
    return rows, ids, {k: v.astype(np.float32) for k, v in m.items()}


def test_extra_row_is_the_ph_features_under_the_forward_rule(tmp_path):
    rows, ids, m = inputs(tmp_path)
    cfg = config()
    ph = cfg["models"][1]
    files = {"variants": tmp_path / "variants.parquet", "windows": tmp_path / "windows.parquet",
             "embeddings": tmp_path / "caduceus_ph.parquet"}
    stages.evaluate_stage(**files, model=ph, settings=cfg["evaluate"], out_per_seed=tmp_path / "ph.per_seed.tsv")
    per_seed = pd.read_csv(tmp_path / "ph.per_seed.tsv", sep="\t", keep_default_na=False, na_values=["nan", ""])
    assert list(pd.unique(per_seed["model"])) == ["caduceus_ph", "caduceus_wo_equiv"]
    kwargs = {"seeds": [1, 2], "c_grid": [1.0, 5.0], "train_subsample": 30}
    for name, rule in (("caduceus_ph", "ph"), ("caduceus_wo_equiv", "forward")):
        expected = ev.paper_protocol(rows, ids, m, model=name, rc_rule=rule, **kwargs)
        got = per_seed[per_seed["model"] == name].reset_index(drop=True)
        np.testing.assert_allclose(got["auroc"].to_numpy(), expected["auroc"].to_numpy(), atol=1e-6)
    # Forward features for train and test keep the clean signal; Ph tests on the average with noisy RC.
    means = per_seed.groupby("model")["auroc"].mean()
    assert means["caduceus_wo_equiv"] > 0.9 and means["caduceus_wo_equiv"] >= means["caduceus_ph"]

    stages.evaluate_sound_stage(**files, model=ph, settings=cfg["evaluate"], out_table=tmp_path / "ph.sound.tsv",
                                out_scores=tmp_path / "ph.sound_scores.tsv", out_bundle=tmp_path / "ph.cvep.npz")
    sound = pd.read_csv(tmp_path / "ph.sound.tsv", sep="\t")
    assert list(pd.unique(sound["model"])) == ["caduceus_ph", "caduceus_wo_equiv"]
    scores = pd.read_csv(tmp_path / "ph.sound_scores.tsv", sep="\t")
    assert set(scores["model"]) == {"caduceus_ph", "caduceus_wo_equiv"}

    # The report: the row with its label in the tables, the Fig. 4 comparison and the figure, in paper order.
    out = {name: tmp_path / f"out.{name}" for name in ("table_tsv", "table_md", "per_seed", "figure", "provenance",
                                                        "sound_tsv", "reference_tsv", "roc_figure", "fig4_tsv")}
    (tmp_path / "x.csv").write_text("x\n")
    (tmp_path / "g.fa").write_text(">c\nA\n")
    stages.report_stage(config=cfg, dataset="eqtl", embeddings=[files["embeddings"]], source=tmp_path / "x.csv",
                        fasta=tmp_path / "g.fa", workflow_dir=REPO, per_seed=[tmp_path / "ph.per_seed.tsv"],
                        sound=[tmp_path / "ph.sound.tsv"], sound_scores=[tmp_path / "ph.sound_scores.tsv"],
                        reference_values=REPO / "resources/reference_values.tsv",
                        **{f"out_{k}": v for k, v in out.items()})
    table = pd.read_csv(out["table_tsv"], sep="\t")
    assert table["model"].tolist() == ["Caduceus w/o Equiv.", "Caduceus-Ph"]  # the paper's order
    fig4 = pd.read_csv(out["fig4_tsv"], sep="\t")
    # The paper's three Caduceus rows (Table 7's C); no PS results in this run, so its cells are NaN.
    assert list(pd.unique(fig4["label"])) == ["Caduceus w/o Equiv.", "Caduceus-Ph", "Caduceus-PS"]
    assert fig4.loc[fig4.row == "caduceus_wo_equiv", "published_C"].tolist() == [1, 1, 10]
    assert fig4.loc[fig4.row == "caduceus_ph", "published_C"].tolist() == [1, 5, 10]
    assert fig4.loc[fig4.row == "caduceus_ps", "paper_auroc_mean"].isna().all()
    assert fig4["published_auroc"].isna().all()
    wo = fig4[fig4.row == "caduceus_wo_equiv"].set_index("bucket")
    assert wo.loc["0-30kb", "sound_auroc_lo"] <= wo.loc["0-30kb", "sound_auroc"] <= wo.loc["0-30kb", "sound_auroc_hi"]
    md = out["table_md"].read_text()
    assert "| Caduceus w/o Equiv. | paper |" in md and "| Caduceus w/o Equiv. | sound |" in md
    assert "| Caduceus w/o Equiv. | 0-30kb |" in md and "| n/a | 1 |" in md
    assert out["figure"].read_bytes().startswith(b"\x89PNG")
    provenance = json.loads(out["provenance"].read_text())
    assert [r["name"] for r in provenance["protocol"]["rows"]] == ["caduceus_wo_equiv", "caduceus_ph", "caduceus_ps"]


def test_row_order_config_overrides_the_paper_order():
    from caduceus_vep import report

    rows = [(r.name, r.label) for r in ev.table_rows(config()["models"], [WO])]
    rank = report.row_rank(rows, config(row_order=["caduceus_ps"])["evaluate"]["row_order"])
    assert sorted(rank, key=rank.get) == ["caduceus_ps", "caduceus_wo_equiv", "caduceus_ph"]
