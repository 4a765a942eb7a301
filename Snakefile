# Caduceus variant-effect prediction: datasets -> variants -> windows -> embeddings -> zero-shot,
# classifiers and evaluation -> scores and reports. Run from the repository root:
#   snakemake --cores 2                                    (the demo, config/config.yaml)
#   snakemake --profile gpu --configfile config/paper.yaml (the paper's Fig. 4)
#   snakemake --cores 2 --configfile my.yaml               (your own datasets; never merged with the demo)
from snakemake.utils import min_version, validate

min_version("8.0")


# The demo config only when the user gives none: a user's --configfile is never merged with it
# (keys left out take the schema's defaults, or fail validation naming the key).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "config/schema/config.schema.yaml", set_default=True)


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/fetch.smk"
include: "rules/variants.smk"
include: "rules/windows.smk"
include: "rules/embed.smk"
include: "rules/zero_shot.smk"
include: "rules/evaluate.smk"
include: "rules/score.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        [score_outputs(name) for name in DATASETS],
        [report_outputs(name) for name in EVALUATED],


# `snakemake score`: per-variant scores of every dataset, without the evaluation reports.
rule score_all:
    input:
        [score_outputs(name) for name in DATASETS],
