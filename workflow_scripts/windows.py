"""Rule windows: check variants against the genome and record their windows."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "windows_stage")  # noqa: F821
