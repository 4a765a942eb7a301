"""Rule embed_merge: gather one model's shard files (each kept variant once)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "embed_merge_stage")  # noqa: F821
