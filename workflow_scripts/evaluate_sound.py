"""Rule evaluate_sound: the sound SVM protocol for one model; saves the classifier bundle."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "evaluate_sound_stage")  # noqa: F821
