"""Tests for globattn_lite.costs: KV-cache arithmetic, presets, receptive field, hops, pairs."""

import dataclasses
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
    hop_matrix,
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
    # (layers, query heads, KV heads, head_dim, window, local layers, max_context): each from its config (see source)
    expected = {
        "Llama-2-7B": (32, 32, 32, 128, None, 0, 4096),
        "Mistral-7B": (32, 32, 8, 128, 4096, 32, 8192),
        "Gemma-2-9B": (42, 16, 8, 256, 4096, 21, 8192),
        "Falcon-7B": (32, 71, 1, 64, None, 0, 2048),
        "Llama-3.1-8B": (32, 32, 8, 128, None, 0, 131072),
        "Mistral-7B-v0.2": (32, 32, 8, 128, None, 0, 32768),
        "Gemma-3-12B": (48, 16, 8, 256, 1024, 40, 131072),
        "gpt-oss-20b": (24, 64, 8, 64, 128, 12, 131072),
        "DeepSeek-V3": (61, 128, 128, 128, None, 0, 131072),
    }
    assert set(PRESETS) == set(expected)
    for name, (layers, heads, kv_heads, head_dim, window, local, context) in expected.items():
        p = PRESETS[name]
        assert p.name == name
        assert (p.layers, p.heads, p.kv_heads, p.head_dim, p.sliding_window, p.local_layers, p.max_context) == (
            layers,
            heads,
            kv_heads,
            head_dim,
            window,
            local,
            context,
        )
        assert "config" in p.source and p.layer_pattern and p.parameters > 1e9
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'layers'"):
        PRESETS["Llama-2-7B"].layers = 1  # frozen


def test_parameter_counts_computed_from_the_configs():
    # Hand-computed from config.json: embeddings (x2 when untied) + 32 x (q, k, v, o + 3 MLP matrices + 2 norms) + norm.
    llama2 = 2 * 32000 * 4096 + 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    assert llama2 == 6_738_415_616 == PRESETS["Llama-2-7B"].parameters
    kv = 2 * 4096 * 8 * 128  # GQA: k and v project to 8 heads of 128
    mistral = 2 * 32000 * 4096 + 32 * (2 * 4096 * 4096 + kv + 3 * 4096 * 14336 + 2 * 4096) + 4096
    assert mistral == 7_241_732_096 == PRESETS["Mistral-7B"].parameters == PRESETS["Mistral-7B-v0.2"].parameters
    llama31 = 2 * 128256 * 4096 + 32 * (2 * 4096 * 4096 + kv + 3 * 4096 * 14336 + 2 * 4096) + 4096
    assert llama31 == 8_030_261_248 == PRESETS["Llama-3.1-8B"].parameters  # Meta's published exact count
    # Gemma (tied embeddings, 4 norms per layer; Gemma 3 adds q and k norms of head_dim each): 16 q / 8 KV heads of 256
    gemma2 = 256000 * 3584 + 42 * (3584 * 256 * (2 * 16 + 2 * 8) + 3 * 3584 * 14336 + 4 * 3584) + 3584
    assert gemma2 == 9_241_705_984 == PRESETS["Gemma-2-9B"].parameters
    gemma3 = 262144 * 3840 + 48 * (3840 * 256 * (2 * 16 + 2 * 8) + 3 * 3840 * 15360 + 4 * 3840 + 2 * 256) + 3840
    assert gemma3 == 11_765_788_416 == PRESETS["Gemma-3-12B"].parameters
    assert PRESETS["Llama-2-7B"].weights_bytes() == 2 * llama2
    assert PRESETS["Llama-2-7B"].weights_bytes(0.5) == llama2 // 2
    assert PRESETS["gpt-oss-20b"].weights_bytes(1) == 20.9e9  # all experts stay in memory, not the 3.6B active


def test_native_stacks_follow_the_configs_layer_types():
    gemma3 = PRESETS["Gemma-3-12B"].native_stack
    assert len(gemma3) == 48 and [i for i, layer in enumerate(gemma3) if layer is None] == list(range(5, 48, 6))
    gpt_oss = PRESETS["gpt-oss-20b"].native_stack
    assert gpt_oss[0::2] == (128,) * 12 and gpt_oss[1::2] == (None,) * 12  # sliding first
    assert PRESETS["Mistral-7B"].native_stack == (4096,) * 32
    assert PRESETS["Mistral-7B-v0.2"].native_stack == (None,) * 32
    g = PRESETS["Gemma-3-12B"]
    per_layer = 2 * 8 * 256 * 2
    assert g.kv_bytes(131072, "native") == per_layer * (40 * 1024 + 8 * 131072)
    assert g.stack_kv_bytes(g.native_stack, 131072) == g.kv_bytes(131072, "native")


def test_mqa_and_mla_bytes_per_token():
    assert PRESETS["Falcon-7B"].kv_bytes_per_token() == 2 * 32 * 1 * 64 * 2 == 8 * KiB  # one KV head
    ds = PRESETS["DeepSeek-V3"]
    # one latent of kv_lora_rank 512 + one RoPE key of 64, shared by all 128 heads, per token and layer
    assert ds.kv_elements_per_token_layer == 576
    assert ds.kv_bytes_per_token() == 61 * 576 * 2 == 70_272
    # what 128 heads of K and V (128 dims each) would cost instead: 2 * 128 * 128 = 32,768 elements per layer
    assert 2 * ds.kv_heads * ds.head_dim / ds.kv_elements_per_token_layer == pytest.approx(56.9, abs=0.05)
    assert ds.kv_bytes(1000, batch=2, bytes_per_element=1) == 2 * 1000 * 61 * 576


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


def test_preset_fields_are_asserted():
    # presets are filled by costs itself (PRESETS), so a bad one is a bug: it asserts
    with pytest.raises(AssertionError, match="x: local_layers with global_every=6"):
        ModelPreset("x", 12, 4, 4, 8, 16, "", "", local_layers=9, global_every=6)
    assert ModelPreset("x", 12, 4, 4, 8, 16, "", "", local_layers=10, global_every=6).global_layers == 2
    assert ModelPreset("x", 4, 4, 4, 8, 16, "", "", local_layers=4).global_layers == 0
    for bad in (dict(max_context=0), dict(parameters=-1.0), dict(kv_latent_dim=0)):
        with pytest.raises(AssertionError, match="x: max_context, kv_latent_dim, parameters"):
            ModelPreset("x", 2, 4, 4, 8, None, "", "", **bad)
    with pytest.raises(AssertionError, match="name, layer_pattern, source: strings"):
        ModelPreset(7, 2, 4, 4, 8, None, "", "")
    with pytest.raises(AssertionError, match="x: heads must be a multiple of kv_heads"):
        ModelPreset("x", 2, 6, 4, 8, None, "", "")
    with pytest.raises(AssertionError, match="x: needs a sliding_window"):
        ModelPreset("x", 2, 4, 4, 8, None, "", "", local_layers=1)
    with pytest.raises(AssertionError, match="x: local_layers$"):
        ModelPreset("x", 4, 4, 4, 8, 16, "", "", local_layers=3)
    with pytest.raises(ValueError, match="x has no parameter count: weights_bytes needs ModelPreset.parameters"):
        ModelPreset("x", 2, 4, 4, 8, None, "", "").weights_bytes()


def test_preset_batch_scales_linearly():
    llama = PRESETS["Llama-2-7B"]
    assert llama.kv_bytes(4096, batch=8) == 16 * GiB


def test_preset_method_arguments_are_validated():
    with pytest.raises(ValueError, match=r"policy must be one of \[.*\], got 'rolling'"):
        PRESETS["Mistral-7B"].kv_bytes(10, policy="rolling")
    with pytest.raises(ValueError, match="window is required for policy 'window'"):
        PRESETS["Mistral-7B"].kv_bytes(10, policy="window")
    with pytest.raises(ValueError, match="policy 'native' uses the model's own sliding_window"):
        PRESETS["Mistral-7B"].kv_bytes(10, policy="native", window=16)
    with pytest.raises(ValueError, match="tokens must be >= 0, got -1"):
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
    with pytest.raises(ValueError, match=r"policy must be one of \['dense', 'sinks', 'window'\], got 'streaming'"):
        kv_entries("streaming", 10, window=4)
    with pytest.raises(TypeError, match=r"policy must be a string, one of \[.*\], got None"):
        kv_entries(None, 10, window=4)
    with pytest.raises(ValueError, match="window is required for policy 'window'"):
        kv_entries("window", 10)
    with pytest.raises(ValueError, match="window is required for policy 'sinks'"):
        kv_entries("sinks", 10, sinks=4)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        kv_entries("window", 10, window=0)
    with pytest.raises(ValueError, match="sinks=2 needs policy 'sinks'"):
        kv_entries("window", 10, window=4, sinks=2)
    with pytest.raises(ValueError, match="sinks must be >= 0, got -1"):
        kv_entries("sinks", 10, window=4, sinks=-1)
    with pytest.raises(ValueError, match="t must be >= 0, got -1"):
        kv_entries("dense", -1)
    with pytest.raises(TypeError, match=r"t must be a whole number \(int\), got 2\.5"):
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
    with pytest.raises(ValueError, match="budget_bytes must be >= 0, got -1"):
        max_sequences(-1, 32, 32, 128, 4096)
    with pytest.raises(ValueError, match="budget_bytes must be finite, got inf"):
        max_sequences(float("inf"), 32, 32, 128, 4096)
    with pytest.raises(ValueError, match="tokens must be >= 1, got 0"):
        max_sequences(GiB, 32, 32, 128, 0)
    with pytest.raises(TypeError, match="budget_bytes must be a real number, got '1GB'"):
        max_sequences("1GB", 32, 32, 128, 4096)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(layers=0), ValueError, "layers must be >= 1, got 0"),
        (dict(kv_heads=0), ValueError, "kv_heads must be >= 1, got 0"),
        (dict(head_dim=1.5), TypeError, r"head_dim must be a whole number \(int\), got 1\.5"),
        (dict(tokens=-1), ValueError, "tokens must be >= 0, got -1"),
        (dict(batch=0), ValueError, "batch must be >= 1, got 0"),
        (dict(bytes_per_element=0), ValueError, "bytes_per_element must be >= 1, got 0"),
        (dict(layers=True), TypeError, r"layers must be a whole number \(int\), got True"),
    ],
)
def test_kv_cache_bytes_bad_input(kwargs, exc, words):
    args = dict(layers=32, kv_heads=32, head_dim=128, tokens=10)
    args.update(kwargs)
    with pytest.raises(exc, match=words):
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
    with pytest.raises(ValueError, match=r"pattern must have shape \(N, N\) = \(6, 6\), got \(5, 5\)"):
        receptive_field(m, 6, 1)  # shape != (n, n)
    with pytest.raises(TypeError, match=r"pattern must be a boolean array .* or a Pattern, got dtype int64"):
        receptive_field(m.astype(int), 5, 1)
    with pytest.raises(ValueError, match=r"pattern must be square \(n x n\), got shape \(5, 4\)"):
        receptive_field(np.ones((5, 4), bool), 5, 1)
    with pytest.raises(TypeError, match=r"pattern must be a Pattern .* or a boolean \(n, n\) array"):
        receptive_field("causal", 5, 1)
    with pytest.raises(ValueError, match="layers must be >= 0, got -1"):
        receptive_field(m, 5, -1)
    with pytest.raises(TypeError, match=r"layers must be a whole number \(int\), got 1\.0"):
        receptive_field(m, 5, 1.0)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
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
    with pytest.raises(ValueError, match="src must be <= 4, got 5"):
        hops(m, 5, 5, 0)
    with pytest.raises(ValueError, match="dst must be >= 0, got -1"):
        hops(m, 5, 0, -1)
    with pytest.raises(TypeError, match=r"src must be a whole number \(int\), got 0\.0"):
        hops(m, 5, 0.0, 1)
    with pytest.raises(ValueError, match=r"pattern must have shape \(N, N\) = \(4, 4\), got \(5, 5\)"):
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
    with pytest.raises(ValueError, match="layers must be >= 1, got 0"):
        pairs_scored(P.causal(), 8, layers=0)
    with pytest.raises(ValueError, match="heads must be >= 1, got 0"):
        pairs_scored(P.causal(), 8, heads=0)
    with pytest.raises(ValueError, match=r"pattern must have shape \(N, N\) = \(8, 8\), got \(4, 4\)"):
        pairs_scored(np.ones((4, 4), bool), 8)


# --- precision, layer stacks, serving, compute -----------------------------------------------


def test_element_sizes_down_to_4_bits_with_group_scales():
    from globattn_lite.costs import PRECISIONS, element_bytes

    assert [PRECISIONS[k] for k in ("fp32", "bf16", "fp16", "fp8", "int8", "int4")] == [4, 2, 2, 1, 1, 0.5]
    assert element_bytes("int4") == 0.5
    assert element_bytes("int4", group_size=32) == 0.5 + 2 / 32  # one fp16 scale per 32 elements
    assert element_bytes("int8", group_size=64, scale_bytes=4) == 1 + 4 / 64  # fp16 scale + fp16 zero point
    assert element_bytes(0.5) == 0.5
    assert kv_cache_bytes(32, 8, 128, 4096, bytes_per_element=0.5) == GiB // 8
    assert kv_cache_bytes(1, 1, 1, 1, bytes_per_element=0.5) == 1
    assert kv_cache_bytes(1, 1, 1, 1, bytes_per_element=0.3) == 1  # 0.6 bytes rounds up to a whole byte
    assert PRESETS["Mistral-7B-v0.2"].kv_bytes(60_000, bytes_per_element=0.5) == 60_000 * 131_072 // 4
    with pytest.raises(ValueError, match=r"precision must be one of \[.*\], got 'int3'"):
        element_bytes("int3")
    with pytest.raises(ValueError, match="group_size must be >= 1, got 0"):
        element_bytes("int4", group_size=0)
    with pytest.raises(ValueError, match=r"bytes_per_element must be > 0, got -0\.5"):
        kv_cache_bytes(1, 1, 1, 1, bytes_per_element=-0.5)


def test_layer_stack_kv_bytes_hand_computed():
    from globattn_lite.costs import describe_stack, layer_stack_entries, layer_stack_kv_bytes

    stack = [None, 4096, (1020, 4)]
    np.testing.assert_array_equal(layer_stack_entries(stack, 10_000), [10_000, 4096, 1024])
    np.testing.assert_array_equal(layer_stack_entries(stack, 500), [500, 500, 500])
    per_entry = 2 * 8 * 128 * 2
    assert layer_stack_kv_bytes(stack, 8, 128, 10_000) == per_entry * (10_000 + 4096 + 1024)
    assert layer_stack_kv_bytes(stack, 8, 128, 10_000, batch=3, bytes_per_element=1) == 3 * per_entry // 2 * 15_120
    assert layer_stack_kv_bytes([None] * 32, 32, 128, 4096) == kv_cache_bytes(32, 32, 128, 4096) == 2 * GiB
    assert describe_stack([1024] * 5 + [None]) == "5 x window 1,024 + 1 x full"
    assert describe_stack([(2044, 4)] * 2) == "2 x 4 sinks + 2,044 recent"
    with pytest.raises(TypeError, match="layers must be a non-empty sequence with one entry per layer"):
        layer_stack_entries([], 10)
    with pytest.raises(ValueError, match=r"layers\[1\] window W must be >= 1, got 0"):
        layer_stack_entries([None, 0], 10)
    with pytest.raises(ValueError, match=r"layers\[0\] must be None, an int W or a pair \(W, S\), got \(1, 2, 3\)"):
        layer_stack_entries([(1, 2, 3)], 10)
    with pytest.raises(TypeError, match=r"layers\[0\] sinks S must be a whole number \(int\), got 1\.5"):
        layer_stack_entries([(16, 1.5)], 10)


def test_the_issues_scenario_4_numbers():
    # Mistral-7B (v0.1) can never attend further back than 4,096 tokens: 4 sinks + 16,380 recent is refused ...
    mistral = PRESETS["Mistral-7B"]
    with pytest.raises(ValueError, match="this stack keeps entries Mistral-7B can never attend to"):
        mistral.stack_kv_bytes([(16_380, 4)] * 32, 131_072)
    assert len(mistral.stack_problems([(16_380, 4)] * 32)) == 32
    assert mistral.stack_problems([2048] * 32) == []  # a smaller window is an eviction policy
    # ... its native cache is 0.50 GiB at any length, not 2.0 GiB
    assert mistral.kv_bytes(131_072, "native") == GiB // 2
    assert mistral.stack_kv_bytes([(16_380, 4)] * 32, 131_072, retrained=True) == 2 * GiB
    # Gemma-2-9B keeps its whole 8,192-token context in its native cache: 1.97 GiB, inside a 2 GiB budget
    gemma = PRESETS["Gemma-2-9B"]
    assert gemma.kv_bytes(8192, "native") == 2 * 8 * 256 * 2 * (21 * 8192 + 21 * 4096) == 2_113_929_216
    assert round(gemma.kv_bytes(8192, "native") / GiB, 2) == 1.97
    assert not gemma.beyond_context(8192) and gemma.beyond_context(8193)
    assert not PRESETS["Mistral-7B-v0.2"].beyond_context(32768)
    with pytest.raises(ValueError, match="a stack for Gemma-2-9B needs 42 layers, got 32"):
        gemma.stack_problems([None] * 32)


@given(st.integers(0, 70), st.integers(1, 20), st.integers(0, 6))
def test_stack_pairs_closed_form_equals_counting_the_mask(n, W, S):
    from globattn_lite.costs import layer_stack_pairs

    # a sequence shorter than S has only n first tokens to keep (sinks(S) itself needs n >= S)
    counted = int((P.causal() & (P.sliding_window(W) | P.sinks(min(S, n)))).mask(n).sum()) if n else 0
    assert layer_stack_pairs([(W, S)], n) == counted
    windowed = int((P.causal() & P.sliding_window(W)).mask(n).sum()) if n else 0
    assert layer_stack_pairs([None, W], n) == n * (n + 1) // 2 + windowed


def test_prefix_caching_paging_and_tenants_hand_computed():
    from globattn_lite.costs import kv_pool_bytes, max_concurrent_sequences

    m = PRESETS["Mistral-7B-v0.2"]  # 32 full layers, 128 KiB per token
    per_token = 131_072
    # 10 sequences sharing a 500-token prefix, 1000 own tokens each: the prefix is held once
    assert kv_pool_bytes(m, 1000, 10, prefix_tokens=500) == per_token * (500 + 10 * 1000)
    assert kv_pool_bytes(m, 1500, 10) == per_token * 15_000  # without prefix caching
    # two isolated tenants never share: each holds its own copy of the prefix
    assert kv_pool_bytes(m, 1000, 10, prefix_tokens=500, tenants=2) == 2 * per_token * 10_500
    # paged blocks of 16: 500 -> 512 and 1000 -> 1008 entries per layer
    assert kv_pool_bytes(m, 1000, 10, prefix_tokens=500, block_size=16) == per_token * (512 + 10 * 1008)
    # a windowed layer keeps min(prefix + own, W) per sequence (Mistral v0.1's rolling buffer)
    assert kv_pool_bytes(PRESETS["Mistral-7B"], 8000, 3, prefix_tokens=1000) == 3 * 4096 * per_token
    # reserving the maximum vs paging at the expected length
    budget = 16 * GiB
    assert max_concurrent_sequences(budget, m, 32_768) == 4  # 4 GiB per reserved 32K sequence
    assert max_concurrent_sequences(budget, m, 2_000, block_size=16) == budget // (2_000 * per_token)  # 125 blocks
    shared = budget - 500 * per_token  # the prefix is held once
    assert max_concurrent_sequences(budget, m, 1_000, prefix_tokens=500) == shared // (1000 * per_token)
    assert max_concurrent_sequences(100, m, 1_000, prefix_tokens=500) == 0
    with pytest.raises(TypeError, match="preset must be a ModelPreset"):
        kv_pool_bytes("Mistral-7B", 10, 1)
    with pytest.raises(ValueError, match="this stack keeps entries Mistral-7B can never attend to"):
        kv_pool_bytes(PRESETS["Mistral-7B"], 10, 1, stack=[None] * 32)


def test_prefill_flops_decode_bytes_and_a_hardware_line():
    from globattn_lite.costs import Hardware, decode_bytes_per_token, prefill_flops

    m = PRESETS["Mistral-7B-v0.2"]
    n = 32_768
    dense_pairs = 32 * n * (n + 1) // 2
    assert prefill_flops(m, n) == 2 * m.parameters * n + 4 * 128 * 32 * dense_pairs
    interleaved = tuple(None if (i + 1) % 6 == 0 else 1024 for i in range(32))  # 5 local : 1 global, retrained what-if
    # attention FLOPs alone shrink to about 0.21; with the projections and MLPs the prompt costs about 0.70
    weight_flops = 2 * m.parameters * n  # projections and MLPs
    attention_only = (prefill_flops(m, n, interleaved, retrained=True) - weight_flops) / (4 * 128 * 32 * dense_pairs)
    assert round(attention_only, 2) == 0.21
    assert round(prefill_flops(m, n, interleaved, retrained=True) / prefill_flops(m, n), 2) == 0.71
    # mixture of experts: the compute uses the active parameters, the weights memory the total
    oss = PRESETS["gpt-oss-20b"]
    assert prefill_flops(oss, 1) == 2 * 3.6e9 + 4 * 64 * 64 * 24
    assert decode_bytes_per_token(m, n) == 2 * m.parameters + n * 131_072
    assert decode_bytes_per_token(m, n, bytes_per_parameter=0.5, bytes_per_element=1, batch=2) == (
        0.5 * m.parameters + 2 * n * 65_536
    )
    hw = Hardware(
        "assumed accelerator", peak_flops=400e12, bandwidth=2e12, flops_utilisation=0.5, bandwidth_utilisation=0.8
    )
    assert hw.time_to_first_token(m, n) == pytest.approx(prefill_flops(m, n) / 200e12)
    assert hw.tokens_per_second(m, n) == pytest.approx(1.6e12 / decode_bytes_per_token(m, n))
    with pytest.raises(ValueError, match=r"flops_utilisation is a fraction of the peak, at most 1, got 1\.5"):
        Hardware("x", 1e12, 1e12, flops_utilisation=1.5)
    with pytest.raises(ValueError, match=r"peak_flops must be > 0, got 0\.0"):
        Hardware("x", 0, 1e12)


def test_against_published_kv_cache_estimators():
    """Figures published by three independent KV-cache estimators:

    * llama.cpp's f16 KV allocations at a 2,048-token context, as listed in the Hugging Face discussion
      dranger003/c4ai-command-r-v01-iMat.GGUF #6 ("Is the KV cache of these models unusually high?"):
      Meta-Llama-3-8B-Instruct 256 MiB (keys 128 MiB, values 128 MiB), Meta-Llama-3-70B-Instruct 640 MiB,
      Qwen1.5-32B-Chat 512 MiB, Yi-1.5-34B-Chat 480 MiB, c4ai-command-r-v01 2,560 MiB (it has no GQA).
      Llama 3 8B has Llama-3.1-8B's attention shape; the other shapes are from their config.json files.
    * the Rust crate kv-cache-size 0.1.1 (docs.rs README example): Llama 3.1 8B, bf16, 131,072 bytes per token.
    * the Hugging Face Space gaunernst/kv-cache-calculator (app.py): for DeepSeek-V2/V3 (MLA) it counts
      ``num_layers * (kv_lora_rank + qk_rope_head_dim)`` elements per token, for other models
      ``num_layers * num_kv_heads * head_dim * 2``; and DeepSeek-V2's paper (Table 1): MLA's cache equals
      GQA's with 2.25 groups (d_c = 4 d_h, d_h^R = d_h / 2).
    """
    MiB = 2**20
    assert PRESETS["Llama-3.1-8B"].kv_bytes(2048) == 256 * MiB
    assert PRESETS["Llama-3.1-8B"].kv_bytes(2048) // 2 == 128 * MiB  # keys alone
    assert kv_cache_bytes(80, 8, 128, 2048) == 640 * MiB  # Llama-3-70B: 80 layers, 8 KV heads
    assert kv_cache_bytes(64, 8, 128, 2048) == 512 * MiB  # Qwen1.5-32B: 64 layers, 8 KV heads
    assert kv_cache_bytes(60, 8, 128, 2048) == 480 * MiB  # Yi-1.5-34B: 60 layers, 8 KV heads
    assert kv_cache_bytes(40, 64, 128, 2048) == 2560 * MiB  # Command-R v01: 40 layers, 64 KV heads
    assert PRESETS["Llama-3.1-8B"].kv_bytes_per_token() == 131_072
    ds = PRESETS["DeepSeek-V3"]
    assert ds.kv_bytes_per_token() == ds.layers * (512 + 64) * 2
    assert ds.kv_elements_per_token_layer == 2 * 2.25 * ds.head_dim  # MLA = GQA with 2.25 groups of 128


def test_hop_matrix_is_hops_for_every_pair_within_the_layers():
    rng = np.random.default_rng(1)
    n = 10
    for layers in (0, 1, 3, 20):
        m = rng.random((n, n)) < 0.2
        H = hop_matrix(m, n, layers)
        for src in range(n):
            for dst in range(n):
                h = hops(m, n, src, dst)
                assert H[dst, src] == (h if h is not None and h <= layers else -1)
    np.testing.assert_array_equal(hop_matrix(P.sliding_window(3), 6, 5), hop_matrix(P.sliding_window(3).mask(6), 6, 5))
    with pytest.raises(ValueError, match="layers must be >= 0, got -1"):
        hop_matrix(P.causal(), 4, -1)
