"""Rule fetch_model: download a Hub checkpoint or check a local folder; record where it is."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "fetch_model_stage")  # noqa: F821
