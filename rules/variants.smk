rule variants:
    input:
        config["variants"]["path"],
    output:
        variants=f"{OUT}/variants/variants.parquet",
        skipped=f"{OUT}/variants/skipped.tsv",
    params:
        options=config["variants"],
    log:
        f"{LOGS}/variants.log",
    benchmark:
        f"{BENCH}/variants.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/variants.py"
