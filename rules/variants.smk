# Normalise a dataset's variant file to one row per (variant, tissue); TSS distances are computed
# from `tss.gtf` where the input lacks them. A dataset with evaluate: true must carry 0/1 labels.
rule variants:
    input:
        source=dataset_source,
        tss=TSS_GTF or [],
    output:
        variants=f"{DS}/variants/variants.parquet",
        skipped=f"{DS}/variants/skipped.tsv",
    log:
        f"{LOGS}/{{dataset}}/variants.log",
    benchmark:
        f"{BENCH}/{{dataset}}/variants.tsv"
    conda:
        ENV
    params:
        options=lambda wildcards: DATASETS[wildcards.dataset],
        dataset=lambda wildcards: wildcards.dataset,
    script:
        "../workflow_scripts/variants.py"
