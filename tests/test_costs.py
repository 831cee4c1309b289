"""Tests for globattn_lite.costs: KV-cache arithmetic, presets, receptive field, hops, pairs."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from globattn_lite import patterns as P
from globattn_lite.costs import (
    PRESETS,
    ModelPreset,
    hops,
    kv_cache_bytes,
    kv_entries,
    max_sequences,
    pairs_scored,
    receptive_field,
)

GiB = 2**30
KiB = 2**10


def causal_window_mask(n, W):
    q, k = np.indices((n, n))
    return (k <= q) & (q - k < W)


def band_mask(n, r):
    q, k = np.indices((n, n))
    return np.abs(q - k) <= r


# --- kv_cache_bytes ----------------------------------------------------------------------


def test_llama2_7b_fp16_is_half_a_mebibyte_per_token_and_2_gib_at_4096():
    assert kv_cache_bytes(32, 32, 128, 1) == 524_288
    assert kv_cache_bytes(32, 32, 128, 4096) == 2 * GiB
    llama = PRESETS["Llama-2-7B"]
    assert llama.kv_bytes_per_token() == 524_288
    assert llama.kv_bytes(4096) == 2 * GiB
    assert llama.kv_bytes(100_000, "native") == llama.kv_bytes(100_000, "dense")  # no window of its own


def test_mistral_7b_gqa_window_numbers():
    assert kv_cache_bytes(32, 8, 128, 1) == 128 * KiB
    mistral = PRESETS["Mistral-7B"]
    assert mistral.kv_bytes_per_token() == 131_072
    assert mistral.kv_bytes(32 * 1024, policy="dense") == 4 * GiB
    assert mistral.kv_bytes(32 * 1024, policy="window", window=4096) == GiB // 2
    assert mistral.kv_bytes(32 * 1024, policy="native") == GiB // 2  # its own rolling buffer
    # The rolling buffer caps a 32K sequence's cache at 1/8 of dense.
    assert mistral.kv_bytes(32 * 1024, "native") * 8 == mistral.kv_bytes(32 * 1024, "dense")


def test_streamingllm_4_plus_2044_on_llama2_is_a_constant_gib():
    llama = PRESETS["Llama-2-7B"]
    for t in [2048, 4096, 65_536, 4_000_000]:
        assert llama.kv_bytes(t, policy="sinks", window=2044, sinks=4) == GiB
    assert kv_cache_bytes(32, 32, 128, kv_entries("sinks", 10**6, window=2044, sinks=4)) == GiB
    # Before the cache is full it holds every token.
    assert llama.kv_bytes(1000, policy="sinks", window=2044, sinks=4) == 1000 * 524_288


def test_factor_two_for_k_and_v_and_linear_in_every_argument():
    base = kv_cache_bytes(1, 1, 1, 1, 1, 1)
    assert base == 2
    assert kv_cache_bytes(3, 5, 7, 11, 13, 4) == 2 * 3 * 5 * 7 * 11 * 13 * 4
    assert kv_cache_bytes(2, 1, 1, 0) == 0


def test_gqa_uses_kv_heads_not_query_heads():
    mistral = PRESETS["Mistral-7B"]
    assert mistral.heads == 32 and mistral.kv_heads == 8
    per_token = kv_cache_bytes(mistral.layers, mistral.kv_heads, mistral.head_dim, 1)
    assert mistral.kv_bytes_per_token() == per_token
    assert kv_cache_bytes(mistral.layers, mistral.heads, mistral.head_dim, 1) == 4 * per_token


def test_bytes_per_element():
    assert kv_cache_bytes(32, 32, 128, 1, bytes_per_element=4) == 2 * 524_288
    assert PRESETS["Llama-2-7B"].kv_bytes_per_token(bytes_per_element=1) == 262_144


# --- presets -----------------------------------------------------------------------------


def test_preset_numbers():
    expected = {
        "Llama-2-7B": (32, 32, 32, 128, None, 0),
        "Mistral-7B": (32, 32, 8, 128, 4096, 32),
        "Gemma-2-9B": (42, 16, 8, 256, 4096, 21),
    }
    assert set(PRESETS) == set(expected)
    for name, (layers, heads, kv_heads, head_dim, window, local) in expected.items():
        p = PRESETS[name]
        assert p.name == name
        assert (p.layers, p.heads, p.kv_heads, p.head_dim, p.sliding_window, p.local_layers) == (
            layers, heads, kv_heads, head_dim, window, local,
        )
        assert "config" in p.source and p.layer_pattern
    with pytest.raises(Exception):
        PRESETS["Llama-2-7B"].layers = 1  # frozen


def test_gemma2_interleaving_local_layers_cap_at_the_window():
    gemma = PRESETS["Gemma-2-9B"]
    assert gemma.kv_bytes_per_token() == 2 * 42 * 8 * 256 * 2 == 344_064
    per_layer_token = 2 * 8 * 256 * 2
    # Below the window, local layers still hold every token.
    assert gemma.kv_bytes(4096, "native") == gemma.kv_bytes(4096, "dense")
    # At the full 8192 context: 21 global layers x 8192 + 21 local layers x 4096.
    assert gemma.kv_bytes(8192, "native") == per_layer_token * (21 * 8192 + 21 * 4096)
    assert gemma.kv_bytes(8192, "native") / gemma.kv_bytes(8192, "dense") == 0.75
    entries = gemma.kv_entries_per_layer(8192, "native")
    assert entries.shape == (42,)
    assert entries[0] == 4096 and entries[1] == 8192  # layer 0 is local (HF: is_sliding = not idx % 2)
    assert (entries[::2] == 4096).all() and (entries[1::2] == 8192).all()


def test_eviction_policy_on_gemma2_never_exceeds_a_local_layers_own_window():
    gemma = PRESETS["Gemma-2-9B"]
    # A StreamingLLM cache bigger than the local window: local layers still keep only 4096.
    e = gemma.kv_entries_per_layer(100_000, "sinks", window=8188, sinks=4)
    assert (e[::2] == 4096).all() and (e[1::2] == 8192).all()
    # A small cache: every layer keeps the same 4 + 1020.
    e = gemma.kv_entries_per_layer(100_000, "sinks", window=1020, sinks=4)
    assert (e == 1024).all()
    assert gemma.kv_bytes(100_000, "sinks", window=1020, sinks=4, batch=3) == 3 * 1024 * gemma.kv_bytes_per_token()


def test_preset_batch_scales_linearly():
    llama = PRESETS["Llama-2-7B"]
    assert llama.kv_bytes(4096, batch=8) == 16 * GiB


def test_preset_validation():
    with pytest.raises(TypeError, match="name must be a string"):
        ModelPreset(7, 2, 4, 4, 8, None, "", "")
    with pytest.raises(TypeError, match="source must be a string"):
        ModelPreset("x", 2, 4, 4, 8, None, "", None)
    with pytest.raises(ValueError, match="kv_heads"):
        ModelPreset("x", 2, 6, 4, 8, None, "", "")
    with pytest.raises(ValueError, match="sliding_window"):
        ModelPreset("x", 2, 4, 4, 8, None, "", "", local_layers=1)
    with pytest.raises(ValueError, match="local_layers"):
        ModelPreset("x", 4, 4, 4, 8, 16, "", "", local_layers=3)
    with pytest.raises(ValueError, match="policy"):
        PRESETS["Mistral-7B"].kv_bytes(10, policy="rolling")
    with pytest.raises(ValueError, match="window"):
        PRESETS["Mistral-7B"].kv_bytes(10, policy="window")
    with pytest.raises(ValueError, match="native"):
        PRESETS["Mistral-7B"].kv_bytes(10, policy="native", window=16)
    with pytest.raises(ValueError, match="tokens"):
        PRESETS["Mistral-7B"].kv_bytes(-1)


# --- kv_entries / max_sequences -----------------------------------------------------------


@pytest.mark.parametrize(
    "policy, t, window, sinks, expected",
    [
        ("dense", 0, None, 0, 0),
        ("dense", 10_000, None, 0, 10_000),
        ("dense", 10_000, 4096, 0, 10_000),  # dense ignores the window
        ("window", 100, 4096, 0, 100),  # t smaller than the window
        ("window", 4096, 4096, 0, 4096),
        ("window", 10_000, 4096, 0, 4096),
        ("sinks", 3, 2044, 4, 3),
        ("sinks", 2000, 2044, 4, 2000),
        ("sinks", 2048, 2044, 4, 2048),
        ("sinks", 10**7, 2044, 4, 2048),
        ("sinks", 10**7, 2044, 0, 2044),
    ],
)
def test_kv_entries(policy, t, window, sinks, expected):
    assert kv_entries(policy, t, window=window, sinks=sinks) == expected


def test_kv_entries_bad_input():
    with pytest.raises(ValueError, match="policy"):
        kv_entries("streaming", 10, window=4)
    with pytest.raises(TypeError, match="policy"):
        kv_entries(None, 10, window=4)
    with pytest.raises(ValueError, match="window"):
        kv_entries("window", 10)
    with pytest.raises(ValueError, match="window"):
        kv_entries("sinks", 10, sinks=4)
    with pytest.raises(ValueError, match="window"):
        kv_entries("window", 10, window=0)
    with pytest.raises(ValueError, match="sinks"):
        kv_entries("window", 10, window=4, sinks=2)
    with pytest.raises(ValueError, match="sinks"):
        kv_entries("sinks", 10, window=4, sinks=-1)
    with pytest.raises(ValueError, match="t"):
        kv_entries("dense", -1)
    with pytest.raises(TypeError, match="t"):
        kv_entries("dense", 2.5)


def test_max_sequences_floors():
    per_seq = kv_cache_bytes(32, 32, 128, 4096)  # 2 GiB
    assert max_sequences(80 * GiB, 32, 32, 128, 4096) == 40
    assert max_sequences(80 * GiB - 1, 32, 32, 128, 4096) == 39
    assert max_sequences(per_seq - 1, 32, 32, 128, 4096) == 0
    assert max_sequences(0, 32, 32, 128, 4096) == 0
    assert max_sequences(24e9, 32, 8, 128, 32 * 1024) == 5  # 24e9 / 4 GiB = 5.59
    assert max_sequences(80 * GiB, 32, 32, 128, 4096, bytes_per_element=1) == 80


def test_max_sequences_bad_input():
    with pytest.raises(ValueError, match="budget_bytes"):
        max_sequences(-1, 32, 32, 128, 4096)
    with pytest.raises(ValueError, match="budget_bytes"):
        max_sequences(float("inf"), 32, 32, 128, 4096)
    with pytest.raises(ValueError, match="tokens"):
        max_sequences(GiB, 32, 32, 128, 0)
    with pytest.raises(TypeError, match="budget_bytes"):
        max_sequences("1GB", 32, 32, 128, 4096)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(layers=0), ValueError, "layers"),
        (dict(kv_heads=0), ValueError, "kv_heads"),
        (dict(head_dim=1.5), TypeError, "head_dim"),
        (dict(tokens=-1), ValueError, "tokens"),
        (dict(batch=0), ValueError, "batch"),
        (dict(bytes_per_element=0), ValueError, "bytes_per_element"),
        (dict(layers=True), TypeError, "layers"),
    ],
)
def test_kv_cache_bytes_bad_input(kwargs, exc, word):
    args = dict(layers=32, kv_heads=32, head_dim=128, tokens=10)
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        kv_cache_bytes(**args)


# --- receptive_field -----------------------------------------------------------------------


def brute_force_reach(mask, layers):
    """Plain Python: which source positions' information sits at each position after L layers."""
    n = len(mask)
    info = [{q} for q in range(n)]  # layer 0: each position holds only itself
    for _ in range(layers):
        info = [
            info[q].union(*(info[k] for k in range(n) if mask[q][k]))  # residual + attended keys
            for q in range(n)
        ]
    return np.array([[k in info[q] for k in range(n)] for q in range(n)])


@given(
    st.integers(1, 9).flatmap(lambda n: arrays(np.bool_, (n, n))),
    st.integers(0, 5),
)
def test_receptive_field_matches_layer_by_layer_propagation(mask, layers):
    n = mask.shape[0]
    np.testing.assert_array_equal(receptive_field(mask, n, layers), brute_force_reach(mask.tolist(), layers))


def test_zero_layers_is_the_identity():
    m = causal_window_mask(7, 3)
    np.testing.assert_array_equal(receptive_field(m, 7, 0), np.eye(7, dtype=bool))
    np.testing.assert_array_equal(receptive_field(P.full(), 7, 0), np.eye(7, dtype=bool))


def test_residual_path_keeps_what_was_there_even_without_self_attention():
    # Each position attends only to the previous one, not to itself: the residual stream
    # still carries its own information, so after 2 layers q knows q, q-1 and q-2.
    n = 6
    q, k = np.indices((n, n))
    prev_only = k == q - 1
    R = receptive_field(prev_only, n, 2)
    np.testing.assert_array_equal(R, (k <= q) & (q - k <= 2))
    # No attention at all: nothing moves, but nothing is lost.
    np.testing.assert_array_equal(receptive_field(np.zeros((n, n), bool), n, 3), np.eye(n, dtype=bool))


@pytest.mark.parametrize("W", [1, 2, 3, 5])
@pytest.mark.parametrize("layers", [0, 1, 2, 4])
def test_sliding_window_reach_grows_by_w_minus_1_per_layer(W, layers):
    n = 40
    q, k = np.indices((n, n))
    expected = (k <= q) & (q - k <= layers * (W - 1))
    np.testing.assert_array_equal(receptive_field(causal_window_mask(n, W), n, layers), expected)
    np.testing.assert_array_equal(receptive_field(P.sliding_window(W), n, layers), expected)


def test_many_layers_saturate_at_the_transitive_closure():
    n = 30
    R = receptive_field(P.sliding_window(2), n, 10**6)
    q, k = np.indices((n, n))
    np.testing.assert_array_equal(R, k <= q)


def test_one_global_token_reaches_everything_in_two_layers():
    n = 64
    p = P.band(1) | P.global_tokens(1)
    assert not receptive_field(P.band(1), n, 2).all()
    assert not receptive_field(p, n, 1).all()
    assert receptive_field(p, n, 2).all()


def test_pattern_and_its_mask_give_the_same_receptive_field():
    p = P.causal() & (P.sliding_window(3) | P.sinks(1))
    np.testing.assert_array_equal(receptive_field(p, 50, 3), receptive_field(p.mask(50), 50, 3))


def test_receptive_field_bad_input():
    m = causal_window_mask(5, 2)
    with pytest.raises(ValueError, match="pattern"):
        receptive_field(m, 6, 1)  # shape != (n, n)
    with pytest.raises(TypeError, match="pattern"):
        receptive_field(m.astype(int), 5, 1)
    with pytest.raises(ValueError, match="pattern"):
        receptive_field(np.ones((5, 4), bool), 5, 1)
    with pytest.raises(TypeError, match="pattern"):
        receptive_field("causal", 5, 1)
    with pytest.raises(ValueError, match="layers"):
        receptive_field(m, 5, -1)
    with pytest.raises(TypeError, match="layers"):
        receptive_field(m, 5, 1.0)
    with pytest.raises(ValueError, match="n"):
        receptive_field(m, 0, 1)


# --- hops -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, r", [(2, 1), (10, 1), (10, 3), (33, 4), (100, 7), (50, 49)])
def test_band_hops_from_first_to_last_is_ceil(n, r):
    expected = math.ceil((n - 1) / r)
    assert hops(band_mask(n, r), n, 0, n - 1) == expected
    assert hops(P.band(r), n, 0, n - 1) == expected
    assert hops(P.band(r), n, n - 1, 0) == expected  # bidirectional


@pytest.mark.parametrize("r", [1, 2, 5])
def test_band_plus_one_global_token_is_a_star_graph(r):
    n = 40
    p = P.band(r) | P.global_tokens(1)
    worst = max(hops(p, n, s, d) for s in range(n) for d in range(n))
    assert worst == 2
    assert hops(p, n, 0, n - 1) == 1  # the global token itself is one hop from everyone


def test_hops_agrees_with_receptive_field():
    rng = np.random.default_rng(0)
    n = 12
    for _ in range(20):
        m = rng.random((n, n)) < 0.15
        fields = [receptive_field(m, n, L) for L in range(n)]
        for src in range(n):
            for dst in range(n):
                h = hops(m, n, src, dst)
                reach = [R[dst, src] for R in fields]
                if h is None:
                    assert not any(reach)
                else:
                    assert reach[h] and not any(reach[:h])


def test_hops_none_when_unreachable():
    n = 8
    causal = np.tril(np.ones((n, n), bool))
    assert hops(causal, n, 5, 2) is None  # information never flows backwards
    assert hops(causal, n, 2, 5) == 1
    assert hops(P.causal(), n, 7, 0) is None
    assert hops(np.zeros((n, n), bool), n, 0, 1) is None
    assert hops(np.zeros((n, n), bool), n, 3, 3) == 0


def test_hops_causal_window_and_sinks():
    n = 100
    assert hops(P.sliding_window(5), n, 0, 99) == math.ceil(99 / 4)
    # A causal sink: token 0's information reaches every later token in one layer,
    # but other tokens still have to crawl along the window.
    p = P.causal() & (P.sliding_window(5) | P.sinks(1))
    assert hops(p, n, 0, 99) == 1
    assert hops(p, n, 1, 99) == math.ceil(98 / 4)


def test_hops_bad_input():
    m = band_mask(5, 1)
    with pytest.raises(ValueError, match="src"):
        hops(m, 5, 5, 0)
    with pytest.raises(ValueError, match="dst"):
        hops(m, 5, 0, -1)
    with pytest.raises(TypeError, match="src"):
        hops(m, 5, 0.0, 1)
    with pytest.raises(ValueError, match="pattern"):
        hops(m, 4, 0, 1)


# --- pairs_scored ---------------------------------------------------------------------------


def test_pairs_scored():
    n = 1024
    assert pairs_scored(P.causal(), n) == n * (n + 1) // 2
    assert pairs_scored(np.tril(np.ones((n, n), bool)), n, layers=2, heads=3) == 6 * (n * (n + 1) // 2)
    # The fact sheet's closed form: look-back 128 (W = 129) plus 4 sinks, N = 1024.
    p = P.causal() & (P.from_lookback(128) | P.sinks(4))
    assert pairs_scored(p, n) == 127_414
    assert pairs_scored(p, n, layers=32, heads=32) == 127_414 * 32 * 32
    assert pairs_scored(p.mask(n), n) == 127_414


def test_pairs_scored_bad_input():
    with pytest.raises(ValueError, match="layers"):
        pairs_scored(P.causal(), 8, layers=0)
    with pytest.raises(ValueError, match="heads"):
        pairs_scored(P.causal(), 8, heads=0)
    with pytest.raises(ValueError, match="pattern"):
        pairs_scored(np.ones((4, 4), bool), 8)
