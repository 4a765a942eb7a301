# One job per model; the gpu profile gives this rule gpu=1, which makes it require CUDA.
rule embed:
    input:
        windows=f"{OUT}/windows/windows.parquet",
        fasta=config["genome"]["fasta"],
        fai=genome_index(config["genome"]["fasta"]),
    output:
        f"{OUT}/embeddings/{{model}}.parquet",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["embed"],
    threads: config["embed"]["threads"]
    resources:
        gpu=0,
        mem_mb=8000,
    log:
        f"{LOGS}/embed/{{model}}.log",
    benchmark:
        f"{BENCH}/embed/{{model}}.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/embed.py"
