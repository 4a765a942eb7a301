"""Rule index_genome: index a plain or bgzipped FASTA (.fai, .gzi)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "index_genome_stage")  # noqa: F821
