"""Rule variants: normalise a dataset's variant file to one row per (variant, tissue)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "variants_stage")  # noqa: F821
