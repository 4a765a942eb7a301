import pandas as pd
import pytest

from caduceus_vep.genome import Genome, sanitise
from caduceus_vep.windows import WindowError, WindowSpec, alt_sequence, build_windows, fetch_context, write_windows


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
        result = build_windows(rows, genome, spec, source="t")
        windows, skipped = result.windows, result.skipped
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

    assert result.n_ref_checked == 4 and result.n_ref_mismatch == 1  # a, b, c (clamped fetch) and e


def snv_rows(seqs: dict[str, str], specs: list[tuple[str, int, bool]]) -> pd.DataFrame:
    """Rows at (contig, pos); ``wrong`` gives a REF that disagrees with the genome."""
    rows = []
    for line, (chrom, pos, wrong) in enumerate(specs, start=2):
        base = seqs[chrom][pos - 1].upper()
        ref = next(b for b in "ACGT" if b != base) if wrong else base
        alt = next(b for b in "ACGT" if b not in (ref, base))
        rows.append({"variant_id": f"{chrom}:{pos}:{ref}:{alt}", "snp": f"id{line}", "chrom": chrom, "pos": pos,
                     "ref": ref, "alt": alt, "source_line": line})
    return pd.DataFrame(rows)


def test_pad_policy_keeps_edge_windows_and_fetch_context_pads(small_genome):
    fasta, seqs = small_genome
    rows = snv_rows(seqs, [("chr1", 50, False), ("chr1", 4_990, False), ("chr1", 2_500, False)])
    spec = WindowSpec(context_length=200, pooling_window=20, edge_policy="pad")
    with Genome(fasta) as genome:
        result = build_windows(rows, genome, spec, source="t")
        w = result.windows.set_index("snp")
        assert list(w["pad_left"]) == [51, 0, 0] and list(w["pad_right"]) == [0, 89, 0]
        start_ctx = fetch_context(genome, w.loc["id2"])
        end_ctx = fetch_context(genome, w.loc["id3"])
        mid_ctx = fetch_context(genome, w.loc["id4"])
        assert mid_ctx == genome.fetch("chr1", int(w.loc["id4", "context_start"]), int(w.loc["id4", "context_end"]))
    assert len(start_ctx) == len(end_ctx) == 200
    assert start_ctx[:51] == "N" * 51 and start_ctx[100] == rows["ref"][0] and "N" not in start_ctx[51:]
    assert end_ctx.endswith("N" * 89) and end_ctx[100] == rows["ref"][1]
    assert w.loc["id2", "ref_pool_seq"] == start_ctx[90:111]
    assert (w["n_fraction"] == 0).all()  # padding is recorded, not counted as N
    dropped = build_windows(rows, Genome(fasta), WindowSpec(200, 20), source="t")
    assert list(dropped.windows["snp"]) == ["id4"] and dropped.skipped["reason"].str.contains("runs off").all()


@pytest.mark.parametrize("policy", ["skip", "flag", "error"])
def test_ref_mismatch_policies(small_genome, policy):
    fasta, seqs = small_genome
    rows = snv_rows(seqs, [("chr1", 1_000 + 10 * k, k == 3) for k in range(30)])  # 1 of 30 wrong: under 5 %
    spec = WindowSpec(200, 20, ref_mismatch=policy)
    with Genome(fasta) as genome:
        if policy == "error":
            with pytest.raises(WindowError, match=r"^t, line 5: REF .* does not match"):
                build_windows(rows, genome, spec, source="t")
            return
        result = build_windows(rows, genome, spec, source="t")
    assert result.n_ref_mismatch == 1 and result.n_ref_checked == 30
    if policy == "skip":
        assert len(result.windows) == 29 and list(result.skipped["line"]) == [5] and result.flags.empty
    else:
        assert len(result.windows) == 30 and result.skipped.empty and list(result.flags["line"]) == [5]
        assert result.windows["ref_mismatch"].sum() == 1


def test_high_mismatch_rate_stops_with_a_build_hint_and_writes_nothing(small_genome, tmp_path):
    fasta, seqs = small_genome
    rows = snv_rows(seqs, [("chr1", 1_000 + 10 * k, k % 5 == 0) for k in range(40)])  # 20 % wrong
    out = tmp_path / "w.parquet"
    with Genome(fasta) as genome, pytest.raises(WindowError, match="8 of 40 .*hg19"):
        write_windows(rows, genome, WindowSpec(200, 20), out, source="t", chunk=7)
    assert not out.exists() and not list(tmp_path.glob(".w.parquet*"))
    few = rows.iloc[:10]  # 2 of 10 wrong, but fewer than min_ref_checked: skipped, not fatal
    with Genome(fasta) as genome:
        assert write_windows(few, genome, WindowSpec(200, 20), out).n_ref_mismatch == 2


def test_chunked_write_equals_one_pass(small_genome, tmp_path):
    fasta, seqs = small_genome
    rows = snv_rows(seqs, [("chr1", 300 + 37 * k, False) for k in range(100)] + [("chr2", 2_000, False)])
    spec = WindowSpec(200, 20)
    with Genome(fasta) as genome:
        whole = build_windows(rows, genome, spec)
        result = write_windows(rows, genome, spec, tmp_path / "w.parquet", chunk=13)
    written = pd.read_parquet(tmp_path / "w.parquet")
    pd.testing.assert_frame_equal(written, whole.windows, check_dtype=False)
    assert result.n_kept == len(written) == 101
    with Genome(fasta) as genome:
        empty = write_windows(rows.iloc[:0], genome, spec, tmp_path / "e.parquet")
    assert empty.n_kept == 0 and list(pd.read_parquet(tmp_path / "e.parquet").columns) == list(written.columns)


def test_benchmark_edge_rule_drops_a_context_ending_at_the_last_base(small_genome):
    """The benchmark drops ``start < 0 or end >= len(chrom)`` with ``end = i + L/2`` (half-open).

    chr1 is 5,000 bp, L = 1,000 (L/2 = 500), i = POS - 1:
    POS 4500 -> end 4999 < 5000: kept (its context ends one base before the last one);
    POS 4501 -> end 5000 = len: dropped, although [4000, 5000) lies inside the chromosome;
    POS 501 -> start 0: kept; POS 500 -> start -1: dropped.
    """
    fasta, seqs = small_genome
    chr1 = seqs["chr1"]
    assert len(chr1) == 5_000
    rows = pd.DataFrame([{"variant_id": f"chr1:{p}", "snp": f"id{p}", "chrom": "chr1", "pos": p, "ref": chr1[p - 1],
                          "alt": "N", "source_line": line} for line, p in enumerate([4_500, 4_501, 501, 500], start=2)])
    spec = WindowSpec(context_length=1_000, pooling_window=200, max_n_fraction=1.0)
    with Genome(fasta) as genome:
        result = build_windows(rows, genome, spec, source="t")
        padded = build_windows(rows, genome, WindowSpec(context_length=1_000, pooling_window=200, max_n_fraction=1.0,
                                                        edge_policy="pad"), source="t")
    kept = result.windows.set_index("pos")
    assert sorted(kept.index) == [501, 4_500]
    assert (kept.loc[4_500, "context_start"], kept.loc[4_500, "context_end"]) == (3_999, 4_999)
    assert (kept.loc[501, "context_start"], kept.loc[501, "context_end"]) == (0, 1_000)
    reasons = dict(zip(result.skipped["pos"], result.skipped["reason"]))
    assert set(reasons) == {4_501, 500}
    assert "ends at the last base of chr1 (length 5000)" in reasons[4_501]
    assert "runs off" in reasons[500]
    # edge_policy: pad is not the benchmark: the context ending at the last base needs no padding and is kept.
    assert sorted(padded.windows["pos"]) == [500, 501, 4_500, 4_501]
    assert padded.windows.set_index("pos").loc[4_501, "pad_right"] == 0
