"""The content-addressed feature cache: keys, hits only on the same sequence, reuse without model passes."""

from __future__ import annotations

import numpy as np
import pytest
from test_shards import run, setup  # noqa: F401  (fixture)

from caduceus_vep import embed
from caduceus_vep.embed import FeatureBlock, read_block
from caduceus_vep.embed_cache import FeatureCache, cache_key, context_digest

PROV = {"weights_sha256": "a" * 64, "config": {"d_model": 32}}


def test_key_depends_on_what_decides_the_features():
    base = cache_key(PROV, 1536, (0, 1536), "ph_rc_pass", "cpu", "bfloat16")[0]
    assert base == cache_key({**PROV, "name_or_path": "elsewhere"}, 1536, (0, 1536), "ph_rc_pass", "cpu", "bfloat16")[0]
    # CPU never autocasts, so the dtype setting does not split the CPU cache.
    assert base == cache_key(PROV, 1536, (0, 1536), "ph_rc_pass", "cpu", "float16")[0]
    others = [
        cache_key({**PROV, "weights_sha256": "b" * 64}, 1536, (0, 1536), "ph_rc_pass", "cpu", "bfloat16"),
        cache_key(PROV, 2048, (0, 1536), "ph_rc_pass", "cpu", "bfloat16"),
        cache_key(PROV, 1536, (1, 1536), "ph_rc_pass", "cpu", "bfloat16"),
        cache_key(PROV, 1536, (0, 1536), "ps_second_half", "cpu", "bfloat16"),
        cache_key(PROV, 1536, (0, 1536), "ph_rc_pass", "cuda", "bfloat16"),
    ]
    assert len({base, *(k for k, _ in others)}) == 6
    with pytest.raises(ValueError, match="weights_sha256"):
        cache_key({}, 1536, (0, 1536), "ph_rc_pass", "cpu", "bfloat16")


def test_store_and_lookup_match_variant_and_sequence(tmp_path):
    key, fields = cache_key(PROV, 8, (0, 8), "ph_rc_pass", "cpu", "float32")
    cache = FeatureCache(tmp_path, key, fields)
    block = FeatureBlock(["v1", "v2"], [context_digest("ACGTACGT"), context_digest("TTTTAAAA")],
                         {c: np.arange(6, dtype=np.float32).reshape(2, 3) + i for i, c in enumerate(embed.FEATURE_COLUMNS)})
    path = cache.store(block, {})
    assert cache.store(block, {}) == path and len(cache.files()) == 1  # same content, same file
    found = cache.lookup({"v2", "v3"})
    assert set(found) == {("v2", context_digest("TTTTAAAA"))}
    hit_block, row = found[("v2", context_digest("TTTTAAAA"))]
    np.testing.assert_array_equal(hit_block.matrices["alt_fwd"][row], block.matrices["alt_fwd"][1])
    assert FeatureCache(None, key, fields).lookup({"v1"}) == {}
    assert (tmp_path / key / "key.json").exists()


def test_second_run_reuses_the_cache_without_model_passes(setup, tmp_path, monkeypatch):  # noqa: F811
    first, s1 = run(setup, tmp_path, 0, 1, "first", cache=tmp_path / "cache")
    assert s1["attempt"] == {**s1["attempt"], "computed": len(setup["windows"]), "cached": 0}

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although every variant was cached")

    monkeypatch.setattr(embed, "embed_sequences", no_model)  # run_shard imports it when it runs
    second, s2 = run(setup, tmp_path, 0, 1, "second", cache=tmp_path / "cache", every=3)  # other chunking: still hits
    assert s2["attempt"]["computed"] == 0 and s2["attempt"]["cached"] == len(setup["windows"])
    a, _ = read_block(first)
    b, _ = read_block(second)
    for column in embed.FEATURE_COLUMNS:
        np.testing.assert_array_equal(a.matrices[column], b.matrices[column])


def test_partial_cache_computes_only_the_misses(setup, tmp_path, monkeypatch):  # noqa: F811
    run(setup, tmp_path, 0, 2, "half", cache=tmp_path / "cache")
    _, summary = run(setup, tmp_path, 0, 1, "all", cache=tmp_path / "cache")
    n = len(setup["windows"])
    assert summary["attempt"]["cached"] == n // 2 and summary["attempt"]["computed"] == n - n // 2
