# Zero-shot scores (no training) for every variant of a dataset: MLM log-likelihood ratio at the
# SNP, unmasked and with the SNP masked, and the embedding distances; one model load per job.
rule zero_shot:
    input:
        windows=rules.windows.output.windows,
        fasta=FASTA,
        index=genome_index(FASTA),
        embeddings=rules.embed_merge.output.embeddings,
        model_record=rules.fetch_model.output.record,
    output:
        scores=f"{DS}/zero_shot/{{model}}.parquet",
    log:
        f"{LOGS}/{{dataset}}/zero_shot/{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/zero_shot/{{model}}.tsv"
    conda:
        ENV
    threads: config["zero_shot"]["threads"]
    resources:
        gpu=0,
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["zero_shot"],
    script:
        "../workflow_scripts/zero_shot.py"


# AUROC of the zero-shot scores on an evaluated dataset's test split, per TSS-distance bucket.
rule zero_shot_auroc:
    input:
        variants=rules.variants.output.variants,
        windows=rules.windows.output.windows,
        scores=rules.zero_shot.output.scores,
    output:
        auroc=f"{DS}/zero_shot/{{model}}.auroc.tsv",
    log:
        f"{LOGS}/{{dataset}}/zero_shot/{{model}}.auroc.log",
    localrule: True
    conda:
        ENV
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["evaluate"],
    script:
        "../workflow_scripts/zero_shot_auroc.py"
