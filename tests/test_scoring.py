import json

import numpy as np
import pandas as pd
import pysam
import pytest
import sklearn

from caduceus_vep import scoring, sound
from conftest import REPO
from test_evaluate import synthetic
from test_sound import settings, with_chrom


@pytest.fixture
def bundle_path(tmp_path):
    rows, ids, m = synthetic(n_variants=180, signal_in="both")
    result = sound.sound_protocol(with_chrom(rows), ids, m, model="toy", rc_rule="ps", settings=settings(bootstrap=0))
    path = tmp_path / "toy.sound_models.joblib"
    scoring.save_classifiers(result, path, {"model": {"name": "toy"}, "windows": {"context_length": 64, "pooling_window": 64}})
    return path, m


def test_saved_classifiers_round_trip_with_sidecar(bundle_path):
    path, m = bundle_path
    sidecar = json.loads((path.parent / (path.name + ".json")).read_text())
    assert sidecar["sklearn_version"] == sklearn.__version__ and sidecar["model"]["name"] == "toy"
    assert sidecar["feature_layout"]["tissue_onehot"] == ["Blood", "Liver"]
    assert all(len(b["train_sha256"]) == 64 for b in sidecar["buckets"])
    bundle = scoring.load_classifiers(path)
    probs = scoring.predict(bundle, m, "NA")  # unseen tissue: averaged over the training tissues
    p = probs["0-30kb"]
    assert ((p >= 0) & (p <= 1)).all()
    informative = m["ref_fwd"][:, 0]
    assert np.corrcoef(p, informative)[0, 1] > 0.5  # the planted signal drives the probability
    assert scoring.bucket_key(">100kb") == "gt100kb" and scoring.bucket_key("0-30kb") == "0_30kb"
    bundle["sidecar"]["sklearn_version"] = "0.0"


def test_scored_vcf_is_valid_and_keeps_every_record(tmp_path):
    source = REPO / "resources/demo/variants.vcf"
    first = next(iter(pysam.VariantFile(str(source))))
    variant_id = f"{first.chrom}:{first.pos}:{first.ref}:{first.alts[0]}"
    table = pd.DataFrame({"variant_id": [variant_id], "m_p": [0.25], "m_p_0_30kb": [0.25],
                          "m_llr": [-1.5], "m_l2": [0.1], "m_cosine": [np.nan]})
    n = scoring.write_scored_vcf(source, tmp_path / "out.vcf", table, ["m"], {"0-30kb": "TSS distance [0, 30000)"})
    assert n == 1
    records = list(pysam.VariantFile(str(tmp_path / "out.vcf")))
    assert len(records) == sum(1 for _ in pysam.VariantFile(str(source)))
    assert records[0].info["CVEP_M_P"] == (pytest.approx(0.25),) and records[0].info["CVEP_M_LLR"] == (pytest.approx(-1.5),)
    assert "CVEP_M_COS" not in records[0].info and "CVEP_M_P" not in records[1].info
    header = pysam.VariantFile(str(tmp_path / "out.vcf")).header
    assert header.info["CVEP_M_P_0_30kb"].number == "A"
