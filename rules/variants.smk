# TSS distances are computed from the `tss.gtf` annotation where the input lacks them (config/README.md).
TSS_GTF = (config.get("tss") or {}).get("gtf")


rule variants:
    input:
        variants=config["variants"]["path"],
        tss=TSS_GTF or [],
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
