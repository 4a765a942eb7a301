"""Rule embed: pooled Caduceus features for one shard of the kept variants, one model per job."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
# A job given gpu=1 (the gpu profile) must run on CUDA; it fails clearly rather than crawl on CPU.
require_gpu = int(sm.resources.get("gpu", 0)) > 0
stages.run_logged(sm.log[0], stages.embed_shard_stage, sm.input.windows, sm.input.fasta, sm.params.model, sm.params.settings,
                  int(sm.wildcards.shard), sm.params.shards, sm.output[0], sm.params.work_dir,
                  threads=sm.threads, require_gpu=require_gpu)
