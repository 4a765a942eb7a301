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


# The sound protocol: grouped-CV model selection, decision scores, bootstrap CIs; saves the
# fitted bucket classifiers that the score rule applies to users' VCFs.
rule evaluate_sound:
    input:
        variants=f"{OUT}/variants/variants.parquet",
        windows=f"{OUT}/windows/windows.parquet",
        embeddings=f"{OUT}/embeddings/{{model}}.parquet",
    output:
        table=f"{OUT}/evaluate/{{model}}.sound.tsv",
        scores=f"{OUT}/evaluate/{{model}}.sound_scores.tsv",
        classifiers=f"{OUT}/evaluate/{{model}}.sound_models.joblib",
        sidecar=f"{OUT}/evaluate/{{model}}.sound_models.joblib.json",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        settings=config["evaluate"],
        windows=config["windows"],
    threads: config["evaluate"]["threads"]
    log:
        f"{LOGS}/evaluate_sound/{{model}}.log",
    benchmark:
        f"{BENCH}/evaluate_sound/{{model}}.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/evaluate_sound.py"
