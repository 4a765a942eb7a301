"""Rule prepare_genome: a downloaded gzip/bgzip/plain FASTA into a plain FASTA plus .fai."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
from caduceus_vep import fetch  # noqa: E402

stages.run_logged(sm.log[0], fetch.prepare_fasta, sm.input.archive, sm.output.fasta)
