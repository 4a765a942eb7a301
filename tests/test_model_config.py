"""Config parsing, unsupported settings, parameter count and deterministic initialisation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from caduceus_vep.model import Caduceus, CaduceusConfig, build_caduceus

RELEASED_PS = {
    "_name_or_path": "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16",
    "architectures": ["CaduceusForMaskedLM"],
    "auto_map": {"AutoConfig": "configuration_caduceus.CaduceusConfig"},
    "bidirectional": True,
    "bidirectional_strategy": "add",
    "bidirectional_weight_tie": True,
    "complement_map": {str(i): v for i, v in enumerate([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15])},
    "d_model": 256,
    "fused_add_norm": True,
    "initializer_cfg": {"initializer_range": 0.02, "n_residuals_per_layer": 1, "rescale_prenorm_residual": True},
    "model_type": "caduceus",
    "n_layer": 16,
    "norm_epsilon": 1e-05,
    "pad_vocab_size_multiple": 8,
    "rcps": True,
    "residual_in_fp32": False,
    "rms_norm": True,
    "ssm_cfg": {
        "bias": False, "conv_bias": True, "d_conv": 4, "d_state": 16, "dt_init": "random",
        "dt_init_floor": 0.0001, "dt_max": 0.1, "dt_min": 0.001, "dt_rank": "auto", "dt_scale": 1.0,
        "expand": 2, "use_fast_path": True,
    },
    "torch_dtype": "float32",
    "transformers_version": "4.38.1",
    "vocab_size": 16,
}


def test_released_config_round_trips():
    config = CaduceusConfig.from_dict(RELEASED_PS)
    assert config.dt_rank == 16 and config.d_inner == 512 and config.padded_vocab_size == 16
    out = config.to_dict()
    for key, value in RELEASED_PS.items():
        if key not in ("_name_or_path", "auto_map", "transformers_version"):
            assert out[key] == value, key
    assert CaduceusConfig.from_dict(out) == config


@pytest.mark.parametrize("rcps", [True, False])
def test_full_size_parameter_count(rcps):
    config = CaduceusConfig.from_dict({**RELEASED_PS, "rcps": rcps})
    with torch.device("meta"):
        model = Caduceus(config)
    assert sum(p.numel() for p in model.parameters()) == 7_725_312
    assert model.hidden_size == (512 if rcps else 256)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("bidirectional_strategy",), "ew_multiply"),
        (("rms_norm",), False),
        (("bidirectional",), False),
        (("bidirectional_weight_tie",), False),
        (("ssm_cfg", "dt_init"), "xavier"),
        (("ssm_cfg", "d_state"), "16"),
        (("ssm_cfg", "layer_norm_kind"), "x"),
        (("complement_map",), {"0": 1}),
        (("d_model",), True),
    ],
)
def test_unsupported_settings_raise_naming_the_key(path, value):
    d = copy.deepcopy(RELEASED_PS)
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=path[-1]):
        CaduceusConfig.from_dict(d)


def test_unknown_top_level_keys_are_ignored_and_vocab_is_padded():
    config = CaduceusConfig.from_dict({**RELEASED_PS, "vocab_size": 12, "complement_map": None,
                                       "something_hf_added": 1})
    assert config.padded_vocab_size == 16 and len(config.complement_list) == 16
    assert config.complement_list[7] == 10


def test_build_is_deterministic_and_follows_mamba_init():
    config = CaduceusConfig.from_dict({**RELEASED_PS, "d_model": 32, "n_layer": 2})
    a, b, c = build_caduceus(config, 0), build_caduceus(config, 0), build_caduceus(config, 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    dt_bias = "backbone.layers.0.mixer.submodule.mamba_fwd.dt_proj.bias"
    assert not torch.equal(sa[dt_bias], sc[dt_bias])
    m = a.backbone.layers[0].mixer.submodule.mamba_fwd
    torch.testing.assert_close(m.A_log, torch.log(torch.arange(1.0, 17.0)).repeat(64, 1))
    assert torch.equal(m.D, torch.ones(64))
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert m.dt_proj.weight.abs().max() <= 2 ** -0.5 * 1.0001  # dt_rank 2 for d_model 32
    assert math.isclose(a.backbone.embeddings.weight.std().item(), 0.02, rel_tol=0.3)


def test_import_does_not_pull_in_cuda_packages():
    import subprocess
    import sys

    code = "import sys, caduceus_vep.model; assert 'mamba_ssm' not in sys.modules and 'causal_conv1d' not in sys.modules"
    from pathlib import Path

    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def _with(path: tuple[str, ...], value) -> dict:
    d = copy.deepcopy(RELEASED_PS)
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("d_model",), 10**7),
        (("n_layer",), 10**5),
        (("vocab_size",), 10**8),
        (("pad_vocab_size_multiple",), 10**4),
        (("ssm_cfg", "d_state"), 10**4),
        (("ssm_cfg", "d_conv"), 10**3),
        (("ssm_cfg", "expand"), 10**3),
        (("ssm_cfg", "dt_rank"), 10**5),
    ],
)
def test_absurd_sizes_are_refused_before_building(path, value):
    import time

    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"{path[-1]}' = {value} is more than 16x the largest released"):
        CaduceusConfig.from_dict(_with(path, value))
    assert time.perf_counter() - started < 1.0  # refused, not allocated


def test_size_bounds_are_the_documented_factor():
    from caduceus_vep.model import config as config_module

    assert config_module.SIZE_FACTOR == 16 and config_module.RELEASED_MAX["d_model"] == 256
    assert CaduceusConfig.from_dict({**RELEASED_PS, "d_model": 4096, "n_layer": 2}).d_model == 4096  # at the bound
    with pytest.raises(ValueError, match="'d_model' = 4097"):
        CaduceusConfig.from_dict({**RELEASED_PS, "d_model": 4097, "n_layer": 2})
    # Each size within bounds, the product not: refused on the parameter count, naming the sizes.
    with pytest.raises(ValueError, match=r"parameters \(d_model=4096, n_layer=256, ssm_cfg.expand=32"):
        CaduceusConfig.from_dict(_with(("ssm_cfg", "expand"), 32) | {"d_model": 4096, "n_layer": 256})


@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_from_the_sizes_matches_the_model(rcps, bias):
    config = CaduceusConfig.from_dict(_with(("ssm_cfg", "bias"), bias) | {"rcps": rcps, "d_model": 48, "n_layer": 3})
    with torch.device("meta"):
        model = Caduceus(config)
    assert config.parameter_count == sum(p.numel() for p in model.parameters())
    assert CaduceusConfig.from_dict(RELEASED_PS).parameter_count == 7_725_312


@pytest.mark.parametrize(
    ("path", "value"),
    [(("norm_epsilon",), float("nan")), (("norm_epsilon",), 0.0), (("ssm_cfg", "dt_max"), float("inf")),
     (("ssm_cfg", "dt_scale"), float("nan")), (("ssm_cfg", "dt_init_floor"), float("-inf"))],
)
def test_non_finite_or_non_positive_floats_are_refused(path, value):
    with pytest.raises(ValueError, match=path[-1]):
        CaduceusConfig.from_dict(_with(path, value))
