# Shared names: the run's output folder, the datasets and models, and the paths every rule agrees on.
# Each variant set is a dataset ({dataset} wildcard, as in TraitGym): results/<run_name>/<dataset>/.
from caduceus_vep.modelspec import resolve_model_entries, run_context_length
from caduceus_vep.settings import check_config
from caduceus_vep.variants import EQTL_COLUMNS

check_config(config)

RUN = config["run_name"]
OUT = f"results/{RUN}"
DS = f"{OUT}/{{dataset}}"
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
# Each model's context_length defaults to windows.context_length; the windows stage uses the largest
# (RUN_CONTEXT), so every model scores the same variants; each embed job cuts its own centred slice.
MODELS = {m["name"]: m for m in resolve_model_entries(config)}
RUN_CONTEXT = run_context_length(config)
DATASETS = config["datasets"]
EVALUATED = [name for name, d in DATASETS.items() if d["evaluate"]]
ZERO_SHOT = config["zero_shot"]["enabled"]
TSS_GTF = config["tss"]["gtf"] if config.get("tss") else None
FASTA = config["genome"]["fasta"]
ENV = "../envs/caduceus-vep.yaml"


wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(DATASETS),


# Embedding shards: each model's kept variants are split into EMBED_SHARDS contiguous index ranges
# (caduceus_vep.shards.shard_bounds), one job each; embed_merge gathers them.
EMBED_SHARDS = config["embed"]["shards"]


def genome_index(fasta):
    """The index files of a FASTA: .fai, plus .gzi for a bgzipped one."""
    return (
        [f"{fasta}.fai", f"{fasta}.gzi"]
        if fasta.endswith((".gz", ".bgz"))
        else [f"{fasta}.fai"]
    )


def dataset_source(wildcards):
    return DATASETS[wildcards.dataset]["path"]


def dataset_expectation(dataset):
    """What a downloaded dataset's content must look like (caduceus_vep.fetch `expect`)."""
    if dataset["format"] == "eqtl_table" or dataset["path"].endswith("All_Tissues.csv"):
        return f"csv_header:{','.join(EQTL_COLUMNS)}"
    return None


def dataset_models(wildcards):
    """Models whose classifier bundles score this dataset, in MODELS order (none when classifiers is null)."""
    return list(MODELS) if DATASETS[wildcards.dataset]["classifiers"] else []


def classifier_bundles(wildcards):
    """Bundle files for the dataset's `classifiers` key: trained on a dataset of this run, or given by path."""
    chosen = DATASETS[wildcards.dataset]["classifiers"]
    if not chosen:
        return []
    if isinstance(chosen, str):
        return [f"{OUT}/{chosen}/classifiers/{m}.cvep.npz" for m in MODELS]
    return [chosen[m] for m in MODELS if m in chosen]


def dataset_config(wildcards):
    """The config as one dataset's provenance records it: without the other datasets, so that adding or
    changing another dataset never re-runs this one's report or scores."""
    chosen = DATASETS[wildcards.dataset]["classifiers"]
    keep = [wildcards.dataset] + ([chosen] if isinstance(chosen, str) else [])
    return {**config, "datasets": {name: DATASETS[name] for name in keep}}


def report_outputs(dataset):
    base = f"{OUT}/{dataset}"
    return [
        f"{base}/tables/vep_auroc.tsv",
        f"{base}/tables/vep_auroc.md",
        f"{base}/figures/vep_auroc.png",
        f"{base}/provenance.json",
    ]


def score_outputs(dataset):
    base = f"{OUT}/{dataset}/scores/{dataset}"
    return [
        f"{base}.scores.parquet",
        f"{base}.scores.tsv",
        f"{base}.scored.vcf.gz",
        f"{base}.scored.vcf.gz.tbi",
        f"{base}.skipped.tsv",
    ]


def model_files(wildcards):
    """A local checkpoint folder's files (so edited weights re-run what depends on them); none for a Hub id."""
    path = MODELS[wildcards.model]["path"]
    return [f"{path}/config.json"] if os.path.isdir(path) else []


def embed_shard_files(wildcards):
    return expand(
        rules.embed.output.features, shard=range(EMBED_SHARDS), allow_missing=True
    )
