"""Tests for globattn_lite.softmax_tools: sinks, SoftMax_1, entropy and eviction."""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from globattn_lite.softmax_tools import (
    entropy,
    evict,
    eviction_renormalisation,
    sink_distribution,
    sink_weight,
    slide_weight_change,
    softmax_with_sink,
    window_outputs,
    window_weights,
)

finite_scores = arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False),
)


def plain_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- softmax_with_sink / sink_weight ---------------------------------------------------


@given(finite_scores, st.floats(-20, 20))
def test_sink_weights_sum_below_one_and_complement_the_sink(scores, b):
    w = softmax_with_sink(scores, b)
    assert w.shape == scores.shape
    assert (w >= 0).all()
    # < 1 exactly; in float64 it rounds to 1 once the sink's share drops below ~1e-16.
    assert w.sum() <= 1.0
    assert w.sum() == pytest.approx(1.0 - sink_weight(scores, b), abs=1e-12)
    if sink_weight(scores, b) > 1e-12:
        assert w.sum() < 1.0


@given(finite_scores)
def test_softmax_one_equals_softmax_over_prepended_zero_logit(scores):
    explicit = plain_softmax(np.concatenate([[0.0], scores]))
    np.testing.assert_allclose(softmax_with_sink(scores), explicit[1:], rtol=1e-12, atol=1e-15)
    assert sink_weight(scores) == pytest.approx(explicit[0], rel=1e-12, abs=1e-15)


@given(finite_scores, st.floats(-20, 20))
def test_learned_sink_logit_equals_softmax_with_the_logit_prepended(scores, b):
    # gpt-oss: append the per-head sink logit, softmax, drop the sink column.
    explicit = plain_softmax(np.concatenate([[b], scores]))
    np.testing.assert_allclose(softmax_with_sink(scores, b), explicit[1:], rtol=1e-12, atol=1e-15)


def test_softmax_one_output_equals_attention_with_zero_key_and_value_prepended():
    # Independent reference: torch SDPA over [0, K] and [0, V].
    gen = torch.Generator().manual_seed(0)
    heads, n_q, n_k, d, d_v = 3, 5, 7, 8, 6
    q = torch.randn(heads, n_q, d, generator=gen, dtype=torch.float64)
    k = torch.randn(heads, n_k, d, generator=gen, dtype=torch.float64)
    v = torch.randn(heads, n_k, d_v, generator=gen, dtype=torch.float64)
    k0 = torch.cat([torch.zeros(heads, 1, d, dtype=torch.float64), k], dim=1)
    v0 = torch.cat([torch.zeros(heads, 1, d_v, dtype=torch.float64), v], dim=1)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k0, v0).numpy()

    scores = (q @ k.transpose(-1, -2)).numpy() / math.sqrt(d)
    weights = softmax_with_sink(scores, 0.0)
    ours = weights @ v.numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)
    # And the plain softmax (no sink) does NOT match: the zero key changes the output.
    assert not np.allclose(plain_softmax(scores) @ v.numpy(), reference)


def test_per_head_sink_logits_broadcast_over_rows():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(4, 3, 6))  # (heads, queries, keys)
    b = np.array([-2.0, 0.0, 1.5, 5.0])[:, None]  # one sink logit per head
    w = softmax_with_sink(scores, b)
    for h in range(4):
        for i in range(3):
            np.testing.assert_allclose(w[h, i], softmax_with_sink(scores[h, i], float(b[h, 0])), rtol=1e-12)
    assert sink_weight(scores, b).shape == (4, 3)


def test_batched_rows_match_one_row_at_a_time():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(5, 9)) * 4
    w = softmax_with_sink(scores, 1.0)
    sw = sink_weight(scores, 1.0)
    for i in range(5):
        np.testing.assert_allclose(w[i], softmax_with_sink(scores[i], 1.0), rtol=1e-12)
        assert sw[i] == pytest.approx(sink_weight(scores[i], 1.0), rel=1e-12)


def test_sink_takes_everything_when_all_keys_are_masked():
    scores = np.full(4, -np.inf)
    assert np.array_equal(softmax_with_sink(scores), np.zeros(4))
    assert sink_weight(scores) == 1.0


def test_sink_is_numerically_stable_for_huge_scores_and_logits():
    big = np.array([1e4, 1e4 - 1.0, -1e4])
    w = softmax_with_sink(big, 0.0)
    assert np.isfinite(w).all()
    # The sink (logit 0) is exp(-1e4) times smaller than the top key: it gets nothing.
    np.testing.assert_allclose(w, plain_softmax(big), rtol=1e-12)
    assert sink_weight(big, 0.0) == 0.0

    # A huge sink logit takes all the mass; a very negative one takes none.
    s = np.array([1.0, 2.0, 3.0])
    assert sink_weight(s, 1e4) == 1.0
    assert np.array_equal(softmax_with_sink(s, 1e4), np.zeros(3))
    np.testing.assert_allclose(softmax_with_sink(s, -1e4), plain_softmax(s), rtol=1e-12)

    low = np.array([-1e4, -1e4 + 2.0])
    assert sink_weight(low) == 1.0
    np.testing.assert_allclose(softmax_with_sink(low, -1e4), plain_softmax(np.array([-1e4, -1e4, -1e4 + 2.0]))[1:])


def test_equal_scores_and_sink_split_evenly():
    w = softmax_with_sink(np.zeros(3), 0.0)
    np.testing.assert_allclose(w, np.full(3, 0.25))
    assert sink_weight(np.zeros(3), 0.0) == pytest.approx(0.25)


# --- entropy ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_entropy_of_uniform_is_log_n(n):
    assert entropy(np.full(n, 1.0 / n)) == pytest.approx(math.log(n), rel=1e-12, abs=1e-15)


def test_entropy_ignores_zeros_and_is_zero_for_one_hot():
    assert entropy(np.array([0.0, 1.0, 0.0])) == 0.0
    assert math.copysign(1.0, entropy(np.array([1.0]))) == 1.0  # 0.0, not -0.0 (prints "-0.000")
    assert (np.signbit(entropy(np.eye(3))) == False).all()  # noqa: E712
    assert entropy(np.array([0.5, 0.0, 0.5, 0.0])) == pytest.approx(math.log(2))


def test_entropy_batched_and_axis():
    w = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(entropy(w), [math.log(4), 0.0])
    np.testing.assert_allclose(entropy(w.T, axis=0), [math.log(4), 0.0])


def test_entropy_grows_as_scores_flatten():
    s = np.array([3.0, 1.0, 0.0, -1.0])
    temps = [0.25, 1.0, 4.0, 100.0]
    values = [entropy(plain_softmax(s / t)) for t in temps]
    assert values == sorted(values)
    assert values[-1] < math.log(4)


def test_entropy_refuses_sink_weights_and_names_the_two_real_entropies():
    s, b = np.array([0.5, -1.0, 2.0, 0.0]), 1.0
    w = softmax_with_sink(s, b)  # sums to 1 - sink share < 1: not a distribution
    with pytest.raises(ValueError, match=r"sum to 1.*sink_distribution.*softmax\(scores\)"):
        entropy(w)
    with pytest.raises(ValueError, match=r"weights must sum to 1 along axis -1 .*, got sums from 0\.6 to 1\."):
        entropy(np.array([[0.5, 0.5], [0.3, 0.3]]))  # one bad row is enough
    # what the refused formula would have given: (1 - s)(H(p) - ln(1 - s)), an artefact
    share, p = sink_weight(s, b), plain_softmax(s)
    artefact = -(w * np.log(w)).sum()
    assert artefact == pytest.approx((1 - share) * (entropy(p) - math.log(1 - share)))


@given(finite_scores, st.floats(-20, 20))
def test_sink_distribution_is_a_distribution_with_the_sink_first(scores, b):
    full = sink_distribution(scores, b)
    assert full.shape == (scores.size + 1,)
    assert full.sum() == pytest.approx(1.0, abs=1e-12)
    assert full[0] == pytest.approx(sink_weight(scores, b), abs=1e-15)
    np.testing.assert_allclose(full[1:], softmax_with_sink(scores, b), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(sink_distribution(scores, b), plain_softmax(np.r_[b, scores]), rtol=1e-12, atol=1e-300)


@given(finite_scores, st.floats(-20, 20))
def test_the_sink_rescales_the_real_keys_and_leaves_their_distribution_unchanged(scores, b):
    share = sink_weight(scores, b)
    # 1 - share loses digits when the sink takes almost everything: compare within 1e-15 absolute
    np.testing.assert_allclose(softmax_with_sink(scores, b), (1 - share) * plain_softmax(scores), rtol=1e-9, atol=1e-15)
    if share < 1 - 1e-9:  # renormalised over the real keys: the plain softmax, whatever b is
        w = softmax_with_sink(scores, b)
        np.testing.assert_allclose(w / w.sum(), plain_softmax(scores), rtol=1e-8, atol=1e-300)


def test_entropy_with_the_sink_counted_is_binary_entropy_plus_the_rest():
    s, b = np.array([1.0, 0.0, -2.0]), 0.5
    share, p = sink_weight(s, b), plain_softmax(s)
    h = -share * math.log(share) - (1 - share) * math.log(1 - share)
    assert entropy(sink_distribution(s, b)) == pytest.approx(h + (1 - share) * entropy(p), rel=1e-12)


def test_sink_distribution_batched_per_head():
    scores = np.random.default_rng(4).normal(size=(3, 5))
    b = np.array([-1.0, 0.0, 4.0])
    full = sink_distribution(scores, b)
    assert full.shape == (3, 6)
    np.testing.assert_allclose(full.sum(-1), 1.0)
    np.testing.assert_allclose(full[:, 0], sink_weight(scores, b))
    np.testing.assert_allclose(entropy(full), [entropy(sink_distribution(scores[h], b[h])) for h in range(3)])


# --- what a sink changes as a window slides (known answers) ------------------------------


def test_window_weights_rows_are_the_windows():
    s = np.arange(6.0)
    w = window_weights(s, 3)
    assert w.shape == (4, 3)
    np.testing.assert_allclose(w[2], plain_softmax(s[2:5]))
    np.testing.assert_allclose(window_weights(s, 3, sink_logit=1.0)[2], softmax_with_sink(s[2:5], 1.0))


@pytest.mark.parametrize("b", [None, -2.0, 0.0, 3.0])
@pytest.mark.parametrize("W", [2, 5, 16])
def test_slide_weight_change_when_one_relevant_key_arrives(W, b):
    # all scores 0, one key of score a arrives: each staying weight goes from 1/(e^b + W) to
    # 1/(e^b + W - 1 + e^a); no other step changes anything
    a, T, p = 3.0, 60, 25
    s = np.zeros(T)
    s[p] = a
    change = slide_weight_change(s, W, b)
    assert change.shape == (T - W,)
    eb = 0.0 if b is None else math.exp(b)
    expected = (math.exp(a) - 1) / ((eb + W) * (eb + W - 1 + math.exp(a)))
    arrive = p - W  # the slide from window p - W .. p - 1 to p - W + 1 .. p
    assert change[arrive] == pytest.approx(expected, rel=1e-12)
    quiet = np.ones(T - W, dtype=bool)
    quiet[[arrive, p]] = False  # the arrival and the departure (leaving window p .. p + W - 1)
    np.testing.assert_allclose(change[quiet], 0.0, atol=1e-15)
    assert change[p] == pytest.approx(expected, rel=1e-12)  # leaving: the same jump back


def test_the_staying_weights_move_exactly_one_minus_s_times_one_minus_s_next_as_much():
    # w_sink = (1 - s) p, and for a staying key the change is e^(s_j) |1/(e^b + Z') - 1/(e^b + Z)|
    # = (1 - s)(1 - s') e^(s_j) |1/Z' - 1/Z|: the sink's smoothing of the weights is its gate, twice
    s, W, b = np.random.default_rng(8).normal(size=200) * 2, 12, 2.0
    share = sink_weight(np.lib.stride_tricks.sliding_window_view(s, W), b)
    np.testing.assert_allclose(
        slide_weight_change(s, W, b), (1 - share[:-1]) * (1 - share[1:]) * slide_weight_change(s, W), rtol=1e-9
    )


def test_a_stronger_sink_moves_the_staying_weights_less():
    s = np.random.default_rng(5).normal(size=300)
    means = [slide_weight_change(s, 16, b).mean() for b in (None, 0.0, 2.0, 4.0)]
    assert means == sorted(means, reverse=True)


def test_window_outputs_with_a_sink_are_the_plain_outputs_gated_by_one_minus_the_share():
    rng = np.random.default_rng(6)
    s, v, W, b = rng.normal(size=50), rng.normal(size=(50, 3)), 8, 1.5
    plain = window_outputs(s, v, W)
    assert plain.shape == (43, 3)
    np.testing.assert_allclose(plain[10], plain_softmax(s[10:18]) @ v[10:18], rtol=1e-12)
    share = sink_weight(np.lib.stride_tricks.sliding_window_view(s, W), b)
    np.testing.assert_allclose(window_outputs(s, v, W, b), (1 - share)[:, None] * plain, rtol=1e-12, atol=1e-15)


def test_a_head_with_a_sink_can_output_almost_nothing():
    # nothing relevant: every score far below the sink logit, so the output is about e^(s - b) * W times a value
    rng = np.random.default_rng(7)
    s, v = np.full(30, -4.0), rng.normal(size=(30, 4))
    out = window_outputs(s, v, 10, sink_logit=6.0)
    share = 1 / (1 + 10 * math.exp(-10.0))
    assert np.linalg.norm(out, axis=1).max() <= (1 - share) * np.abs(v).sum(axis=1).max()
    assert np.linalg.norm(out, axis=1).max() < 1e-3
    assert np.linalg.norm(window_outputs(s, v, 10), axis=1).min() > 0.1  # without a sink it must average


def test_sliding_window_bad_input():
    with pytest.raises(ValueError, match=r"scores must be 1-D \(one score per key of the stream\), got shape \(2, 5\)"):
        window_weights(np.zeros((2, 5)), 2)
    with pytest.raises(ValueError, match="window must be <= 5, got 6"):
        window_weights(np.zeros(5), 6)
    with pytest.raises(ValueError, match="window must be at least 2: with one key no key stays in the window"):
        slide_weight_change(np.zeros(5), 1)
    with pytest.raises(ValueError, match="scores must be longer than window: the window needs room to slide"):
        slide_weight_change(np.zeros(5), 5)
    with pytest.raises(ValueError, match=r"values must have shape \(T, d\) with one row per score"):
        window_outputs(np.zeros(5), np.zeros((4, 2)), 2)
    with pytest.raises(TypeError, match=r"window must be a whole number \(int\), got 2\.5"):
        window_weights(np.zeros(5), 2.5)


# --- evict / eviction_renormalisation --------------------------------------------------


@given(finite_scores, st.data())
def test_evict_equals_softmax_over_the_kept_subset(scores, data):
    keep = data.draw(arrays(np.bool_, scores.shape))
    if not keep.any():
        keep[data.draw(st.integers(0, scores.size - 1))] = True
    w = evict(scores, keep)
    assert np.array_equal(w[~keep], np.zeros((~keep).sum()))
    np.testing.assert_allclose(w[keep], plain_softmax(scores[keep]), rtol=1e-12)
    assert w.sum() == pytest.approx(1.0)


@given(finite_scores, st.data())
def test_renormalisation_factor_is_the_ratio_of_weights(scores, data):
    keep = data.draw(arrays(np.bool_, scores.shape))
    if not keep.any():
        keep[0] = True
    factor = eviction_renormalisation(scores, keep)
    assert factor >= 1.0
    before = plain_softmax(scores)
    after = evict(scores, keep)
    np.testing.assert_allclose(after[keep], before[keep] * factor, rtol=1e-10)
    np.testing.assert_allclose(factor, 1.0 / before[keep].sum(), rtol=1e-10)


def test_evicting_a_sink_that_holds_half_the_mass_doubles_the_rest():
    # Key 0 has the same total weight as the other three keys together.
    scores = np.log(np.array([3.0, 1.0, 1.0, 1.0]))
    keep = np.array([False, True, True, True])
    assert eviction_renormalisation(scores, keep) == pytest.approx(2.0)
    np.testing.assert_allclose(evict(scores, keep), [0.0, 1 / 3, 1 / 3, 1 / 3])


def test_keeping_everything_changes_nothing():
    s = np.array([2.0, -1.0, 0.5])
    keep = np.ones(3, dtype=bool)
    assert eviction_renormalisation(s, keep) == 1.0
    np.testing.assert_allclose(evict(s, keep), plain_softmax(s))


def test_evict_batched_rows():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 6)) * 3
    keep = rng.random((4, 6)) < 0.6
    keep[:, 0] = True
    w = evict(s, keep)
    f = eviction_renormalisation(s, keep)
    assert f.shape == (4,)
    for i in range(4):
        np.testing.assert_allclose(w[i], evict(s[i], keep[i]), rtol=1e-12)
        assert f[i] == pytest.approx(eviction_renormalisation(s[i], keep[i]), rel=1e-12)


def test_evict_is_numerically_stable():
    s = np.array([1e4, -1e4, 1e4 - 3.0, -1e4 + 1.0])
    keep = np.array([False, True, True, True])
    w = evict(s, keep)
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w, [0.0, 0.0, 1.0, 0.0], atol=1e-300)
    assert eviction_renormalisation(s, keep) == pytest.approx(math.exp(3.0) + 1.0, rel=1e-9)
    # Only the tiny keys kept: the renormalisation is far beyond float64, reported as inf.
    tiny = np.array([False, True, False, True])
    assert eviction_renormalisation(s, tiny) == np.inf
    np.testing.assert_allclose(evict(s, tiny)[[1, 3]], plain_softmax(np.array([-1e4, -1e4 + 1.0])), rtol=1e-12)


def test_evict_treats_minus_inf_scores_as_masked_keys():
    s = np.array([-np.inf, 1.0, 2.0])
    keep = np.array([True, True, False])
    np.testing.assert_allclose(evict(s, keep), [0.0, 1.0, 0.0])


# --- bad input -------------------------------------------------------------------------


def test_keep_all_false_is_a_clear_error():
    with pytest.raises(ValueError, match="keep must leave at least one key with a finite score in every row"):
        evict(np.array([1.0, 2.0]), np.array([False, False]))
    with pytest.raises(ValueError, match="keep must leave at least one key with a finite score in every row"):
        eviction_renormalisation(np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="keep must leave at least one key with a finite score in every row"):
        evict(np.array([-np.inf, 2.0]), np.array([True, False]))


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: softmax_with_sink(np.array([1.0, np.nan])), ValueError, "scores must not contain NaN or +inf"),
        (lambda: softmax_with_sink(np.array([1.0, np.inf])), ValueError, "scores must not contain NaN or +inf"),
        (lambda: softmax_with_sink(np.array([])), ValueError, "scores must have at least one key along the last axis"),
        (lambda: softmax_with_sink(3.0), ValueError, "scores must have at least 1 dimension(s), got shape ()"),
        (lambda: softmax_with_sink(np.array([True, False])), TypeError, "scores must be an array of real numbers"),
        (lambda: softmax_with_sink(["a", "b"]), TypeError, "scores must be an array of real numbers"),
        (lambda: softmax_with_sink(np.zeros(3), float("nan")), ValueError, "sink_logit must be finite"),
        (lambda: softmax_with_sink(np.zeros(3), True), TypeError, "sink_logit must be a real number or array of them"),
        (lambda: softmax_with_sink(np.zeros(3), "0"), TypeError, "sink_logit must be an array of real numbers"),
        (
            lambda: sink_weight(np.zeros((2, 3)), np.zeros(5)),
            ValueError,
            "sink_logit of shape (5,) does not broadcast to the scores' leading axes (2,)",
        ),
        # one query's scores with one logit per head would silently grow an axis
        (
            lambda: softmax_with_sink(np.zeros(4), np.zeros(3)),
            ValueError,
            "sink_logit of shape (3,) does not broadcast to the scores' leading axes ()",
        ),
        (
            lambda: sink_weight(np.zeros((2, 4)), np.zeros((3, 1))),
            ValueError,
            "sink_logit of shape (3, 1) does not broadcast to the scores' leading axes (2,)",
        ),
        (lambda: entropy(np.array([0.5, -0.1, 0.6])), ValueError, "weights must be non-negative, got a minimum of"),
        (lambda: entropy(np.array([0.5, np.nan])), ValueError, "weights must be finite (no NaN or inf)"),
        (lambda: entropy(np.array([0.5, 0.5]), axis=1), ValueError, "axis must be <= 0, got 1"),
        (lambda: entropy(np.array([0.5, 0.5]), axis=0.5), TypeError, "axis must be a whole number (int), got 0.5"),
        (lambda: entropy(0.5), ValueError, "weights must have at least 1 dimension(s), got shape ()"),
        (lambda: evict(np.zeros(3), np.array([1, 0, 1])), TypeError, "keep must be a boolean array"),
        (lambda: evict(np.zeros(3), np.array([True, False])), ValueError, "keep must have the same shape as scores"),
        (
            lambda: eviction_renormalisation(np.zeros(3), [True, True]),
            ValueError,
            "keep must have the same shape as scores (3,), got (2,)",
        ),
    ],
)
def test_bad_input_names_the_argument(call, exc, words):
    with pytest.raises(exc, match=re.escape(words)):
        call()
