# Zero-shot scores (no training): MLM log-likelihood ratio at the SNP and embedding distances,
# for the test variants, with AUROC per bucket.
rule zero_shot:
    input:
        variants=f"{OUT}/variants/variants.parquet",
        windows=f"{OUT}/windows/windows.parquet",
        embeddings=f"{OUT}/embeddings/{{model}}.parquet",
        fasta=config["genome"]["fasta"],
        fai=genome_index(config["genome"]["fasta"]),
    output:
        scores=f"{OUT}/zero_shot/{{model}}.scores.tsv",
        auroc=f"{OUT}/zero_shot/{{model}}.auroc.tsv",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["zero_shot"],
        evaluate=config["evaluate"],
    threads: config["zero_shot"]["threads"]
    resources:
        gpu=0,
    log:
        f"{LOGS}/zero_shot/{{model}}.log",
    benchmark:
        f"{BENCH}/zero_shot/{{model}}.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/zero_shot.py"
