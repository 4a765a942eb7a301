"""Rule report: the VEP tables, figures and provenance of an evaluated dataset."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "report_stage")  # noqa: F821
