# Classifiers on a labelled dataset (evaluate: true): the paper's SVM protocol per TSS-distance bucket.
# One job per model computes its own result row and its `evaluate.extra_rows` (e.g. "Caduceus w/o
# Equiv." from the Ph features), all from the model's one feature file.
from caduceus_vep.evaluate import table_rows

# Checked when the workflow is planned: extra rows name configured models, row names are unique.
TABLE_ROWS = table_rows(config["models"], config["evaluate"]["extra_rows"])


rule evaluate:
    input:
        variants=rules.variants.output.variants,
        windows=rules.windows.output.windows,
        embeddings=rules.embed_merge.output.embeddings,
    output:
        per_seed=f"{DS}/evaluate/{{model}}.per_seed.tsv",
    log:
        f"{LOGS}/{{dataset}}/evaluate/{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/evaluate/{{model}}.tsv"
    conda:
        ENV
    threads: config["evaluate"]["threads"]
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["evaluate"],
    script:
        "../workflow_scripts/evaluate.py"


# The sound protocol: grouped-CV model selection, decision scores, bootstrap CIs; saves the fitted
# bucket classifiers as a pickle-free bundle (.cvep.npz) that scores any dataset, in this run or another.
rule evaluate_sound:
    input:
        variants=rules.variants.output.variants,
        windows=rules.windows.output.windows,
        embeddings=rules.embed_merge.output.embeddings,
        model_record=rules.fetch_model.output.record,
    output:
        table=f"{DS}/evaluate/{{model}}.sound.tsv",
        scores=f"{DS}/evaluate/{{model}}.sound_scores.tsv",
        bundle=f"{DS}/classifiers/{{model}}.cvep.npz",
    log:
        f"{LOGS}/{{dataset}}/evaluate_sound/{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/evaluate_sound/{{model}}.tsv"
    conda:
        ENV
    threads: config["evaluate"]["threads"]
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["evaluate"],
    script:
        "../workflow_scripts/evaluate_sound.py"
