# Downloads (variant table, genome, GENCODE GTF), only when the config gives a url (config/paper.yaml);
# the demo uses bundled files.
# Streaming with resume, retries and checksums lives in caduceus_vep.fetch.


if config["variants"].get("url"):

    rule fetch_variants:
        output:
            table=config["variants"]["path"],
            provenance=config["variants"]["path"] + ".download.json",
        params:
            url=config["variants"]["url"],
            sha256=config["variants"].get("sha256"),
        log:
            f"{LOGS}/fetch/variants.log",
        benchmark:
            f"{BENCH}/fetch_variants.tsv"
        conda:
            ENV
        script:
            "../workflow_scripts/fetch_file.py"


if config["genome"].get("url"):

    rule fetch_genome:
        output:
            archive=config["genome"]["fasta"] + ".download",
            provenance=config["genome"]["fasta"] + ".download.json",
        params:
            url=config["genome"]["url"],
            sha256=config["genome"].get("sha256"),
        log:
            f"{LOGS}/fetch/genome.log",
        benchmark:
            f"{BENCH}/fetch_genome.tsv"
        conda:
            ENV
        script:
            "../workflow_scripts/fetch_file.py"

    rule prepare_genome:
        input:
            archive=config["genome"]["fasta"] + ".download",
        output:
            fasta=config["genome"]["fasta"],
            fai=genome_index(config["genome"]["fasta"]),
        log:
            f"{LOGS}/fetch/prepare_genome.log",
        benchmark:
            f"{BENCH}/prepare_genome.tsv"
        conda:
            ENV
        script:
            "../workflow_scripts/prepare_genome.py"


if (config.get("tss") or {}).get("url"):

    rule fetch_tss:
        output:
            gtf=config["tss"]["gtf"],
            provenance=config["tss"]["gtf"] + ".download.json",
        params:
            url=config["tss"]["url"],
            sha256=config["tss"].get("sha256"),
        log:
            f"{LOGS}/fetch/tss.log",
        benchmark:
            f"{BENCH}/fetch_tss.tsv"
        conda:
            ENV
        script:
            "../workflow_scripts/fetch_file.py"
