"""Classifier bundles (pickle-free, checked) and per-variant scoring: tissue-shared kernels, tables, the scored VCF."""

import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pysam
import pytest
from conftest import REPO
from test_evaluate import synthetic
from test_sound import settings, with_chrom

from caduceus_vep import bundle as bundles
from caduceus_vep import scoring, sound
from caduceus_vep.feature_file import FeatureBlock, write_block
from caduceus_vep.windows import WindowSpec

META = {"model": {"name": "toy", "weights_sha256": "a" * 64}, "windows": {"context_length": 64, "pooling_window": 64},
        "feature_width": 4, "protocol": "sound"}


@pytest.fixture(scope="module")
def fitted():
    rows, ids, m = synthetic(n_variants=180, signal_in="both")
    result = sound.sound_protocol(with_chrom(rows), ids, m, model="toy", rc_rule="ps", settings=settings(bootstrap=0))
    return result, ids, m


@pytest.fixture
def bundle_path(tmp_path, fitted):
    result, _, _ = fitted
    path = tmp_path / "toy.cvep.npz"
    bundles.save_bundle(result, path, {**META, "feature_width": int(fitted[2]["ref_fwd"].shape[1])})
    return path


def test_bundle_round_trips_to_the_same_decisions(bundle_path, fitted):
    result, _, m = fitted
    loaded = bundles.load_bundle(bundle_path)
    assert loaded.tissues == ["Blood", "Liver"] and loaded.feature_kind == result.feature_kind
    side = loaded.sidecar
    assert side["model"]["name"] == "toy" and all(len(b["train_sha256"]) == 64 for b in side["buckets"])
    design = sound.sound_design(scoring.variant_features(m, loaded.feature_kind), pd.Series(["Liver"] * len(m["ref_fwd"])), loaded.tissues)
    for name, model in result.models.items():
        np.testing.assert_allclose(loaded.models[name].decision_function(design), model.decision_function(design), rtol=1e-12)


def test_tissue_shared_kernel_equals_one_decision_per_tissue(fitted):
    result, _, m = fitted
    features = scoring.variant_features(m, result.feature_kind)
    onehots = np.eye(len(result.tissues))
    for model in result.models.values():
        shared = scoring.tissue_decisions(model, features, len(result.tissues), onehots)
        for k, tissue in enumerate(result.tissues):
            direct = model.decision_function(sound.sound_design(features, pd.Series([tissue] * len(features)), result.tissues))
            np.testing.assert_allclose(shared[:, k], direct, rtol=1e-9, atol=1e-9)


def test_a_crafted_bundle_is_refused_and_its_code_never_runs(tmp_path, bundle_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    hostile = tmp_path / "hostile.cvep.npz"
    with zipfile.ZipFile(bundle_path) as src, zipfile.ZipFile(hostile, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, src.read(item))
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.array([Payload()], dtype=object), allow_pickle=True)
        dst.writestr("b0.dual_coef.npy", buffer.getvalue())  # a duplicate name: the pickle wins in zip order
    with pytest.raises(bundles.BundleError, match="pickle|object"):
        bundles.load_bundle(hostile)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(bundles.BundleError):
        bundles.load_bundle(plain)
    assert not marker.exists()


def test_an_edited_bundle_is_refused(tmp_path, bundle_path):
    with np.load(bundle_path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["b0.dual_coef"] = arrays["b0.dual_coef"] * 2
    edited = tmp_path / "edited.cvep.npz"
    np.savez(edited, **arrays)
    with pytest.raises(bundles.BundleError, match="checksum"):
        bundles.load_bundle(edited)


def test_a_bundle_for_other_windows_or_weights_is_refused_naming_why(bundle_path):
    loaded = bundles.load_bundle(bundle_path)
    width = loaded.sidecar["feature_width"]
    bundles.check_bundle(loaded, bundle_path, model="toy", weights_sha256="a" * 64, window_spec={"context_length": 64, "pooling_window": 64},
                         feature_width=width)
    with pytest.raises(bundles.BundleError, match="trained on windows"):
        bundles.check_bundle(loaded, bundle_path, model="toy", weights_sha256=None, window_spec={"context_length": 1536, "pooling_window": 1536},
                             feature_width=width)
    with pytest.raises(bundles.BundleError, match="weights"):
        bundles.check_bundle(loaded, bundle_path, model="toy", weights_sha256="b" * 64, window_spec={"context_length": 64, "pooling_window": 64},
                             feature_width=width)
    with pytest.raises(bundles.BundleError, match="model 'toy', not 'other'"):
        bundles.check_bundle(loaded, bundle_path, model="other", weights_sha256=None, window_spec={"context_length": 64, "pooling_window": 64},
                             feature_width=width)


def write_inputs(tmp_path, ids, m):
    windows = pd.DataFrame({"variant_id": list(ids)})
    windows.to_parquet(tmp_path / "windows.parquet")
    write_block(FeatureBlock(list(ids), [""] * len(ids), {c: v.astype(np.float32) for c, v in m.items()}), tmp_path / "toy.parquet", {})
    zs = pd.DataFrame({"variant_id": list(ids), "llr": np.linspace(-2, 2, len(ids)), "llr_masked": 0.5, "l2": 1.0, "cosine": 0.1})
    zs.to_parquet(tmp_path / "zs_toy.parquet")
    return tmp_path / "windows.parquet", tmp_path / "toy.parquet", tmp_path / "zs_toy.parquet"


def test_score_table_uses_the_row_tissue_and_the_marginal_for_unseen_tissues(tmp_path, bundle_path, fitted):
    _, ids, m = fitted
    windows, features, zs = write_inputs(tmp_path, ids, m)
    zs_named = tmp_path / "toy_zs"
    zs_named.mkdir()
    (zs_named / "toy.parquet").write_bytes(zs.read_bytes())
    from caduceus_vep.modelspec import ModelSpec

    scores = scoring.model_scores(windows_path=windows, specs=[ModelSpec("toy", "x", "ps")], zero_shot_paths=[zs_named / "toy.parquet"],
                                  embedding_paths=[features], bundle_paths=[bundle_path], records={}, window_spec=WindowSpec(64, 64),
                                  tissues=["Liver", "Brain"])
    variants = pd.DataFrame({"snp": ["a", "a"], "variant_id": [ids.iloc[0]] * 2, "chrom": "chr1", "pos": 5, "ref": "A", "alt": "C",
                             "tissue": ["Liver", "Brain"], "split": "test", "label": -1, "distance_to_nearest_TSS": 10, "source_line": 1})
    table = scoring.score_table(variants, scores)
    liver, brain = scores.probabilities["toy"]["0-30kb"][0, 0], scores.probabilities["toy"]["0-30kb"][0, 1]
    assert table["toy_p"].tolist() == pytest.approx([liver, brain])
    assert brain == pytest.approx(scores.probabilities["toy"]["0-30kb"][0, 2])  # Brain was never trained on: the marginal
    assert table["toy_bucket"].tolist() == ["0-30kb", "0-30kb"] and table["toy_llr"].iloc[0] == pytest.approx(-2.0)


def test_scored_vcf_is_bgzipped_indexed_and_keeps_every_record(tmp_path):
    source = REPO / "resources/demo/variants.vcf"
    records = list(pysam.VariantFile(str(source)))
    first = records[0]
    table = pd.DataFrame({"variant_id": [f"{first.chrom}:{first.pos}:{first.ref}:{first.alts[0]}"], "id": [first.id], "chrom": first.chrom,
                          "pos": first.pos, "ref": first.ref, "alt": first.alts[0], "tissue": "NA",
                          "m_llr": [-1.5], "m_llr_masked": [-0.5], "m_l2": [0.1], "m_cosine": [np.nan]})
    scores = scoring.ModelScores(variant_ids=table["variant_id"].to_numpy(), models=["m"], tissues=["NA"], zero_shot={"m": table})
    out = tmp_path / "out.vcf.gz"
    record = {"source": "org/model", "resolved_commit": "abc123", "weights_sha256": "f" * 64}
    n = scoring.write_scored_vcf(source, out, tmp_path / "out.vcf.gz.tbi", table, scores, "vcf", records={"m": record})
    assert n == len(records)
    vcf = pysam.VariantFile(str(out))
    written = list(vcf)
    assert written[0].info["CVEP_M_LLR"] == (pytest.approx(-1.5),) and "CVEP_M_COS" not in written[0].info
    assert "CVEP_M_LLR" not in written[1].info
    assert vcf.header.info["CVEP_M_LLR_MASKED"].number == "A"
    assert 'Revision="abc123"' in str(vcf.header) and "WeightsSHA256=" + "f" * 64 in str(vcf.header)
    assert len(list(vcf.fetch(first.chrom, first.pos - 1, first.pos))) >= 1  # the .tbi index works
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_unsorted_vcf_is_sorted_for_the_index(tmp_path):
    text = (REPO / "resources/demo/variants.vcf").read_text().splitlines()
    header = [line for line in text if line.startswith("#")]
    body = [line for line in text if not line.startswith("#")][:20]
    source = tmp_path / "unsorted.vcf"
    source.write_text("\n".join(header + body[::-1]) + "\n")
    empty = pd.DataFrame({"variant_id": pd.Series([], dtype=str), "tissue": pd.Series([], dtype=str)})
    scores = scoring.ModelScores(variant_ids=np.array([], dtype=object), models=[], tissues=[])
    n = scoring.write_scored_vcf(source, tmp_path / "o.vcf.gz", tmp_path / "o.vcf.gz.tbi", empty, scores, "vcf")
    positions = [r.pos for r in pysam.VariantFile(str(tmp_path / "o.vcf.gz"))]
    assert n == 20 and positions == sorted(positions) and (tmp_path / "o.vcf.gz.tbi").exists()


def test_sidecar_is_readable_json(bundle_path):
    with np.load(bundle_path, allow_pickle=False) as archive:
        side = json.loads(archive["sidecar"].tobytes())
    assert side["format"] == bundles.FORMAT and side["feature_layout"]["tissue_onehot"] == ["Blood", "Liver"]
