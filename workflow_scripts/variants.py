"""Rule variants: normalise the input table or VCF to one row per (variant, tissue)."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
stages.run_logged(sm.log[0], stages.variants_stage, sm.input.variants, sm.params.options, sm.output.variants, sm.output.skipped,
                  tss_gtf=str(sm.input.tss) if sm.input.tss else None)  # input tss is [] without a tss section
