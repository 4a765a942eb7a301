"""The bundled demo is exactly what the committed generator makes, and its planted signal is real."""

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
