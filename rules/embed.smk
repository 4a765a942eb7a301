# Scatter: one `embed` job per (model, shard) -- the unit that gets a GPU (gpu=1 in the gpu and
# slurm profiles; a job given gpu=1 requires CUDA). Each job checkpoints finished chunks in its work
# folder (not a declared output, so --rerun-incomplete keeps it) and reuses the feature cache.
# Gather: `embed_merge` checks that every kept variant has features exactly once.
rule embed:
    input:
        windows=f"{OUT}/windows/windows.parquet",
        fasta=config["genome"]["fasta"],
        fai=genome_index(config["genome"]["fasta"]),
    output:
        # temp: once merged, the shard files are only a copy (the cache keeps the features).
        temp(f"{OUT}/embeddings/shards/{{model}}/{{shard}}-of-{EMBED_SHARDS}.parquet"),
    wildcard_constraints:
        shard=r"\d+",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["embed"],
        shards=EMBED_SHARDS,
        work_dir=lambda wildcards: f"{OUT}/embeddings/work/{wildcards.model}/shard-{wildcards.shard}-of-{EMBED_SHARDS}",
    threads: config["embed"]["threads"]
    resources:
        gpu=0,
        mem_mb=8000,
    log:
        f"{LOGS}/embed/{{model}}.shard-{{shard}}-of-{EMBED_SHARDS}.log",
    benchmark:
        f"{BENCH}/embed/{{model}}.shard-{{shard}}-of-{EMBED_SHARDS}.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/embed.py"


# Cheap (reads and rewrites a few MB per model): runs on the submitting machine under Slurm.
localrules:
    embed_merge,


rule embed_merge:
    input:
        shards=embed_shard_files,
        windows=f"{OUT}/windows/windows.parquet",
        variants=f"{OUT}/variants/variants.parquet",
    output:
        f"{OUT}/embeddings/{{model}}.parquet",
    log:
        f"{LOGS}/embed/{{model}}.merge.log",
    benchmark:
        f"{BENCH}/embed/{{model}}.merge.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/embed_merge.py"
