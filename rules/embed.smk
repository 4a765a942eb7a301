# Scatter: one `embed` job per (dataset, model, shard) -- the unit that gets a GPU (gpu=1 in the gpu
# and slurm profiles; a job given gpu=1 requires CUDA). Each job checkpoints finished chunks in its
# work folder (not a declared output, so --rerun-incomplete keeps it) and reuses the feature cache,
# which is shared by all datasets: a variant already embedded for another dataset is not recomputed.
# Gather: `embed_merge` checks that every kept variant has features exactly once.
rule embed:
    input:
        windows=rules.windows.output.windows,
        fasta=FASTA,
        index=genome_index(FASTA),
        model_record=rules.fetch_model.output.record,
    output:
        # temp: once merged, the shard files are only a copy (the cache keeps the features).
        features=temp(
            f"{DS}/embeddings/shards/{{model}}/{{shard}}-of-{EMBED_SHARDS}.parquet"
        ),
    log:
        f"{LOGS}/{{dataset}}/embed/{{model}}.shard-{{shard}}-of-{EMBED_SHARDS}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/embed/{{model}}.shard-{{shard}}-of-{EMBED_SHARDS}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENV
    threads: config["embed"]["threads"]
    resources:
        gpu=0,
        mem_mb=8000,
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["embed"],
        shard=lambda wildcards: int(wildcards.shard),
        shards=EMBED_SHARDS,
        work_dir=lambda wildcards: f"{OUT}/{wildcards.dataset}/embeddings/work/{wildcards.model}/shard-{wildcards.shard}-of-{EMBED_SHARDS}",
    script:
        "../workflow_scripts/embed.py"


# Cheap (reads and rewrites a few MB per model): runs on the submitting machine under Slurm.
rule embed_merge:
    input:
        shards=embed_shard_files,
        windows=rules.windows.output.windows,
        variants=rules.variants.output.variants,
    output:
        embeddings=f"{DS}/embeddings/{{model}}.parquet",
    log:
        f"{LOGS}/{{dataset}}/embed/{{model}}.merge.log",
    benchmark:
        f"{BENCH}/{{dataset}}/embed/{{model}}.merge.tsv"
    localrule: True
    conda:
        ENV
    script:
        "../workflow_scripts/embed_merge.py"
