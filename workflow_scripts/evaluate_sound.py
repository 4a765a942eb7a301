"""Rule evaluate_sound: the sound SVM protocol for one model; saves the fitted bucket classifiers."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
outputs = {"table": sm.output.table, "scores": sm.output.scores, "classifiers": sm.output.classifiers}
stages.run_logged(sm.log[0], stages.evaluate_sound_stage, sm.input.variants, sm.input.windows, sm.input.embeddings, sm.params.model,
                  sm.params.settings, sm.params.windows, outputs, threads=sm.threads)
