"""Rule report: the VEP tables (paper, sound, zero-shot, published values), figures and provenance JSON."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
outputs = {name: sm.output[name] for name in ["table_tsv", "table_md", "per_seed", "figure", "provenance", "sound_tsv",
                                              "reference_tsv", "roc_figure"]}
inputs = {"variants": sm.input.variants_source, "genome_fasta": sm.input.fasta}
if sm.input.tss:
    inputs["tss_gtf"] = sm.input.tss
stages.run_logged(sm.log[0], stages.report_stage, list(sm.input.per_seed), list(sm.input.embeddings), sm.params.config, inputs,
                  outputs, sm.params.workflow_dir, sound_paths=list(sm.input.sound), sound_score_paths=list(sm.input.sound_scores),
                  zero_shot_paths=list(sm.input.zero_shot), reference_values=sm.input.reference_values)
