# The VEP tables (paper, sound, zero-shot, published values), figures and provenance of an
# evaluated dataset; the HTML report (`snakemake --report`) collects them with their captions.
PROTOCOLS = config["evaluate"]["protocols"]


rule report:
    input:
        per_seed=(
            expand(rules.evaluate.output.per_seed, model=MODELS, allow_missing=True)
            if "paper" in PROTOCOLS
            else []
        ),
        sound=(
            expand(rules.evaluate_sound.output.table, model=MODELS, allow_missing=True)
            if "sound" in PROTOCOLS
            else []
        ),
        sound_scores=(
            expand(
                rules.evaluate_sound.output.scores, model=MODELS, allow_missing=True
            )
            if "sound" in PROTOCOLS
            else []
        ),
        zero_shot=(
            expand(
                rules.zero_shot_auroc.output.auroc, model=MODELS, allow_missing=True
            )
            if ZERO_SHOT
            else []
        ),
        embeddings=expand(
            rules.embed_merge.output.embeddings, model=MODELS, allow_missing=True
        ),
        model_records=expand(rules.fetch_model.output.record, model=MODELS),
        variants_skipped=rules.variants.output.skipped,
        windows_skipped=rules.windows.output.skipped,
        variants=rules.variants.output.variants,
        windows=rules.windows.output.windows,
        source=dataset_source,
        fasta=FASTA,
        tss=TSS_GTF or [],
        reference_values="resources/reference_values.tsv",
    output:
        table_tsv=report(
            f"{DS}/tables/vep_auroc.tsv",
            caption="../report/vep_auroc_tsv.rst",
            category="Tables",
        ),
        table_md=report(
            f"{DS}/tables/vep_auroc.md",
            caption="../report/vep_auroc_md.rst",
            category="Tables",
        ),
        per_seed=report(
            f"{DS}/tables/vep_auroc_per_seed.tsv",
            caption="../report/per_seed.rst",
            category="Tables",
        ),
        figure=report(
            f"{DS}/figures/vep_auroc.png",
            caption="../report/vep_auroc_png.rst",
            category="Figures",
        ),
        provenance=report(
            f"{DS}/provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
        sound_tsv=report(
            f"{DS}/tables/vep_auroc_sound.tsv",
            caption="../report/sound_tsv.rst",
            category="Tables",
        ),
        reference_tsv=report(
            f"{DS}/tables/vep_reference.tsv",
            caption="../report/reference.rst",
            category="Tables",
        ),
        roc_figure=report(
            f"{DS}/figures/roc_sound.png",
            caption="../report/roc_sound.rst",
            category="Figures",
        ),
        fig4_tsv=report(
            f"{DS}/tables/vep_fig4.tsv",
            caption="../report/fig4.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/{{dataset}}/report.log",
    benchmark:
        f"{BENCH}/{{dataset}}/report.tsv"
    localrule: True
    conda:
        ENV
    params:
        dataset=lambda wildcards: wildcards.dataset,
        config=dataset_config,
        workflow_dir=workflow.basedir,
    script:
        "../workflow_scripts/report.py"
