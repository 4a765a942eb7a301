"""Rule score_vcf: score the configured VCF with this run's sound-protocol classifiers and zero-shot scores."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
outputs = dict(zip(["tsv", "vcf", "skipped", "auroc"], sm.output))
sound = sm.params.sound or {}
stages.run_logged(sm.log[0], stages.score_stage, sm.input.vcf, sm.input.fasta, list(sm.input.classifiers), sm.params.options,
                  outputs, sm.params.workdir, embed_settings=sm.params.embed, zero_shot_settings=sm.params.zero_shot,
                  threads=sm.threads, bootstrap=int(sound.get("bootstrap", 1000)), seed=int(sound.get("seed", 1)))
