"""The shipped configs validate; bad values are rejected naming the key; every key is documented."""

import copy

import jsonschema
import pytest
import yaml
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config/schema/config.schema.yaml").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(name):
    jsonschema.validate(load(name), SCHEMA)


def test_paper_config_is_the_paper_protocol():
    config = load("paper.yaml")
    assert config["windows"] == {"context_length": 131072, "pooling_window": 1536, "max_n_fraction": 0.005}
    models = {m["name"]: m for m in config["models"]}
    assert {n: m["rc_rule"] for n, m in models.items() if n.startswith("caduceus")} == {"caduceus_ps": "ps", "caduceus_ph": "ph"}
    assert all("131k_d_model-256_n_layer-16" in m["path"] for n, m in models.items() if n.startswith("caduceus"))
    # The paper's baselines with their contexts, forward features only.
    assert models["hyenadna"]["path"] == "LongSafari/hyenadna-medium-160k-seqlen-hf"
    assert models["ntv2"]["path"] == "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"
    assert models["enformer"]["path"] == "EleutherAI/enformer-official-rough"
    assert [models[n]["context_length"] for n in ("hyenadna", "ntv2", "enformer")] == [131072, 12288, 196608]
    assert {models[n]["rc_rule"] for n in ("hyenadna", "ntv2", "enformer")} == {"forward"}
    assert config["evaluate"]["train_subsample"] == 5000
    assert "variant_effect_causal_eqtl/All_Tissues.csv" in config["datasets"]["eqtl"]["url"]
    assert config["datasets"]["eqtl"]["evaluate"] is True
    assert config["genome"]["url"].endswith("hg38.fa.gz")


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("windows", "context_length"), 1537, "context_length"),
        (("embed", "device"), "tpu", "device"),
        (("models", 0, "rc_rule"), "both", "rc_rule"),
        (("evaluate", "c_grid"), [0], "c_grid"),
        (("run_name",), "my run", "run_name"),
    ],
)
def test_invalid_values_name_the_key(path, value, key):
    config = copy.deepcopy(load("config.yaml"))
    target = config
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(config, SCHEMA)
    assert key in str(list(err.value.absolute_path)) or key in err.value.message


def test_unknown_key_rejected():
    config = load("config.yaml")
    config["windows"]["contextlength"] = 10
    with pytest.raises(jsonschema.ValidationError, match="contextlength"):
        jsonschema.validate(config, SCHEMA)


def schema_keys(schema: dict) -> set[str]:
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(name)
        keys |= schema_keys(sub)
        if "items" in sub and isinstance(sub["items"], dict):
            keys |= schema_keys(sub["items"])
    return keys


def test_every_key_is_documented():
    readme = (REPO / "config/README.md").read_text()
    missing = sorted(k for k in schema_keys(SCHEMA) if f"`{k}`" not in readme)
    assert not missing, f"undocumented config keys: {missing}"
