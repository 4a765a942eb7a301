# Per-variant scores of a dataset: zero-shot scores of every model, classifier probabilities when the
# dataset names classifier bundles, its evaluation (AUROC) when labelled; a bgzipped, tabix-indexed
# scored VCF, parquet + TSV keyed by the user's ID and the variant id, and every skipped record.
rule score:
    input:
        source=dataset_source,
        variants=rules.variants.output.variants,
        variants_skipped=rules.variants.output.skipped,
        windows=rules.windows.output.windows,
        windows_skipped=rules.windows.output.skipped,
        zero_shot=(
            expand(rules.zero_shot.output.scores, model=MODELS, allow_missing=True)
            if ZERO_SHOT
            else []
        ),
        embeddings=lambda wildcards: expand(
            rules.embed_merge.output.embeddings,
            model=dataset_models(wildcards),
            dataset=wildcards.dataset,
        ),
        classifiers=classifier_bundles,
        model_records=expand(rules.fetch_model.output.record, model=MODELS),
    output:
        parquet=f"{DS}/scores/{{dataset}}.scores.parquet",
        tsv=f"{DS}/scores/{{dataset}}.scores.tsv",
        vcf=f"{DS}/scores/{{dataset}}.scored.vcf.gz",
        tbi=f"{DS}/scores/{{dataset}}.scored.vcf.gz.tbi",
        skipped=f"{DS}/scores/{{dataset}}.skipped.tsv",
        auroc=f"{DS}/scores/{{dataset}}.auroc.tsv",
        provenance=f"{DS}/scores/{{dataset}}.provenance.json",
    log:
        f"{LOGS}/{{dataset}}/score.log",
    benchmark:
        f"{BENCH}/{{dataset}}/score.tsv"
    conda:
        ENV
    threads: config["evaluate"]["threads"]
    params:
        dataset=lambda wildcards: wildcards.dataset,
        options=lambda wildcards: DATASETS[wildcards.dataset],
        models=list(MODELS.values()),
        settings=config["evaluate"],
        config=dataset_config,
    script:
        "../workflow_scripts/score.py"
