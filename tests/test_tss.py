"""Distance to the nearest TSS from a GTF: the benchmark's convention, reproduced on the demo."""

import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from caduceus_vep.tss import AnnotationError, fill_tss_distances, nearest_tss_distance, read_tss

DEMO = REPO / "resources/demo"


def test_demo_gtf_reproduces_the_tables_distance_column():
    table = pd.read_csv(DEMO / "All_Tissues.csv")
    computed = nearest_tss_distance(table["CHROM"], table["POS"], read_tss(DEMO / "genes.gtf.gz"))
    np.testing.assert_array_equal(computed, table["distance_to_nearest_TSS"].to_numpy())


def write_gtf(path, records):
    lines = ["##description: test", *("\t".join(r) for r in records)]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_strand_aware_tss_gene_features_only_and_name_matching(tmp_path):
    attrs = 'gene_id "G"; note "a # in an attribute";'
    gtf = write_gtf(tmp_path / "a.gtf.gz", [
        ["chr1", "X", "gene", "1000", "2000", ".", "+", ".", attrs],     # TSS 1000
        ["chr1", "X", "gene", "5000", "6000", ".", "-", ".", attrs],     # TSS 6000
        ["chr1", "X", "exon", "3000", "3100", ".", "+", ".", attrs],     # not a gene: ignored
        ["chrM", "X", "gene", "10", "20", ".", "-", ".", attrs],         # TSS 20
    ])
    tss = read_tss(gtf)
    assert tss["1"].tolist() == [1000, 6000] and tss["M"].tolist() == [20]
    chroms = ["1", "chr1", "chr1", "chr1", "MT", "chr2"]
    positions = [1000, 10, 3499, 7000, 25, 5]
    assert nearest_tss_distance(chroms, positions, tss).tolist() == [0, 990, 2499, 1000, 5, -1]


def test_fill_only_missing_distances_and_report_agreement(tmp_path):
    gtf = write_gtf(tmp_path / "a.gtf.gz", [["chr1", "X", "gene", "1000", "2000", ".", "+", ".", 'gene_id "G";']])
    variants = pd.DataFrame({"chrom": ["chr1", "chr1", "chr3"], "pos": [1100, 1200, 5],
                             "distance_to_nearest_TSS": [100, -1, -1]})
    filled, notes = fill_tss_distances(variants, gtf)
    assert filled["distance_to_nearest_TSS"].tolist() == [100, 200, -1]
    assert any("same value for 1" in n for n in notes) and any("without any gene" in n for n in notes)


@pytest.mark.parametrize(("content", "message"), [
    ("chr1\tX\tgene\tstart\t2000\t.\t+\t.\tx\n", "integer start/end"),
    ("chr1\tX\tgene\t1\t2000\t.\t?\t.\tx\n", "strand"),
    ("chr1\tX\texon\t1\t2000\t.\t+\t.\tx\n", "no 'gene' records"),
])
def test_bad_gtf_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.gtf"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as err:
        read_tss(path)
    assert str(path) in str(err.value)
