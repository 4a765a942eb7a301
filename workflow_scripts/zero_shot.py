"""Rule zero_shot: zero-shot scores (MLM LLR unmasked and masked, embedding distances) of every variant."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "zero_shot_stage")  # noqa: F821
