import pandas as pd
import pytest

from caduceus_vep.genome import Genome, sanitise
from caduceus_vep.windows import WindowSpec, alt_sequence, build_windows


def test_centring_convention_matches_benchmark():
    spec = WindowSpec(context_length=8, pooling_window=4)
    # POS 10 (1-based) -> index 9; context = chrom[9-4 : 9+4]; the SNP sits at string index 4.
    assert spec.context_bounds(10) == (5, 13)
    assert spec.snp_index == 4
    # pooling positions v-2 .. v+2 inclusive
    assert spec.pool_bounds() == (2, 7)
    # a pooling window as long as the context is clamped to the sequence (1,536 / 1,536 demo)
    assert WindowSpec(1536, 1536).pool_bounds() == (0, 1536)
    assert WindowSpec(131072, 1536).pool_bounds() == (65536 - 768, 65536 + 769)


@pytest.mark.parametrize("bad", [dict(context_length=7, pooling_window=2), dict(context_length=8, pooling_window=-1),
                                 dict(context_length=8, pooling_window=2, max_n_fraction=2.0)])
def test_invalid_spec_rejected(bad):
    with pytest.raises(ValueError):
        WindowSpec(**bad)


def test_alt_sequence_replaces_only_the_snp():
    assert alt_sequence("AAAACAAA", "G", 4) == "AAAAGAAA"


def test_sanitise_uppercases_and_masks_iupac():
    assert sanitise("acgtRYn-") == "ACGTNNNN"


def test_genome_contig_aliases(small_genome):
    fasta, _ = small_genome
    with Genome(fasta) as genome:
        assert genome.resolve_contig("1") == "chr1"
        assert genome.resolve_contig("chr2") == "chr2"
        assert genome.resolve_contig("chrM") is None
        assert genome.fetch("chr1", 2000, 2004).isupper()


def test_build_windows_keeps_and_skips_every_record(small_genome):
    fasta, seqs = small_genome
    chr1 = seqs["chr1"]
    good_pos = 2_500
    ref = chr1[good_pos - 1]
    wrong = next(b for b in "ACGT" if b != ref)
    rows = pd.DataFrame([
        {"variant_id": "a", "chrom": "chr1", "pos": good_pos, "ref": ref, "alt": wrong, "source_line": 2},
        {"variant_id": "b", "chrom": "chr1", "pos": good_pos, "ref": wrong, "alt": ref, "source_line": 3},  # REF mismatch
        {"variant_id": "c", "chrom": "chr1", "pos": 50, "ref": chr1[49], "alt": "N", "source_line": 4},     # off the start
        {"variant_id": "d", "chrom": "chrUn", "pos": 50, "ref": "A", "alt": "C", "source_line": 5},         # unknown contig
        {"variant_id": "e", "chrom": "chr2", "pos": 1_200, "ref": seqs["chr2"][1_199], "alt": "A", "source_line": 6},  # N-rich
        {"variant_id": "f", "chrom": "chr1", "pos": 9_999, "ref": "A", "alt": "C", "source_line": 7},       # beyond contig
    ])
    spec = WindowSpec(context_length=1_000, pooling_window=200, max_n_fraction=0.005)
    with Genome(fasta) as genome:
        windows, skipped = build_windows(rows, genome, spec, source="t")
        assert list(windows["variant_id"]) == ["a"]
        w = windows.iloc[0]
        context = genome.fetch("chr1", int(w.context_start), int(w.context_end))
    assert context[500] == ref and len(context) == 1_000
    assert w.ref_pool_seq == context[400:601]  # v-100 .. v+100 inclusive
    assert len(windows) + len(skipped) == len(rows)
    reasons = dict(zip(skipped["line"], skipped["reason"]))
    assert "does not match" in reasons[3]
    assert "runs off" in reasons[4]
    assert "not in the genome" in reasons[5]
    assert "N (threshold" in reasons[6]
    assert "beyond the end" in reasons[7]
