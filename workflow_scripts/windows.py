"""Rule windows: check variants against the genome and record their context/pooling windows."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
stages.run_logged(sm.log[0], stages.windows_stage, sm.input.variants, sm.input.fasta, sm.params.spec, sm.output.windows, sm.output.skipped,
                  source=sm.params.source, out_flags=sm.output.flags)
