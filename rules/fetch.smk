# Downloads: every dataset, the genome and the GTF that the config gives a url for (config/paper.yaml),
# and every model checkpoint (Hub ids are downloaded, local folders checked) -- all local rules, so
# compute nodes never need the internet. Streaming with resume, retries and checksums: caduceus_vep.fetch.

for _name, _dataset in DATASETS.items():
    if _dataset["url"]:

        rule:
            name:
                f"fetch_dataset_{_name}"
            output:
                table=_dataset["path"],
                provenance=f"{_dataset['path']}.download.json",
            log:
                f"{LOGS}/fetch/dataset_{_name}.log",
            benchmark:
                f"{BENCH}/fetch/dataset_{_name}.tsv"
            localrule: True
            conda:
                ENV
            params:
                url=_dataset["url"],
                sha256=_dataset["sha256"],
                # The benchmark table's header is checked before the download is accepted.
                expect=dataset_expectation(_dataset),
            script:
                "../workflow_scripts/fetch_file.py"


if config["genome"]["url"]:

    rule fetch_genome:
        output:
            archive=f"{FASTA}.download",
            provenance=f"{FASTA}.download.json",
        log:
            f"{LOGS}/fetch/genome.log",
        benchmark:
            f"{BENCH}/fetch/genome.tsv"
        localrule: True
        conda:
            ENV
        params:
            url=config["genome"]["url"],
            sha256=config["genome"]["sha256"],
            expect="fasta",
        script:
            "../workflow_scripts/fetch_file.py"

    rule prepare_genome:
        input:
            archive=rules.fetch_genome.output.archive,
        output:
            fasta=FASTA,
            fai=genome_index(FASTA)[0],
        log:
            f"{LOGS}/fetch/prepare_genome.log",
        benchmark:
            f"{BENCH}/fetch/prepare_genome.tsv"
        localrule: True
        conda:
            ENV
        script:
            "../workflow_scripts/prepare_genome.py"

else:

    # A user's FASTA (plain or bgzipped) without its index gets one (pysam faidx), instead of a
    # MissingInputException.
    rule index_genome:
        input:
            fasta=FASTA,
        output:
            index=genome_index(FASTA),
        log:
            f"{LOGS}/fetch/index_genome.log",
        localrule: True
        conda:
            ENV
        script:
            "../workflow_scripts/index_genome.py"


if TSS_GTF and config["tss"]["url"]:

    rule fetch_tss:
        output:
            gtf=TSS_GTF,
            provenance=f"{TSS_GTF}.download.json",
        log:
            f"{LOGS}/fetch/tss.log",
        benchmark:
            f"{BENCH}/fetch/tss.tsv"
        localrule: True
        conda:
            ENV
        params:
            url=config["tss"]["url"],
            sha256=config["tss"]["sha256"],
            expect="gtf",
        script:
            "../workflow_scripts/fetch_file.py"


rule fetch_model:
    input:
        model_files,
    output:
        record=f"{OUT}/models/{{model}}.json",
    log:
        f"{LOGS}/fetch/model_{{model}}.log",
    localrule: True
    conda:
        ENV
    params:
        model=lambda wildcards: MODELS[wildcards.model],
        cache_dir=config["model_cache"],
    script:
        "../workflow_scripts/fetch_model.py"
