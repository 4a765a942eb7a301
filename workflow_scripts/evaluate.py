"""Rule evaluate: the paper's SVM protocol per TSS-distance bucket for one model."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "evaluate_stage")  # noqa: F821
