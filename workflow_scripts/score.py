"""Rule score: per-variant scores of a dataset (scored VCF, parquet, TSV, skipped records)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "score_stage")  # noqa: F821
