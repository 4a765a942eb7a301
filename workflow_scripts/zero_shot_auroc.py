"""Rule zero_shot_auroc: AUROC per bucket of the zero-shot scores on the test split."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "zero_shot_auroc_stage")  # noqa: F821
