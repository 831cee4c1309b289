"""Tests for globattn_lite.attention.

References are independent of the code under test: PyTorch's scaled_dot_product_attention and
a hand-written torch softmax(q k^T / sqrt(d) + mask) v; the masks come from the formulas in the
contract written out with numpy, and local_global_attention is checked against dense_attention.
"""

import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from globattn_lite import attention as attn
from globattn_lite import patterns
from globattn_lite.attention import (
    attention,
    dense_attention,
    local_global_attention,
    local_global_pattern,
    softmax,
    top_k_mask,
)


def randn(*shape, seed=0, dtype=torch.float32, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def qkv(*shape, seed=0, dtype=torch.float32, grad=False):
    return tuple(randn(*shape, seed=seed + i, dtype=dtype, grad=grad) for i in range(3))


def contract_mask(n, window, sinks=0, global_tokens=0, causal=True):
    """The contract's local_global_pattern, written out with numpy."""
    q, k = np.arange(n)[:, None], np.arange(n)[None, :]
    if causal:
        return (k <= q) & (((k <= q) & (q - k < window)) | (k < sinks))
    return (np.abs(q - k) <= window) | (k < sinks) | (q < global_tokens) | (k < global_tokens)


# --------------------------------------------------------------------------- softmax


def test_softmax_matches_torch_and_rows_sum_to_one():
    x = np.random.default_rng(0).normal(size=(3, 4, 7)) * 5
    for axis in (-1, 0, 1):
        got = softmax(x, axis=axis)
        np.testing.assert_allclose(got, torch.softmax(torch.from_numpy(x), dim=axis).numpy(), rtol=1e-12)
        np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-12)


def test_softmax_is_stable_for_huge_inputs():
    got = softmax(np.array([1e4, 1e4 - 1.0, -1e4]))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, softmax(np.array([1.0, 0.0, -2e4])), rtol=1e-12)
    np.testing.assert_allclose(got[:2], [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])
    np.testing.assert_allclose(softmax(np.full(5, -1e4)), 0.2)


def test_softmax_minus_inf_is_exactly_zero_and_all_minus_inf_row_is_zeros():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    with np.errstate(all="raise"):  # no invalid-value warnings on the way
        got = softmax(x)
    assert got[0, 1] == 0.0
    np.testing.assert_allclose(got[0].sum(), 1.0)
    assert (got[1] == 0.0).all()


def test_softmax_of_ints_is_float():
    np.testing.assert_allclose(softmax([0, 0]), [0.5, 0.5])


@pytest.mark.parametrize(
    "x, axis, error, words",
    [
        ([1.0, np.nan], -1, ValueError, "x must not contain NaN or +inf (use -inf to mask an entry)"),
        ([1.0, np.inf], -1, ValueError, "x must not contain NaN or +inf (use -inf to mask an entry)"),
        ([True, False], -1, TypeError, "x must be an array of real numbers (float or int), got dtype bool"),
        (["a", "b"], -1, TypeError, "x must be an array of real numbers (float or int), got dtype <U1"),
        (3.0, -1, ValueError, "x must have at least 1 dimension(s), got shape ()"),
        ([1.0, 2.0], 1, ValueError, "axis must be <= 0, got 1"),
        ([1.0, 2.0], 0.5, TypeError, "axis must be a whole number (int), got 0.5 of type float"),
        (np.zeros((2, 0)), -1, ValueError, "x must have at least one entry along axis -1, got shape (2, 0)"),
    ],
)
def test_softmax_rejects_bad_input(x, axis, error, words):
    with pytest.raises(error, match=re.escape(words)):
        softmax(x, axis=axis)


# --------------------------------------------------------------------------- numpy attention


def sdpa64(q, k, v, mask=None):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    m = None if mask is None else t(mask)
    return F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=m).numpy()


def test_attention_matches_torch_sdpa_without_mask():
    rng = np.random.default_rng(1)
    q, k, v = rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(2, 3, 7, 4)), rng.normal(size=(2, 3, 7, 6))
    out, weights = attention(q, k, v)
    np.testing.assert_allclose(out, sdpa64(q, k, v), atol=1e-12)
    assert weights.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    np.testing.assert_allclose(out, weights @ v)


def test_attention_with_bool_mask_matches_torch_sdpa_and_masked_weights_are_zero():
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 9, 4)), rng.normal(size=(2, 9, 3))
    mask = rng.random((6, 9)) < 0.4
    mask[np.arange(6), np.arange(6)] = True  # every row sees a key
    out, weights = attention(q, k, v, mask)  # (6, 9) broadcast over the batch
    np.testing.assert_allclose(out, sdpa64(q, k, v, mask), atol=1e-12)
    assert (weights[:, ~mask] == 0.0).all()  # exactly zero, not just small
    np.testing.assert_allclose(weights.sum(-1), 1.0)


def test_attention_with_pattern_equals_its_mask_and_sdpa():
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(12, 5)) for _ in range(3))
    pattern = local_global_pattern(3, sinks=1)
    out, weights = attention(q, k, v, pattern)
    mask = contract_mask(12, 3, sinks=1)
    np.testing.assert_allclose(out, sdpa64(q, k, v, mask), atol=1e-12)
    assert ((weights > 0) == mask).all()


def test_attention_fully_masked_row_gives_zero_weights_and_zero_output():
    rng = np.random.default_rng(4)
    q, k, v = (rng.normal(size=(4, 3)) for _ in range(3))
    mask = np.tril(np.ones((4, 4), dtype=bool))
    mask[2] = False
    out, weights = attention(q, k, v, mask)
    assert (weights[2] == 0).all() and (out[2] == 0).all()
    keep = [0, 1, 3]
    np.testing.assert_allclose(out[keep], sdpa64(q[keep], k, v, mask[keep]), atol=1e-12)


@pytest.mark.parametrize(
    "shapes, mask, error, words",
    [
        (((4, 3), (4, 2), (4, 3)), None, ValueError, r"q and k .* q \(4, 3\) and k \(4, 2\)"),
        (((4, 3), (5, 3), (4, 3)), None, ValueError, r"k and v .* k \(5, 3\) and v \(4, 3\)"),
        (((3,), (4, 3), (4, 3)), None, ValueError, r"q must have at least 2 .* \(3,\)"),
        (((2, 4, 3), (3, 4, 3), (3, 4, 3)), None, ValueError, r"\(batch\) dimensions of q, k and v must broadcast"),
        (((4, 3), (4, 3), (4, 3)), np.ones((4, 5), bool), ValueError, r"mask must broadcast .* \(4, 5\)"),
        (((4, 3), (4, 3), (4, 3)), np.ones((4, 4)), TypeError, "mask must be a boolean array"),
        (
            ((4, 3), (5, 3), (5, 3)),
            patterns.causal(),
            ValueError,
            "mask is a Pattern, which needs as many queries as keys, got n=4 and m=5",
        ),
        (((4, 0), (4, 0), (4, 3)), None, ValueError, r"d >= 1 .* q \(4, 0\)"),
        (((4, 3), (0, 3), (0, 3)), None, ValueError, r"at least one key, .* k \(0, 3\)"),
    ],
)
def test_attention_rejects_bad_shapes(shapes, mask, error, words):
    q, k, v = (np.ones(s) for s in shapes)
    with pytest.raises(error, match=words):
        attention(q, k, v, mask)


def test_mask_may_carry_the_batch_dimension_that_only_v_has():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(4, 3, 5))
    mask = rng.random((4, 3, 3)) < 0.5
    mask[:, :, 0] = True
    out, weights = attention(q, k, v, mask)
    for b in range(4):
        np.testing.assert_allclose(out[b], attention(q, k, v[b], mask[b])[0], atol=1e-12)
    assert weights.shape == (4, 3, 3)


def test_attention_rejects_non_finite_and_non_numeric():
    ok = np.ones((2, 2))
    with pytest.raises(ValueError, match="k must be finite"):
        attention(ok, np.array([[1.0, np.nan], [0, 0]]), ok)
    with pytest.raises(TypeError, match="v must be an array of real numbers"):
        attention(ok, ok, np.ones((2, 2), dtype=bool))


# --------------------------------------------------------------------------- top_k_mask


def brute_top_k(scores, k, allowed):
    """Row by row with Python sorting: the k best allowed keys, ties to the lower index."""
    out = np.zeros(scores.shape, dtype=bool)
    for q in range(scores.shape[0]):
        keys = sorted(np.flatnonzero(allowed[q]), key=lambda j: (-scores[q, j], j))
        out[q, keys[:k]] = True
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 7])
@pytest.mark.parametrize("masked", [False, True])
def test_top_k_mask_keeps_the_k_best_allowed_keys_of_each_row(k, masked):
    rng = np.random.default_rng(k)
    scores = rng.integers(-3, 4, size=(9, 9)).astype(float)  # small ints: many ties
    allowed = patterns.causal().mask(9) if masked else np.ones((9, 9), dtype=bool)
    got = top_k_mask(scores, k, patterns.causal() if masked else None)
    np.testing.assert_array_equal(got, brute_top_k(scores, k, allowed))
    np.testing.assert_array_equal(got.sum(axis=1), np.minimum(k, allowed.sum(axis=1)))
    assert not (got & ~allowed).any()


def test_top_k_mask_breaks_ties_towards_the_lower_key_and_accepts_a_bool_mask():
    scores = np.array([[1.0, 5.0, 5.0, 5.0], [2.0, 2.0, 2.0, 2.0]])
    mask = np.array([[True, True, False, True], [True, True, True, True]])
    np.testing.assert_array_equal(top_k_mask(scores, 2, mask), [[False, True, False, True], [True, True, False, False]])


def test_top_k_mask_attention_weights_live_on_the_chosen_keys_only():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    chosen = top_k_mask(q @ k.T / 2.0, 2, patterns.causal())
    _, weights = attention(q, k, k, chosen)
    assert ((weights > 0) == chosen).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "scores, k, mask, error, words",
    [
        (np.ones(3), 1, None, ValueError, r"scores must have at least 2 .* \(3,\)"),
        (np.ones((2, 2, 2)), 1, None, ValueError, r"scores must be a non-empty 2-D array .*, got shape \(2, 2, 2\)"),
        (np.array([[1.0, np.inf]]), 1, None, ValueError, r"scores must be finite \(no NaN or inf\)"),
        (np.ones((2, 2), dtype=bool), 1, None, TypeError, "scores must be an array of real numbers .* dtype bool"),
        (np.ones((2, 2)), 0, None, ValueError, "k must be >= 1"),
        (np.ones((2, 2)), 1.5, None, TypeError, "k must be a whole number"),
        (np.ones((2, 2)), 1, np.ones((2, 3), dtype=bool), ValueError, "mask must broadcast to the scores' shape"),
        (np.ones((2, 3)), 1, patterns.causal(), ValueError, "mask is a Pattern, which needs as many queries as keys"),
    ],
)
def test_top_k_mask_rejects_bad_input(scores, k, mask, error, words):
    with pytest.raises(error, match=words):
        top_k_mask(scores, k, mask)


# --------------------------------------------------------------------------- local_global_pattern


@pytest.mark.parametrize("n", [4, 7, 40])
@pytest.mark.parametrize(
    "window, sinks, global_tokens, causal",
    [
        (1, 0, 0, True),
        (3, 1, 0, True),
        (5, 4, 0, True),
        (1, 0, 0, False),
        (2, 1, 0, False),
        (3, 0, 3, False),
        (2, 4, 1, False),
    ],
)
def test_local_global_pattern_matches_the_contract_formula(n, window, sinks, global_tokens, causal):
    pattern = local_global_pattern(window, sinks, global_tokens, causal)
    assert (pattern.mask(n) == contract_mask(n, window, sinks, global_tokens, causal)).all()


def test_local_global_pattern_prints_its_formula_and_answers_the_quiz():
    p = local_global_pattern(3, sinks=1)
    assert str(p) == "causal() & (sliding_window(3) | sinks(1))"
    assert p.kv_counts(1024)[499] == 4
    assert str(local_global_pattern(4, 2, 3, causal=False)) == "band(4) | sinks(2) | global_tokens(3)"


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(window=0), ValueError, "window must be >= 1"),
        (dict(window=2.5), TypeError, "window must be a whole number"),
        (dict(window=4, sinks=-1), ValueError, "sinks must be >= 0"),
        (dict(window=4, global_tokens=2), ValueError, "global_tokens must be 0 when causal=True"),
        (dict(window=4, causal="yes"), TypeError, "causal must be True or False"),
    ],
)
def test_local_global_pattern_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        local_global_pattern(**kwargs)


def test_radius_names_the_band_and_window_keeps_its_old_meaning():
    assert str(local_global_pattern(radius=2, global_tokens=1, causal=False)) == "band(2) | global_tokens(1)"
    assert str(local_global_pattern(2, global_tokens=1, causal=False)) == "band(2) | global_tokens(1)"
    assert str(local_global_pattern(window=3)) == "sliding_window(3)"
    q, k, v = qkv(1, 2, 300, 4, seed=3)
    mask = contract_mask(300, 5, sinks=2, global_tokens=3, causal=False)
    expected = handwritten(q, k, v, torch.from_numpy(mask))
    for call in (dict(radius=5), dict(window=5)):
        got = local_global_attention(q, k, v, sinks=2, global_tokens=3, causal=False, **call)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(), ValueError, r"give window=W \(causal=True: W keys, the query included\) or radius=r"),
        (dict(causal=False), ValueError, r"give window=W \(causal=True: W keys, the query included\) or radius=r"),
        (dict(radius=2), ValueError, "radius=2 is for causal=False"),
        (dict(window=3, radius=2), ValueError, "radius=2 is for causal=False"),
        (dict(window=2, radius=2, causal=False), ValueError, "give the band's radius once: radius=2 or window=2"),
        (dict(radius=0, causal=False), ValueError, "radius must be >= 1"),
        (dict(radius=1.5, causal=False), TypeError, "radius must be a whole number"),
    ],
)
def test_window_or_radius_exactly_once(kwargs, error, words):
    with pytest.raises(error, match=words):
        local_global_pattern(**kwargs)
    q, k, v = qkv(8, 4)
    with pytest.raises(error, match=words):
        local_global_attention(q, k, v, **kwargs)


# --------------------------------------------------------------------------- dense_attention


def handwritten(q, k, v, mask):
    """softmax(q k^T / sqrt(d) + log(mask)) v, rows with no key -> 0."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v


@pytest.mark.parametrize("shape", [(2, 3, 11, 8), (11, 8)])
@pytest.mark.parametrize("kind", ["pattern", "numpy", "torch"])
def test_dense_attention_matches_handwritten_softmax(shape, kind):
    q, k, v = qkv(*shape, seed=5)
    pattern = local_global_pattern(4, sinks=2)
    mask = contract_mask(11, 4, sinks=2)
    given = {"pattern": pattern, "numpy": mask, "torch": torch.from_numpy(mask)}[kind]
    expected = handwritten(q, k, v, torch.from_numpy(mask))
    torch.testing.assert_close(dense_attention(q, k, v, given), expected, atol=1e-5, rtol=1e-5)


def test_dense_attention_causal_matches_sdpa_is_causal():
    q, k, v = qkv(2, 2, 33, 8, seed=6)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = dense_attention(q, k, v, patterns.causal())
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_dense_attention_fully_masked_row_is_zero_with_finite_gradients():
    q, k, v = qkv(1, 2, 6, 4, seed=7, grad=True)
    mask = np.tril(np.ones((6, 6), dtype=bool))
    mask[3] = False
    out = dense_attention(q, k, v, mask)
    assert (out[..., 3, :] == 0).all()
    keep = torch.from_numpy(mask.any(1))
    expected = handwritten(q, k, v, torch.from_numpy(mask))
    torch.testing.assert_close(out[..., keep, :], expected[..., keep, :])
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert (q.grad[..., 3, :] == 0).all()


@pytest.mark.parametrize(
    "pattern, error, words",
    [
        (np.ones((5, 5), bool), ValueError, r"pattern must have shape \(N, N\) = \(6, 6\), got \(5, 5\)"),
        (torch.ones(6, 6), TypeError, r"pattern must be a bool tensor \(True = may attend\), got dtype torch\.float32"),
        (np.ones((6, 6)), TypeError, r"pattern must be a boolean array .* or a Pattern, got dtype float64"),
        ("causal", TypeError, "pattern must be a Pattern .* or a boolean .* array"),
        (torch.ones(6, 5, dtype=torch.bool), ValueError, r"pattern must be square \(n x n\), got shape \(6, 5\)"),
    ],
)
def test_dense_attention_rejects_bad_masks(pattern, error, words):
    q, k, v = qkv(6, 4)
    with pytest.raises(error, match=words):
        dense_attention(q, k, v, pattern)


def test_dense_attention_takes_a_mask_as_nested_lists_like_every_other_function():
    q, k, v = qkv(6, 4)
    mask = np.tril(np.ones((6, 6), dtype=bool))
    torch.testing.assert_close(dense_attention(q, k, v, mask.tolist()), dense_attention(q, k, v, mask))


# --------------------------------------------------------------------------- local_global_attention

CASES = [  # (n, window, sinks, global_tokens, causal)
    (1, 4, 0, 0, True),
    (5, 16, 1, 0, True),  # N smaller than the window
    (16, 16, 4, 0, True),  # N equal to the window
    (37, 16, 4, 0, True),  # N not a multiple of the window
    (128, 1, 0, 0, True),  # window 1: only the query itself
    (300, 64, 0, 0, True),  # several blocks, N not a multiple of the block
    (300, 64, 4, 0, True),
    (300, 200, 1, 0, True),  # window larger than a block
    (260, 2, 200, 0, True),  # sinks reaching past the first block's slice
    (5, 16, 0, 1, False),
    (37, 8, 0, 0, False),
    (37, 8, 1, 3, False),
    (300, 20, 4, 1, False),
    (300, 20, 0, 3, False),
    (260, 2, 200, 3, False),  # prefix keys on both sides of a block's slice
    (40, 3, 40, 40, False),  # every token global
]


@pytest.mark.parametrize("n, window, sinks, global_tokens, causal", CASES)
def test_local_global_attention_equals_dense_outputs_and_gradients(n, window, sinks, global_tokens, causal):
    torch.manual_seed(0)
    q, k, v = qkv(2, 3, n, 8, seed=n + window, grad=True)
    pattern = local_global_pattern(window, sinks, global_tokens, causal)
    out = local_global_attention(q, k, v, window, sinks, global_tokens, causal)
    ref = dense_attention(q, k, v, pattern)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grad_out = torch.randn(out.shape)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    want = torch.autograd.grad(ref, (q, k, v), grad_out)
    for name, a, b in zip("qkv", got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"d{name} differs")


@pytest.mark.parametrize("block", [1, 7, 16])
@pytest.mark.parametrize("window, sinks, global_tokens, causal", [(5, 3, 0, True), (4, 2, 3, False)])
def test_local_global_attention_for_any_block_size(monkeypatch, block, window, sinks, global_tokens, causal):
    monkeypatch.setattr(attn, "BLOCK", block)
    q, k, v = qkv(1, 2, 45, 4, seed=block)
    ref = dense_attention(q, k, v, local_global_pattern(window, sinks, global_tokens, causal))
    out = local_global_attention(q, k, v, window, sinks, global_tokens, causal)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(50, 8), (3, 50, 8), (2, 1, 2, 50, 8)])
def test_local_global_attention_keeps_any_leading_shape(shape):
    q, k, v = qkv(*shape, seed=9)
    v = v[..., :5]  # v may have its own last dimension
    out = local_global_attention(q, k, v, 6, sinks=2, global_tokens=1, causal=False)
    assert out.shape == (*shape[:-1], 5)
    torch.testing.assert_close(out, dense_attention(q, k, v, local_global_pattern(6, 2, 1, False)))


def test_local_global_attention_float64():
    q, k, v = qkv(1, 2, 70, 8, seed=10, dtype=torch.float64)
    out = local_global_attention(q, k, v, 9, sinks=4)
    assert out.dtype == torch.float64
    expected = dense_attention(q, k, v, local_global_pattern(9, 4))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


class LargestTensor(TorchFunctionMode):
    """Records the most elements of any tensor a torch function returns (and any SDPA score block)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:  # its score block: queries x keys
            q, k = args[0], args[1]
            self.largest = max(self.largest, q.shape[-2] * k.shape[-2])
        out = func(*args, **kwargs)
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("causal, sinks, global_tokens", [(True, 4, 0), (False, 4, 2)])
def test_local_global_attention_never_builds_n_by_n(causal, sinks, global_tokens):
    n = 16384
    q, k, v = qkv(1, 1, n, 4, seed=11)
    with LargestTensor() as probe:
        out = local_global_attention(q, k, v, 64, sinks, global_tokens, causal)
    assert out.shape == (1, 1, n, 4)
    assert probe.largest <= 64 * n  # inputs are 4 n; an N x N mask or score matrix would be n * n
    with LargestTensor() as probe:  # the probe does catch a dense computation
        dense_attention(q[..., :2048, :], k[..., :2048, :], v[..., :2048, :], patterns.causal())
    assert probe.largest >= 2048 * 2048


@pytest.mark.parametrize(
    "change, error, words",
    [
        (dict(window=0), ValueError, "window must be >= 1"),
        (dict(window=3.0), TypeError, "window must be a whole number"),
        (dict(sinks=-2), ValueError, "sinks must be >= 0"),
        (dict(sinks=11), ValueError, "sinks must be between 0 and the sequence length N=10, got 11"),
        (dict(global_tokens=1), ValueError, "global_tokens must be 0 when causal=True"),
        (dict(global_tokens=11, causal=False), ValueError, "global_tokens must be between 0 and .* N=10"),
        (dict(causal=1), TypeError, "causal must be True or False"),
        (dict(k=randn(1, 10, 6)), ValueError, r"k must have the same shape as q, got .* k \(1, 10, 6\)"),
        (dict(v=randn(1, 9, 4)), ValueError, "v must match q in every dimension but the last"),
        (dict(v=randn(1, 10, 4, dtype=torch.float64)), TypeError, "q, k and v must share one dtype"),
        (dict(q=torch.ones(1, 10, 4, dtype=torch.int64)), TypeError, "q must be a floating-point tensor"),
        (dict(q=np.ones((1, 10, 4))), TypeError, "q must be a torch.Tensor, got ndarray"),
        (dict(q=randn(4), k=randn(4), v=randn(4)), ValueError, r"q must have shape \(B, H, N, D\) or"),
    ],
)
def test_local_global_attention_rejects_bad_input(change, error, words):
    args = dict(zip("qkv", qkv(1, 10, 4), strict=True), window=3, sinks=0, global_tokens=0, causal=True)
    args.update(change)
    with pytest.raises(error, match=words):
        local_global_attention(**args)


def test_dense_attention_validates_qkv_too():
    q, k, v = qkv(6, 4)
    with pytest.raises(TypeError, match="q, k and v must share one dtype"):
        dense_attention(q, k.double(), v, patterns.causal())
    empty = torch.zeros(0, 4)  # no positions: a clear error, not torch.cat's
    for fn in (
        lambda: dense_attention(empty, empty, empty, patterns.causal()),
        lambda: local_global_attention(empty, empty, empty, 2),
        lambda: local_global_attention(torch.ones(3, 0), torch.ones(3, 0), torch.ones(3, 2), 2),
    ):
        with pytest.raises(ValueError, match="q must have N >= 1 positions and D >= 1"):
            fn()


def test_softmax_has_one_home_and_attention_re_exports_it():
    from globattn_lite import softmax_tools

    assert attn.softmax is softmax_tools.softmax
    code = "import sys, globattn_lite.softmax_tools; assert 'globattn_lite.attention' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)  # softmax_tools sits below attention


def test_local_global_pattern_without_sinks_is_the_plain_window():
    """sliding_window(W) is causal by itself, so the pattern carries no redundant causal() term."""
    p = attn.local_global_pattern(5)
    assert str(p) == "sliding_window(5)"
    np.testing.assert_array_equal(p.mask(12), (patterns.causal() & patterns.sliding_window(5)).mask(12))
