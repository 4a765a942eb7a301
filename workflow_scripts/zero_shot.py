"""Rule zero_shot: MLM log-likelihood ratios and embedding distances of the test variants, AUROC per bucket."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
stages.run_logged(sm.log[0], stages.zero_shot_stage, sm.input.variants, sm.input.windows, sm.input.fasta, sm.input.embeddings,
                  sm.params.model, sm.params.settings, sm.params.evaluate, {"scores": sm.output.scores, "auroc": sm.output.auroc},
                  threads=sm.threads, require_gpu=int(sm.resources.get("gpu", 0)) > 0)
