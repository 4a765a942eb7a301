# Shared names: the run's output folder, the models, and the paths every rule agrees on.
RUN = config["run_name"]
OUT = f"results/{RUN}"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
MODELS = {m["name"]: m for m in config["models"]}
ENV = "../envs/caduceus-vep.yaml"


wildcard_constraints:
    model="|".join(MODELS),


REPORT_OUTPUTS = [
    f"{OUT}/tables/vep_auroc.tsv",
    f"{OUT}/tables/vep_auroc.md",
    f"{OUT}/tables/vep_auroc_per_seed.tsv",
    f"{OUT}/figures/vep_auroc.png",
    f"{OUT}/provenance.json",
    f"{OUT}/tables/vep_auroc_sound.tsv",
    f"{OUT}/tables/vep_reference.tsv",
    f"{OUT}/figures/roc_sound.png",
]
# Scoring a user's VCF (rules/score.smk; target `score_vcf`, not part of `all`).
SCORE_NAME = config["score"]["name"]
SCORE_OUTPUTS = [
    f"{OUT}/score/{SCORE_NAME}.scores.tsv",
    f"{OUT}/score/{SCORE_NAME}.scored.vcf",
    f"{OUT}/score/{SCORE_NAME}.skipped.tsv",
    f"{OUT}/score/{SCORE_NAME}.auroc.tsv",
]


# Embedding shards: each model's kept variants are split into EMBED_SHARDS contiguous index ranges
# (caduceus_vep.shards.shard_bounds), one job each; embed_merge gathers them. (Kept above
# genome_index: --lint's path-composition check pairs its `+ ".fai"` with any later quoted path.)
EMBED_SHARDS = int(config["embed"].get("shards", 1))


def embed_shard_files(wildcards):
    return [f"{OUT}/embeddings/shards/{wildcards.model}/{k}-of-{EMBED_SHARDS}.parquet" for k in range(EMBED_SHARDS)]


def genome_index(fasta):
    return fasta + ".fai"
