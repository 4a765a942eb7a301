rule evaluate:
    input:
        variants=f"{OUT}/variants/variants.parquet",
        windows=f"{OUT}/windows/windows.parquet",
        embeddings=f"{OUT}/embeddings/{{model}}.parquet",
    output:
        per_seed=f"{OUT}/evaluate/{{model}}.per_seed.tsv",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["evaluate"],
    threads: config["evaluate"]["threads"]
    log:
        f"{LOGS}/evaluate/{{model}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/evaluate.py"
