"""Users' variant sets: input reading, genome handling, config safety and the crashes/false alarms seen on real data.

Each test here names the problem it keeps from coming back (issue "Your own variants, at any scale").
"""

from __future__ import annotations

import gzip
import shutil
import subprocess

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml
from conftest import REPO, write_fasta

from caduceus_vep import settings, stages
from caduceus_vep.genome import Genome, GenomeError
from caduceus_vep.variants import VariantInputError, read_variants
from caduceus_vep.windows import WindowError, WindowSpec, build_windows, read_window_spec, write_windows

HEADER = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=5000>\n"


def vcf(path, body: str, info_lines: str = "") -> str:
    path.write_text(HEADER + info_lines + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + body)
    return str(path)


# ----------------------------------------------------------------------------- reading


def test_flag_info_label_and_per_allele_values_are_split_with_their_alleles(tmp_path):
    info = ('##INFO=<ID=CAUSAL,Number=0,Type=Flag,Description="causal">\n'
            '##INFO=<ID=D,Number=A,Type=Integer,Description="per-ALT distance">\n')
    path = vcf(tmp_path / "a.vcf", "chr1\t10\tr1\tA\tC,G\t.\t.\tCAUSAL;D=100,200000\n"
                                   "chr1\t20\tr2\tA\tT\t.\t.\tD=5\n", info)
    table = read_variants(path, "vcf", label_info="CAUSAL", distance_info="D")
    got = table.variants.set_index("variant_id")
    assert got.loc["chr1:10:A:C", "label"] == 1 and got.loc["chr1:10:A:G", "label"] == 1 and got.loc["chr1:20:A:T", "label"] == 0
    assert got.loc["chr1:10:A:C", "distance_to_nearest_TSS"] == 100
    assert got.loc["chr1:10:A:G", "distance_to_nearest_TSS"] == 200000  # not the first allele's value


def test_number_r_values_drop_the_ref_value_and_a_count_mismatch_names_the_line(tmp_path):
    info = '##INFO=<ID=L,Number=R,Type=Integer,Description="per-allele label">\n'
    path = vcf(tmp_path / "r.vcf", "chr1\t10\tr1\tA\tC,G\t.\t.\tL=0,1,0\n", info)
    got = read_variants(path, "vcf", label_info="L").variants.set_index("variant_id")["label"]
    assert got["chr1:10:A:C"] == 1 and got["chr1:10:A:G"] == 0
    bad = vcf(tmp_path / "bad.vcf", "chr1\t10\tr1\tA\tC\t.\t.\tL=0\nchr1\t11\tr2\tA\tC,G\t.\t.\tL=0,1\n", info)
    with pytest.raises(VariantInputError, match=r"line 5: INFO value '0' has 1 value\(s\); Number=R .* here 2"):
        read_variants(bad, "vcf", label_info="L")


def test_column_count_error_names_the_bad_line_itself(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("chrom,pos,ref,alt\nchr1,10,A,C\nchr1,11,A,C,EXTRA\nchr1,12,A,C\n")
    with pytest.raises(VariantInputError, match=r"t\.csv, line 3:"):
        read_variants(table)
    bad = vcf(tmp_path / "v.vcf", "chr1\t10\t.\tA\tC\t.\t.\t.\nchr1\t11\t.\tA\tC\t.\t.\t.\tX\tY\n")
    with pytest.raises(VariantInputError, match=r"v\.vcf, line 5:"):
        read_variants(bad)


# ----------------------------------------------------------------------------- genome


@pytest.fixture
def genome_seq():
    rng = np.random.default_rng(3)
    seq = list("".join(rng.choice(list("ACGT"), 5000)))
    seq[2000:2010] = "N" * 10
    return "".join(seq)


def test_bgzipped_fasta_is_read_and_a_missing_index_is_built(tmp_path, genome_seq):
    plain = write_fasta(tmp_path / "g.fa", {"chr1": genome_seq})
    bgz = tmp_path / "g.fa.gz"
    pysam.tabix_compress(str(plain), str(bgz))
    with Genome(bgz) as genome:  # no .fai / .gzi yet
        assert genome.fetch("chr1", 100, 110) == genome_seq[100:110]
    assert (tmp_path / "g.fa.gz.fai").exists() and (tmp_path / "g.fa.gz.gzi").exists()
    with Genome(plain) as genome:
        assert genome.fetch("chr1", 4990, 5000) == genome_seq[4990:]
    assert (tmp_path / "g.fa.fai").exists()


def test_plain_gzip_fasta_is_refused_with_the_bgzip_fix(tmp_path, genome_seq):
    plain = write_fasta(tmp_path / "g.fa", {"chr1": genome_seq})
    gz = tmp_path / "p.fa.gz"
    with open(plain, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    with pytest.raises(GenomeError, match="bgzip"):
        Genome(gz)


def test_reference_base_n_is_its_own_skip_and_never_a_build_mismatch(tmp_path, genome_seq):
    fasta = write_fasta(tmp_path / "g.fa", {"chr1": genome_seq})
    # 30 variants on N bases (REF A): under the old rule each counted as a REF mismatch (> 5 %: stop).
    rows = pd.DataFrame({"chrom": "chr1", "pos": [2001 + i % 10 for i in range(30)] + [3000], "ref": "A", "alt": "C"})
    rows["ref"] = ["A"] * 30 + [genome_seq[2999]]
    rows["alt"] = [("C" if r != "C" else "G") for r in rows["ref"]]
    rows["variant_id"] = [f"v{i}" for i in range(len(rows))]
    rows["source_line"] = range(1, len(rows) + 1)
    spec = WindowSpec(context_length=20, pooling_window=4, max_n_fraction=1.0)
    with Genome(fasta) as genome:
        result = write_windows(rows, genome, spec, tmp_path / "w.parquet", source="in.vcf")
    assert result.n_ref_mismatch == 0 and result.n_kept == 1
    assert result.skipped["reason"].str.contains("genome base at chr1:2001 is N").any()
    assert len(result.skipped) == 30
    assert read_window_spec(tmp_path / "w.parquet") == spec  # the spec travels in the file


def test_all_contigs_absent_stops_naming_both_sides(tmp_path, genome_seq):
    fasta = write_fasta(tmp_path / "g.fa", {"chr1": genome_seq})
    rows = pd.DataFrame({"variant_id": ["a", "b"], "chrom": ["NC_000001.11", "NC_000002.12"], "pos": [10, 20], "ref": "A", "alt": "C",
                         "source_line": [5, 6]})
    with Genome(fasta) as genome, pytest.raises(WindowError) as err:
        write_windows(rows, genome, WindowSpec(20, 4), tmp_path / "w.parquet", source="in.vcf")
    assert "NC_000001.11" in str(err.value) and "chr1" in str(err.value)
    assert not (tmp_path / "w.parquet").exists()
    with Genome(fasta) as genome:  # some absent, some present: skips only
        partial = build_windows(pd.concat([rows, rows.assign(chrom="chr1", variant_id=["c", "d"])]), genome, WindowSpec(20, 4, max_n_fraction=1.0))
    assert partial.n_unknown_contig == 2


# ----------------------------------------------------------------------------- config safety


def test_schema_is_the_one_place_for_defaults():
    filled = settings.with_defaults({"run_name": "x", "datasets": {"mine": {"path": "my.vcf"}}, "genome": {"fasta": "g.fa"},
                                     "models": [{"name": "m", "path": "m"}]})
    schema = settings.schema()
    assert filled["embed"]["batch_size"] == schema["properties"]["embed"]["properties"]["batch_size"]["default"]
    assert filled["datasets"]["mine"]["evaluate"] is False and filled["datasets"]["mine"]["classifiers"] is None
    assert "tss" not in filled  # nothing comes from the demo config
    assert WindowSpec.from_config({"context_length": 8, "pooling_window": 2}).max_n_fraction == \
        schema["properties"]["windows"]["properties"]["max_n_fraction"]["default"]


@pytest.mark.parametrize(("change", "key"), [
    (lambda c: c.pop("models"), "models"),
    (lambda c: c.update(run_name=".."), "run_name"),
    (lambda c: c["datasets"]["mine"].update(classifiers="nope"), "classifiers"),
    (lambda c: c["datasets"]["mine"].update(classifiers="other"), "classifiers"),
    (lambda c: c.update(embed={"cache_dir": "/tmp/elsewhere"}), "embed.cache_dir"),
    (lambda c: c.update(model_cache="../outside"), "model_cache"),
    (lambda c: c["datasets"]["mine"].update(url="https://example.org/x.vcf", path="../x.vcf"), "datasets.mine.path"),
])
def test_bad_configs_fail_naming_the_key(change, key):
    config = {"run_name": "x", "datasets": {"mine": {"path": "my.vcf"}, "other": {"path": "o.vcf"}}, "genome": {"fasta": "g.fa"},
              "models": [{"name": "m", "path": "m"}]}
    change(config)
    with pytest.raises(settings.ConfigError, match=key):
        settings.check_config(settings.with_defaults(config))


def test_user_configfile_is_not_merged_with_the_demo(tmp_path):
    from test_workflow import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path / "wf")
    user = {"run_name": "mine", "datasets": {"mine": {"path": "resources/demo/variants.vcf"}},
            "genome": {"fasta": "resources/demo/genome.fa"}, "windows": {"context_length": 1536},
            "models": [{"name": "ps", "path": "resources/demo/checkpoints/caduceus-ps-tiny", "rc_rule": "ps"}]}
    (workdir / "mine.yaml").write_text(yaml.safe_dump(user))
    text = snakemake(workdir, "--dry-run", "--configfile", "mine.yaml").stdout
    assert "results/mine/mine/scores/mine.scored.vcf.gz" in text
    assert "genes.gtf.gz" not in text and "caduceus_ph" not in text and "eqtl" not in text  # nothing from the demo
    assert "rule report" not in text  # an unlabelled, not-evaluated dataset gets scores only


def test_evaluating_an_unlabelled_dataset_stops_at_once_pointing_to_scoring(tmp_path):
    path = vcf(tmp_path / "u.vcf", "chr1\t10\tr1\tA\tC\t.\t.\t.\n")
    options = {**settings.dataset_defaults(), "path": path, "evaluate": True}
    with pytest.raises(stages.StageError, match="evaluate: false.*score"):
        stages.variants_stage(source=path, options=options, out_variants=tmp_path / "v.parquet", out_skipped=tmp_path / "s.tsv",
                              dataset="mine")
    assert not (tmp_path / "v.parquet").exists()


def test_a_user_error_is_one_line_not_a_traceback(tmp_path):
    path = vcf(tmp_path / "u.vcf", "chr1\t10\tr1\tA\tC\t.\t.\t.\n")
    options = {**settings.dataset_defaults(), "path": path, "evaluate": True}
    with pytest.raises(SystemExit) as err:
        stages.run_logged(tmp_path / "log", stages.variants_stage, source=path, options=options,
                          out_variants=tmp_path / "v.parquet", out_skipped=tmp_path / "s.tsv")
    assert str(err.value).startswith("error: dataset") and "Traceback" not in (tmp_path / "log").read_text()


def test_cli_has_version_and_help_for_every_argument():
    out = subprocess.run([str(REPO / ".venv/bin/caduceus-vep"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "caduceus-vep" in out.stdout
    from caduceus_vep.cli import _parser

    score = next(a for a in _parser()._subparsers._group_actions[0].choices.items() if a[0] == "score")[1]
    missing = [a.dest for a in score._actions if not a.help and a.dest != "help"]
    assert not missing, missing
