from pathlib import Path

import pandas as pd
import pytest
from conftest import EQTL_HEADER

from caduceus_vep.variants import VariantInputError, make_variant_id, read_eqtl_table, read_variants, read_vcf, unique_variants


def write(tmp_path: Path, lines: list[str], name: str = "All_Tissues.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_variant_id_is_chrom_pos_ref_alt():
    assert make_variant_id("chr1", 12, "A", "G") == "chr1:12:A:G"


def test_eqtl_table_rows_per_tissue_and_skips(tmp_path):
    path = write(tmp_path, [
        EQTL_HEADER,
        "chr1,100,chr1_100_A_G_b38,A,G,1,train,Liver,500",
        "chr1,100,chr1_100_A_G_b38,A,G,1,train,Whole_Blood,500",
        "chr1,200,chr1_200_AT_G_b38,AT,G,0,train,Liver,600",       # indel: skipped
        "chr1,300,chr1_300_C_C_b38,C,C,0,test,Liver,700",          # ALT == REF: skipped
        "chr1,100,chr1_100_A_G_b38,A,G,1,train,Liver,500",         # duplicate row: skipped
        "chr9,400,chr9_400_g_t_b38,g,t,0,test,Liver,40000",         # lowercase accepted
    ])
    table = read_eqtl_table(path)
    assert list(table.variants["variant_id"]) == ["chr1:100:A:G", "chr1:100:A:G", "chr9:400:G:T"]
    assert list(table.variants["tissue"]) == ["Liver", "Whole_Blood", "Liver"]
    assert table.n_input_records == 6
    assert len(table.variants) + len(table.skipped) == table.n_input_records
    reasons = dict(zip(table.skipped["line"], table.skipped["reason"]))
    assert "SNV" in reasons[4] and "REF" in reasons[5] and "duplicate" in reasons[6]
    assert len(unique_variants(table.variants)) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("chr1,100,x,A,G,2,train,Liver,5", "line 2: label must be one of ['0', '1']"),
        ("chr1,100,x,A,G,1,valid,Liver,5", "line 2: split must be one of"),
        ("chr1,1e5,x,A,G,1,train,Liver,5", "line 2: POS is not an integer"),
        ("chr1,100,x,A,G,1,train,Liver,far", "line 2: distance_to_nearest_TSS is not an integer"),
    ],
)
def test_eqtl_table_bad_values_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path, [EQTL_HEADER, row])
    with pytest.raises(VariantInputError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        read_eqtl_table(path)
    assert str(path) in str(err.value)


def test_eqtl_table_missing_column_and_empty_file(tmp_path):
    with pytest.raises(VariantInputError, match=r"line 1: missing column\(s\) \['tissue'"):
        read_eqtl_table(write(tmp_path, ["CHROM,POS,SNP,REF,ALT,label,split,distance_to_nearest_TSS"]))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(VariantInputError, match="empty file"):
        read_eqtl_table(empty)


def test_vcf_splits_multiallelic_and_skips_non_snv(tmp_path):
    path = write(tmp_path, [
        "##fileformat=VCFv4.2",
        "##contig=<ID=chr1,length=5000>",
        "##contig=<ID=chr9,length=5000>",
        '##INFO=<ID=CAUSAL,Number=1,Type=Integer,Description="label">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
        "chr1\t10\trs1\tA\tG,T\t.\tPASS\tCAUSAL=1",
        "chr1\t20\trs2\tA\tAT\t.\tPASS\tCAUSAL=0",
        "chr9\t30\trs3\tC\t<DEL>\t.\tPASS\tCAUSAL=0",
        "chr9\t40\trs4\tC\tG\t.\tPASS\tCAUSAL=0",
    ], name="user.vcf")
    table = read_vcf(path, label_info="CAUSAL")
    assert list(table.variants["variant_id"]) == ["chr1:10:A:G", "chr1:10:A:T", "chr9:40:C:G"]
    assert list(table.variants["split"]) == ["train", "train", "test"]
    assert list(table.variants["snp"]) == ["rs1", "rs1", "rs4"]
    assert list(table.skipped["line"]) == [7, 8]  # lines of the file (5 header lines)
    assert table.n_input_records == 4
    # auto-detection by extension
    assert len(read_variants(path, label_info="CAUSAL").variants) == 3


def test_vcf_without_labels_is_scoring_only(tmp_path):
    path = write(tmp_path, ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=100>",
                            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO", "chr1\t10\t.\tA\tG\t.\t.\t."], name="u.vcf")
    table = read_vcf(path)
    assert table.variants["label"].tolist() == [-1]
    assert isinstance(table.variants, pd.DataFrame)


def test_user_table_tsv_with_optional_columns(tmp_path):
    path = write(tmp_path, [
        "chrom\tpos\tref\talt\tid\tis_causal",
        "1\t100\ta\tg\trsA\t1",
        "9\t200\tC\tT\trsB\t",          # unlabelled
        "chr2\t300\tG\tA,C\trsC\t0",    # multi-allelic: two rows, same line
    ], name="mine.tsv")
    table = read_variants(path, label_column="is_causal", tissue="Liver")
    v = table.variants
    assert list(v["variant_id"]) == ["1:100:A:G", "9:200:C:T", "chr2:300:G:A", "chr2:300:G:C"]
    assert list(v["snp"]) == ["rsA", "rsB", "rsC", "rsC"]
    assert list(v["label"]) == [1, -1, 0, 0]
    assert list(v["split"]) == ["train", "test", "train", "train"]  # "9" matches chr9
    assert set(v["tissue"]) == {"Liver"} and set(v["distance_to_nearest_TSS"]) == {-1}
    assert list(v["source_line"]) == [2, 3, 4, 4]
    assert table.n_input_records == 3 and table.n_input_alleles == 4


def test_user_table_parquet_and_csv_agree(tmp_path):
    frame = pd.DataFrame({"chrom": ["chr1", "chr1"], "pos": [10, 20], "ref": ["A", "C"], "alt": ["G", "T"],
                          "label": [1, 0], "tissue": ["Liver", "Lung"], "split": ["train", "test"],
                          "distance_to_nearest_TSS": [5, 7]})
    frame.to_parquet(tmp_path / "v.parquet")
    frame.to_csv(tmp_path / "v.csv", index=False)
    a = read_variants(tmp_path / "v.parquet").variants
    b = read_variants(tmp_path / "v.csv").variants
    pd.testing.assert_frame_equal(a.drop(columns="source_line"), b.drop(columns="source_line"))
    assert list(a["split"]) == ["train", "test"] and list(a["distance_to_nearest_TSS"]) == [5, 7]


def test_vcf_gz_and_bcf_read_like_the_plain_vcf(tmp_path):
    pysam = pytest.importorskip("pysam")
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=5000>",
             '##INFO=<ID=CAUSAL,Number=1,Type=Integer,Description="label">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
             "chr1\t10\trs1\tA\tG,T\t.\tPASS\tCAUSAL=1", "chr1\t20\trs2\tA\t*\t.\tPASS\tCAUSAL=0"]
    plain = write(tmp_path, lines, name="u.vcf")
    pysam.tabix_compress(str(plain), str(tmp_path / "u.vcf.gz"))
    with pysam.VariantFile(str(plain)) as src, pysam.VariantFile(str(tmp_path / "u.bcf"), "wb", header=src.header) as out:
        for rec in src:
            out.write(rec)
    tables = [read_variants(tmp_path / n, label_info="CAUSAL") for n in ("u.vcf", "u.vcf.gz", "u.bcf")]
    for t in tables:
        assert list(t.variants["variant_id"]) == ["chr1:10:A:G", "chr1:10:A:T"]
        assert list(t.variants["label"]) == [1, 1]
        assert list(t.skipped["alt"]) == ["*"]
    assert tables[0].skipped["line"].tolist() == tables[1].skipped["line"].tolist() == [6]
    assert tables[2].skipped["line"].tolist() == [2]  # BCF: record number
