rule report:
    input:
        per_seed=expand(f"{OUT}/evaluate/{{model}}.per_seed.tsv", model=MODELS),
        embeddings=expand(f"{OUT}/embeddings/{{model}}.parquet", model=MODELS),
        variants_skipped=f"{OUT}/variants/skipped.tsv",
        windows_skipped=f"{OUT}/windows/skipped.tsv",
        variants=f"{OUT}/variants/variants.parquet",
        windows=f"{OUT}/windows/windows.parquet",
        variants_source=config["variants"]["path"],
        fasta=config["genome"]["fasta"],
    output:
        REPORT_OUTPUTS,
    params:
        config=config,
        workflow_dir=workflow.basedir,
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    conda:
        ENV
    script:
        "../workflow_scripts/report.py"
