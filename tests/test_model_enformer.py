"""Enformer: random weights in the released enformer-pytorch layout, loaded by our strict loader, against
enformer-pytorch's own Enformer built straight from the same config.json and file and run as the
paper's script runs it; round trips, listed key problems, bounded configs, and the one-hot encoding
and bin choice on hand-worked examples.

The encoding and bin tests need nothing but numpy/torch; the model tests skip (with the install
command) when enformer-pytorch is not installed: ``pip install -c constraints.txt -e '.[enformer]'``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from caduceus_vep.model import CheckpointError
from caduceus_vep.model.enformer import (
    NOT_PRETRAINED,
    PAPER_CONTEXT_BP,
    PAPER_SNP_BIN,
    PAPER_TARGET_LENGTH,
    EnformerSettings,
    build_random_enformer,
    load_enformer,
    one_hot,
    output_bins,
    pooled_features,
    pooling_bins,
    read_settings,
    reverse_complement_one_hot,
    save_enformer,
    tiny_settings,
    trunk_embeddings,
    write_tiny_checkpoint,
)

DEMO_CONTEXT = 1_536
# Two implementations of one network sum in different orders, and which order BLAS takes depends on
# the CPU (AVX2 or AVX-512 kernels), thread count and batch: on an AVX-512 machine the differences
# reached 4.5e-7 of the largest |feature| (~3.7) over 5 seeds x 2 strands x 1-4 threads x batch 1-3,
# 1.2e-6 absolute in one CI run (a fixed atol=1e-6 failed there), and ~130 float32 ulps on the small
# features. So the tolerance follows the features' scale: 2e-6 of the largest |value| (~7e-6 here), far
# below the >1e-3 by which different sequences' features differ (checked beside each comparison).
SCALE_TOLERANCE = 2e-6


def assert_close_at_scale(actual: np.ndarray, desired: np.ndarray) -> None:
    """Equal up to ``SCALE_TOLERANCE`` times the largest magnitude of ``desired``."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=SCALE_TOLERANCE * float(np.abs(desired).max()))


def needs_package():
    return pytest.importorskip("enformer_pytorch", reason="enformer-pytorch is not installed: pip install -c constraints.txt -e '.[enformer]'")


def random_sequences(n: int, length: int, seed: int = 0, alphabet: str = "ACGTN") -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), length, p=[0.24, 0.24, 0.24, 0.24, 0.04])) for _ in range(n)]


# --- encoding and bins (no enformer-pytorch needed) ---------------------------------------------------


def test_one_hot_hand_worked():
    x = one_hot(["ACgtN", "nTGCA"])
    assert x.shape == (2, 5, 4) and x.dtype == torch.float32
    assert x[0].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert x[1].tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]


@pytest.mark.parametrize("bad, message", [(["ACGX"], "'X' at index 3"), (["AC.G"], "'.' at index 2"), (["ACGé"], "non-ASCII"),
                                          (["ACGT", "ACG"], "length 3")])
def test_one_hot_refuses(bad, message):
    with pytest.raises(ValueError, match=message):
        one_hot(bad)


def test_reverse_complement_one_hot_hand_worked():
    # RC("AACGN") = "NCGTT": reverse the bases, complement each (N stays all zeros).
    assert torch.equal(reverse_complement_one_hot(one_hot(["AACGN"])), one_hot(["NCGTT"]))


def test_paper_bins_hand_worked():
    # 196,608 bp / 128 = 1,536 trunk bins; the crop keeps the central 896 (320 off each side: 114,688 bp).
    assert PAPER_CONTEXT_BP // 128 == 1_536 and output_bins(PAPER_CONTEXT_BP, PAPER_TARGET_LENGTH) == 896
    # The SNP at index 98,304 is the first base of trunk bin 768, i.e. cropped bin 768 - 320 = 448.
    assert (PAPER_CONTEXT_BP // 2) // 128 - (1_536 - 896) // 2 == PAPER_SNP_BIN == 896 // 2
    # window 1536 // 128 = 12, offsets range(-6, 7): 13 bins, 442..454, 1,664 bp, no clamping.
    assert pooling_bins(896) == list(range(442, 455))
    assert len(pooling_bins(896)) * 128 == 1_664


def test_demo_bins_hand_worked():
    # Demo: 1,536 bp -> 12 bins, target_length 8 crops 2 off each side (bins 2..9 kept); the SNP at
    # index 768 is in trunk bin 6 = cropped bin 4 = 8 // 2. Offsets -6..6 around 4, clamped to 0..7.
    assert output_bins(DEMO_CONTEXT, 8) == 8 and (DEMO_CONTEXT // 2) // 128 - 2 == 4
    assert pooling_bins(8) == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7]
    assert output_bins(DEMO_CONTEXT, -1) == 12 and pooling_bins(12) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11]
    # The smallest context the 128 bp bins allow; a 2-bin window gives offsets -1..1; an odd window (1 bin)
    # is asymmetric in the script's formula, range(-1 // 2, 1 // 2 + 1) = range(-1, 1).
    assert output_bins(128, 1) == 1 and pooling_bins(1) == [0] * 13
    assert pooling_bins(8, pooling_window_bp=256) == [3, 4, 5] and pooling_bins(8, pooling_window_bp=128) == [3, 4]


@pytest.mark.parametrize("context, target, message", [(1_500, 8, "multiple of the 128"), (1_536, 7, "odd number"),
                                                      (1_536, 14, "fewer than target_length"), (0, 8, "positive multiple")])
def test_output_bins_refuses(context, target, message):
    with pytest.raises(ValueError, match=message):
        output_bins(context, target)


# --- settings -------------------------------------------------------------------------------------


def test_released_settings():
    released = {"dim": 1536, "depth": 11, "heads": 8, "output_heads": {"human": 5313, "mouse": 1643}, "target_length": 896,
                "attn_dim_key": 64, "dropout_rate": 0.4, "attn_dropout": 0.05, "pos_dropout": 0.01, "use_checkpointing": False,
                "use_convnext": False, "num_downsamples": 7, "dim_divisible_by": 128, "architectures": ["Enformer"],
                "model_type": "enformer", "torch_dtype": "float32", "transformers_version": "4.21.0.dev0"}
    s = EnformerSettings.from_dict(released)
    assert s == EnformerSettings(extra={k: released[k] for k in ("architectures", "model_type", "torch_dtype", "transformers_version")})
    assert s.parameter_count() == 251_221_292 and s.embedding_dim == 3_072 and s.bin_bp == 128
    assert s.tower_widths == [768, 768, 896, 1024, 1152, 1280, 1536]
    assert s.to_dict() == released  # written back as read: no use_tf_gamma key appears
    assert s.package_config_kwargs()["use_tf_gamma"] is False


@pytest.mark.parametrize("override, key", [
    ({"use_tf_gamma": True}, "use_tf_gamma"), ({"use_convnext": True}, "use_convnext"), ({"heads": 7}, "heads"),
    ({"dim": 1024}, "heads"),  # 1024 // 8 = 128 is no multiple of 6 (the relative-position families)
    ({"dim": 1200}, "dim_divisible_by"), ({"dim": 10**6}, "dim"), ({"depth": 10**5}, "depth"), ({"target_length": 0}, "target_length"),
    ({"num_downsamples": 2}, "num_downsamples"), ({"output_heads": {"human": 10**9}}, "output_heads"), ({"model_type": "bert"}, "model_type"),
    ({"dropout_rate": float("nan")}, "dropout_rate"), ({"depth": True}, "depth"), ({"dim": 3072, "depth": 44}, "dim"),
])
def test_settings_refused(override, key):
    values = {**EnformerSettings().to_dict(), **override}
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        EnformerSettings.from_dict(values)


def test_bad_config_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        read_settings(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**EnformerSettings().to_dict(), "use_tf_gamma": True}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="use_tf_gamma"):
        read_settings(tmp_path)


# --- the model (enformer-pytorch) -----------------------------------------------------------------


def reference_features(folder, sequences: list[str], strand: str = "forward") -> np.ndarray:
    """The paper's path, with enformer-pytorch only: its Enformer from config.json (use_tf_gamma=False)
    and the raw file, the script's EnformerTokenizer ids (A0 C1 G2 T3 N4) through the package's own
    seq_indices_to_one_hot, ``return_embeddings=True``, and the script's gather over ``size(1) // 2 + (-6..6)``."""
    package = needs_package()
    config = json.loads((folder / "config.json").read_text())
    model = package.Enformer(package.EnformerConfig(**{**config, "use_tf_gamma": False})).eval()
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    encode = {"A": 0, "C": 1, "G": 2, "T": 3, "N": 4}
    complement = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    if strand == "reverse":
        sequences = ["".join(complement[b] for b in reversed(s.upper())) for s in sequences]
    ids = torch.tensor([[encode[b] for b in s.upper()] for s in sequences])
    with torch.no_grad():
        emb = model(ids, return_embeddings=True)[1]
        if strand == "reverse":
            emb = emb.flip(dims=[1])
        window = 1536 // 128
        idx = torch.arange(-window // 2, window // 2 + 1) + emb.size(1) // 2
        idx = torch.clamp(idx, 0, emb.size(1) - 1).unsqueeze(0).expand(emb.size(0), -1)
        pooled = torch.gather(emb, 1, idx.unsqueeze(-1).expand(-1, -1, emb.size(2))).mean(dim=1)
    return pooled.numpy()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    needs_package()
    folder = tmp_path_factory.mktemp("enformer_tiny")
    write_tiny_checkpoint(folder, seed=3)
    return folder


def test_tiny_checkpoint_is_labelled_and_in_the_released_layout(tiny_folder):
    package = needs_package()
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["_comment"] == NOT_PRETRAINED and config["model_type"] == "enformer" and "use_tf_gamma" not in config
    stored = load_file(str(tiny_folder / "model.safetensors"))
    names = set(package.Enformer(package.EnformerConfig(**{**config, "use_tf_gamma": False})).state_dict())
    assert set(stored) == names  # every state-dict name of enformer-pytorch's Enformer, aliases included
    assert {"stem.0.weight", "_trunk.1.0.weight", "transformer.0.0.fn.1.to_out.weight", "_trunk.6.1.2.weight",
            "_heads.human.0.weight", "_heads.mouse.0.bias", "stem.1.fn.0.num_batches_tracked"} <= names
    assert torch.equal(stored["stem.0.weight"], stored["_trunk.1.0.weight"])
    # enformer-pytorch initialises the attention output to zero: the random checkpoint must not.
    assert stored["transformer.0.0.fn.1.to_out.weight"].abs().min() > 0


def test_features_match_enformer_pytorch(tiny_folder):
    model = load_enformer(tiny_folder)
    seqs = random_sequences(3, DEMO_CONTEXT, seed=1)
    seqs[1] = seqs[1][:100].lower() + seqs[1][100:]
    ours = pooled_features(model, seqs, batch_size=2)
    ref = reference_features(tiny_folder, seqs)
    assert ours.shape == (3, 96) and ours.dtype == np.float32
    assert_close_at_scale(ours, ref)
    # The sequences give different features (well beyond the tolerance): the comparison is not vacuous.
    assert np.abs(ours[0] - ours[2]).max() > 1e-3
    rc = pooled_features(model, seqs, strand="reverse")
    assert_close_at_scale(rc, reference_features(tiny_folder, seqs, strand="reverse"))
    assert np.abs(rc - ours).max() > 1e-3  # not strand-symmetric: the RC pass is a real second pass


def test_full_bins_without_crop_and_batching(tmp_path):
    needs_package()
    model = build_random_enformer(tiny_settings(target_length=-1), seed=5)
    seqs = random_sequences(3, 3 * 128 * 2, seed=2)
    emb = trunk_embeddings(model, one_hot(seqs))
    assert emb.shape == (3, 6, 96)
    one_by_one = np.concatenate([pooled_features(model, [s]) for s in seqs])
    np.testing.assert_allclose(pooled_features(model, seqs, batch_size=3), one_by_one, rtol=0, atol=1e-5)
    np.testing.assert_allclose(one_by_one, emb[:, pooling_bins(6)].mean(1).detach().numpy(), rtol=0, atol=1e-6)


def test_round_trips(tiny_folder, tmp_path):
    model = load_enformer(tiny_folder)
    seqs = random_sequences(2, DEMO_CONTEXT, seed=4)
    expected = pooled_features(model, seqs)
    for fmt, tied in (("safetensors", "both"), ("bin", "both"), ("safetensors", "once")):
        out = tmp_path / f"{fmt}_{tied}"
        path = save_enformer(model, out, weights_format=fmt, tied=tied)
        again = load_enformer(out)
        assert again.settings == model.settings and again.provenance["weights_file"] == path.name
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
        np.testing.assert_array_equal(pooled_features(again, seqs), expected)
    assert load_enformer(tmp_path / "safetensors_once").provenance["keys_in_file"] < model.provenance["keys_in_file"]


def _edited(tiny_folder, tmp_path, edit) -> str:
    state = load_file(str(tiny_folder / "model.safetensors"))
    edit(state)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        load_enformer(tmp_path)
    return str(info.value)


def test_missing_and_unexpected_keys_are_listed(tiny_folder, tmp_path):
    def edit(state):
        del state["_heads.mouse.0.bias"]
        del state["stem.0.weight"], state["_trunk.1.0.weight"]  # both names of one tensor
        state["_heads.rat.0.weight"] = torch.zeros(3, 96)

    message = _edited(tiny_folder, tmp_path, edit)
    assert "missing keys" in message and "_heads.mouse.0.bias" in message and "stem.0.weight / _trunk.1.0.weight" in message
    assert "unexpected keys: ['_heads.rat.0.weight']" in message


def test_shape_mismatch_and_differing_aliases_are_refused(tiny_folder, tmp_path):
    message = _edited(tiny_folder, tmp_path / "a", lambda s: s.update({"_heads.human.0.weight": torch.zeros(9, 96)}))
    assert "shape mismatches" in message and "_heads.human.0.weight" in message
    message = _edited(tiny_folder, tmp_path / "b", lambda s: s.update({"_trunk.1.0.weight": s["stem.0.weight"] + 1}))
    assert "differ" in message and "stem.0.weight" in message


def test_non_finite_weights_are_refused(tiny_folder, tmp_path):
    def edit(state):
        state["transformer.1.1.fn.1.weight"][0, 0] = float("nan")

    assert "non-finite" in _edited(tiny_folder, tmp_path, edit)


def test_changed_crop_and_bad_inputs_are_refused(tiny_folder):
    model = load_enformer(tiny_folder)
    with pytest.raises(ValueError, match="odd number"):
        pooled_features(model, random_sequences(1, 1_408))  # 11 bins, target 8
    with pytest.raises(ValueError, match="one context length"):
        pooled_features(model, random_sequences(1, DEMO_CONTEXT) + random_sequences(1, 1_280))
    model.set_target_length(6)  # enformer-pytorch's own mutator: our feature code must notice
    with pytest.raises(RuntimeError, match="target_length was changed"):
        pooled_features(model, random_sequences(1, DEMO_CONTEXT))


def test_one_hot_matches_the_package():
    package = needs_package()
    seq = "ACGTNacgtn" * 3
    assert torch.equal(one_hot([seq])[0], package.str_to_one_hot(seq))
    ids = torch.tensor([[{"A": 0, "C": 1, "G": 2, "T": 3, "N": 4}[b] for b in seq.upper()]])
    assert torch.equal(one_hot([seq]), package.seq_indices_to_one_hot(ids))
