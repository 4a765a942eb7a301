"""Rule fetch_file: download one file (resume, retries, checksum) and record its provenance."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "fetch_file_stage")  # noqa: F821
