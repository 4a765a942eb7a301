# Caduceus variant-effect prediction: variants -> windows -> embeddings -> SVM evaluation -> report.
# Run from the repository root:  snakemake --cores 2   (demo)   |   snakemake --profile gpu --configfile config/paper.yaml
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "config/schema/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/fetch.smk"
include: "rules/variants.smk"
include: "rules/windows.smk"
include: "rules/embed.smk"
include: "rules/evaluate.smk"
include: "rules/zero_shot.smk"
include: "rules/score.smk"
include: "rules/report.smk"


rule all:
    input:
        REPORT_OUTPUTS,
    default_target: True
