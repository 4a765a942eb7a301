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
]


def genome_index(fasta):
    return fasta + ".fai"
