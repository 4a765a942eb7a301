"""Rule embed: pooled features for one shard of a dataset's kept variants, one model per job."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir)))  # noqa: F821

from _adapter import run  # noqa: E402

run(snakemake, "embed_shard_stage")  # noqa: F821
