# Score a user's VCF (config `score`) with the sound-protocol classifiers trained by this run.
# Not part of `all`: run it with `snakemake --cores 2 score_vcf`; defined only when score.vcf is set.
if config["score"]["vcf"]:

    rule score_vcf:
        input:
            vcf=config["score"]["vcf"],
            fasta=config["genome"]["fasta"],
            fai=genome_index(config["genome"]["fasta"]),
            classifiers=expand(f"{OUT}/evaluate/{{model}}.sound_models.joblib", model=MODELS),
        output:
            SCORE_OUTPUTS,
        params:
            options={k: config["score"].get(k) for k in ("label_info", "distance_info", "tissue")},
            embed=config["embed"],
            zero_shot=config["zero_shot"],
            sound=config["evaluate"].get("sound", {}),
            workdir=f"{OUT}/score/{SCORE_NAME}.work",
        threads: config["zero_shot"]["threads"]
        log:
            f"{LOGS}/score/{SCORE_NAME}.log",
        benchmark:
            f"{BENCH}/score/{SCORE_NAME}.tsv"
        conda:
            ENV
        script:
            "../workflow_scripts/score.py"
