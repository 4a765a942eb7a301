# Check each unique variant against the genome and record its context and pooling windows; the
# window spec goes into windows.parquet's metadata, where every later stage reads it.
rule windows:
    input:
        variants=rules.variants.output.variants,
        fasta=FASTA,
        index=genome_index(FASTA),
    output:
        windows=f"{DS}/windows/windows.parquet",
        skipped=f"{DS}/windows/skipped.tsv",
        flags=f"{DS}/windows/flags.tsv",
    log:
        f"{LOGS}/{{dataset}}/windows.log",
    benchmark:
        f"{BENCH}/{{dataset}}/windows.tsv"
    conda:
        ENV
    params:
        # The largest model context of the run (models[].context_length, default windows.context_length).
        spec={**config["windows"], "context_length": RUN_CONTEXT},
        source=dataset_source,
    script:
        "../workflow_scripts/windows.py"
