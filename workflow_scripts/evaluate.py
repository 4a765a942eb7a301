"""Rule evaluate: the paper's SVM protocol per TSS-distance bucket for one model."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
stages.run_logged(sm.log[0], stages.evaluate_stage, sm.input.variants, sm.input.windows, sm.input.embeddings, sm.params.model,
                  sm.params.settings, sm.output.per_seed, threads=sm.threads)
