PROTOCOLS = config["evaluate"].get("protocols", ["paper", "sound"])


rule report:
    input:
        per_seed=expand(f"{OUT}/evaluate/{{model}}.per_seed.tsv", model=MODELS) if "paper" in PROTOCOLS else [],
        sound=expand(f"{OUT}/evaluate/{{model}}.sound.tsv", model=MODELS) if "sound" in PROTOCOLS else [],
        sound_scores=expand(f"{OUT}/evaluate/{{model}}.sound_scores.tsv", model=MODELS) if "sound" in PROTOCOLS else [],
        zero_shot=expand(f"{OUT}/zero_shot/{{model}}.auroc.tsv", model=MODELS) if config["zero_shot"]["enabled"] else [],
        embeddings=expand(f"{OUT}/embeddings/{{model}}.parquet", model=MODELS),
        variants_skipped=f"{OUT}/variants/skipped.tsv",
        windows_skipped=f"{OUT}/windows/skipped.tsv",
        variants=f"{OUT}/variants/variants.parquet",
        windows=f"{OUT}/windows/windows.parquet",
        variants_source=config["variants"]["path"],
        fasta=config["genome"]["fasta"],
        tss=TSS_GTF or [],
        reference_values="resources/reference_values.tsv",
    output:
        table_tsv=report(f"{OUT}/tables/vep_auroc.tsv", caption="../report/vep_auroc_tsv.rst", category="Tables"),
        table_md=report(f"{OUT}/tables/vep_auroc.md", caption="../report/vep_auroc_md.rst", category="Tables"),
        per_seed=report(f"{OUT}/tables/vep_auroc_per_seed.tsv", caption="../report/per_seed.rst", category="Tables"),
        figure=report(f"{OUT}/figures/vep_auroc.png", caption="../report/vep_auroc_png.rst", category="Figures"),
        provenance=report(f"{OUT}/provenance.json", caption="../report/provenance.rst", category="Provenance"),
        sound_tsv=report(f"{OUT}/tables/vep_auroc_sound.tsv", caption="../report/sound_tsv.rst", category="Tables"),
        reference_tsv=report(f"{OUT}/tables/vep_reference.tsv", caption="../report/reference.rst", category="Tables"),
        roc_figure=report(f"{OUT}/figures/roc_sound.png", caption="../report/roc_sound.rst", category="Figures"),
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
