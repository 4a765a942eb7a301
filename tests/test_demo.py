"""The bundled demo is exactly what the committed generator makes, and its planted signal is real."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from caduceus_vep import demo
from caduceus_vep.genome import Genome

BUNDLED = REPO / "resources/demo"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    demo.generate(folder)
    return folder


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "README.md")


def test_generator_reproduces_the_bundled_files(generated):
    assert files(generated) == files(BUNDLED)
    for name in files(BUNDLED):
        assert (generated / name).read_bytes() == (BUNDLED / name).read_bytes(), name


def test_table_schema_buckets_and_splits():
    table = pd.read_csv(BUNDLED / "All_Tissues.csv")
    assert list(table.columns) == ["CHROM", "POS", "SNP", "REF", "ALT", "label", "split", "tissue", "distance_to_nearest_TSS"]
    assert set(table["split"]) == {"train", "test"}
    assert set(table.loc[table["split"] == "test", "CHROM"]) == {"chr9", "chr10"}
    assert table["tissue"].nunique() >= 3
    buckets = pd.cut(table["distance_to_nearest_TSS"], [-1, 30_000, 100_000, np.inf])
    counts = table.groupby(["split", buckets], observed=False)["label"].agg(["count", "sum"])
    assert (counts["count"] >= 40).all() and (counts["sum"] >= 10).all()


def gc_fraction(seq: str) -> float:
    return (seq.count("G") + seq.count("C")) / max(1, len(seq) - seq.count("N"))


def test_planted_signal_is_local_gc():
    table = pd.read_csv(BUNDLED / "All_Tissues.csv").drop_duplicates(["CHROM", "POS"])
    with Genome(BUNDLED / "genome.fa") as genome:
        gc = np.array([gc_fraction(genome.fetch(c, p - 1 - 700, p - 1 + 700)) for c, p in zip(table.CHROM, table.POS)])
        # the same variants moved 10 kb away: no signal
        far = np.array([gc_fraction(genome.fetch(c, p + 9_300, p + 10_700)) for c, p in zip(table.CHROM, table.POS)
                        if p + 10_700 < genome.contig_lengths[c]])
    label = table["label"].to_numpy()
    high = gc > 0.51
    agreement = (high == label.astype(bool)).mean()
    assert 0.75 < agreement < 0.95  # planted with 15 % label noise
    assert (far > 0.51).mean() < 0.5
    for ref, chrom, pos in zip(table.REF, table.CHROM, table.POS):
        with Genome(BUNDLED / "genome.fa") as genome:
            assert genome.fetch(chrom, pos - 1, pos) == ref
        break


def test_demo_vcf_reads_back():
    from caduceus_vep.variants import read_vcf

    table = read_vcf(BUNDLED / "variants.vcf", label_info="CAUSAL", distance_info="TSSDIST")
    # 236 demo SNVs + 7 bad/tricky records; the multi-allelic one becomes two rows, 4 are skipped.
    assert table.n_input_records == 243 and table.n_input_alleles == 244
    assert len(table.variants) == 240 and len(table.skipped) == 4
    assert set(table.variants["split"]) == {"train", "test"}


def test_checkpoints_load_and_say_untrained():
    from caduceus_vep.model import load_caduceus

    for name, rcps in (("caduceus-ps-tiny", True), ("caduceus-ph-tiny", False)):
        folder = BUNDLED / "checkpoints" / name
        model = load_caduceus(folder)
        assert model.is_rcps is rcps
        assert "NOT PRETRAINED" in (folder / "README.md").read_text()


def test_enformer_checkpoint_loads_through_the_registry_labelled_and_small():
    pytest.importorskip("enformer_pytorch", reason="enformer-pytorch (a base dependency) is not installed")
    from caduceus_vep.model.enformer import NOT_PRETRAINED
    from caduceus_vep.model.registry import infer_architecture, load_model

    folder = BUNDLED / "checkpoints" / "enformer-tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "NOT PRETRAINED" in (folder / "README.md").read_text()
    assert json.loads((folder / "config.json").read_text())["_comment"] == NOT_PRETRAINED
    assert (folder / "model.safetensors").stat().st_size < 1_000_000
    assert infer_architecture(folder) == "enformer"
    loaded = load_model({"path": str(folder), "architecture": "enformer"}, context_length=1536)
    assert loaded.family.name == "enformer" and loaded.family.zero_shot is None
    assert loaded.module.settings.target_length == demo.ENFORMER_DEMO_TARGET_LENGTH
    assert len(loaded.provenance["weights_sha256"]) == 64


def test_enformer_embeds_demo_windows_at_the_demo_context():
    """The demo config's Enformer entry, through the registry, on a handful of the demo's own 1,536 bp windows."""
    pytest.importorskip("enformer_pytorch", reason="enformer-pytorch (a base dependency) is not installed")
    import torch
    import yaml

    from caduceus_vep.embed import FEATURE_COLUMNS, EmbedSettings, embed_windows
    from caduceus_vep.model.registry import load_model
    from caduceus_vep.windows import WindowSpec, build_windows
    from caduceus_vep.zero_shot import embedding_distances, llr_scores

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    entry = next(m for m in config["models"] if m["name"] == "enformer")
    assert entry.get("context_length", config["windows"]["context_length"]) <= config["windows"]["context_length"] == 1536
    table = pd.read_csv(BUNDLED / "All_Tissues.csv").drop_duplicates(["CHROM", "POS"]).iloc[1:6]  # row 0 has the N run
    rows = pd.DataFrame({"variant_id": table.SNP, "chrom": table.CHROM, "pos": table.POS, "ref": table.REF, "alt": table.ALT,
                         "source_line": range(len(table))})
    spec = WindowSpec(context_length=config["windows"]["context_length"], pooling_window=config["windows"]["pooling_window"])
    loaded = load_model({**entry, "path": str(REPO / entry["path"])}, context_length=spec.context_length)
    with Genome(BUNDLED / "genome.fa") as genome:
        windows = build_windows(rows, genome, spec).windows
        assert len(windows) == 5
        with torch.inference_mode():
            features = embed_windows(windows, genome, loaded, EmbedSettings(batch_size=2, device="cpu", autocast_dtype="float32"), rc_mode="none")
        llr = llr_scores(windows, genome, loaded, batch_size=2, autocast_dtype="float32")
    assert llr["llr"].isna().all() and len(llr) == 5  # no LM head: the zero-shot rows are the distances only
    distances = embedding_distances(features["variant_id"], {c: np.stack(features[c]) for c in FEATURE_COLUMNS})
    assert len(distances) == 5 and np.isfinite(distances.drop(columns="variant_id").to_numpy(dtype=float)).all()
    ref, alt = np.stack(features["ref_fwd"]), np.stack(features["alt_fwd"])
    assert ref.shape == (5, loaded.hidden_size) == (5, 96) and np.isfinite(ref).all() and np.isfinite(alt).all()
    assert not np.allclose(ref, alt)  # the SNP's bin is inside the pooled bins
    np.testing.assert_array_equal(np.stack(features["ref_rc"]), ref)  # forward only: RC columns are copies
