"""Rule embed_merge: gather one model's shard files into embeddings/<model>.parquet (each kept variant once)."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
stages.run_logged(sm.log[0], stages.embed_merge_stage, list(sm.input.shards), sm.input.windows, sm.input.variants, sm.output[0])
