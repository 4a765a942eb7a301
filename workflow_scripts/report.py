"""Rule report: the VEP table (TSV, Markdown), the bar chart and the provenance JSON."""
import sys
from pathlib import Path

# Import the library from this checkout, so the workflow also runs under --use-conda without installing it.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from caduceus_vep import stages  # noqa: E402

sm = snakemake  # noqa: F821
outputs = dict(zip(["table_tsv", "table_md", "per_seed", "figure", "provenance"], sm.output))
inputs = {"variants": sm.input.variants_source, "genome_fasta": sm.input.fasta}
stages.run_logged(sm.log[0], stages.report_stage, list(sm.input.per_seed), list(sm.input.embeddings), sm.params.config, inputs,
                  outputs, sm.params.workflow_dir)
