"""Rule prepare_genome: a downloaded gzip/bgzip/plain FASTA into a FASTA plus .fai."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "prepare_genome_stage")  # noqa: F821
