"""Checks of exercise set 1 (dense attention): causal_mask, softmax, attention."""

from __future__ import annotations

import numpy as np

from globattn_lite.checks.compare import _NONE_HINT, _compare_floats, compare_bool_mask
from globattn_lite.checks.engine import Case, Spec, warmup
from globattn_lite.checks.inputs import _float_arrays, _grid, _halves, _rng_floats

SET = "ex1_dense"


def _ref_causal_mask(n):
    q, k = _grid(n)
    return k <= q


def _ref_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ref_attention(q, k, v, mask=None):
    scores = q @ k.T / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = _ref_softmax(scores)
    return weights @ v, weights


def _compare_attention(got, expected):
    if got is None:
        return "returned None", _NONE_HINT
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"returned a {type(got).__name__}, expected a pair (out, weights)", "return out, weights"
    for label, g, e in (("out", got[0], expected[0]), ("weights", got[1], expected[1])):
        problem = _compare_floats(g, e, nan_hint=_SOFTMAX_OVERFLOW)
        if problem:
            return f"{label}: {problem[0]}", problem[1]
    return None


_SOFTMAX_OVERFLOW = (
    "softmax overflow: np.exp of a large score is inf (and inf/inf is NaN); "
    "subtract the maximum of each row first, which leaves the result unchanged"
)


def _naive_softmax(x):
    with np.errstate(all="ignore"):
        e = np.exp(np.asarray(x, dtype=float))
        return e / e.sum(axis=-1, keepdims=True)


def _softmax_axis0(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _softmax_whole_array(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - x.max())
    return e / e.sum()


def _softmax_global_max(x):
    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max())
        return e / e.sum(axis=-1, keepdims=True)


def _mask_before_softmax(scores, mask):
    return np.where(mask, scores, -np.inf)


def _mask_inverted(scores, mask):
    return np.where(mask, -np.inf, scores)


def _mask_by_multiplying(scores, mask):
    return scores * mask


def _attention_with(scale, mask_scores=_mask_before_softmax, softmax=_ref_softmax, mask_weights=False):
    """A wrong attention: ``scale(q, k, v)`` multiplies q k^T, ``mask_scores`` applies the mask
    to the scores (None: not at all), ``mask_weights`` multiplies the weights by the mask."""

    def wrong(q, k, v, mask=None):
        scores = q @ k.T * scale(q, k, v)
        if mask is not None and mask_scores is not None:
            scores = mask_scores(scores, mask)
        with np.errstate(all="ignore"):
            weights = softmax(scores)
        if mask is not None and mask_weights:
            weights = weights * mask
        return weights @ v, weights

    return wrong


def _softmax_no_keepdims(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - x.max(axis=-1))
    return e / e.sum(axis=-1)


def _softmax_sum_without_keepdims(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1)


_KEEPDIMS_HINT = (
    "missing keepdims=True: x.max(axis=-1) and e.sum(axis=-1) have shape (n,), which "
    "lines up with the columns instead of the rows (wrong values, or a broadcasting "
    "error); keep the reduced axis with keepdims=True"
)


def _sqrt_scale(q, k, v):
    return 1 / np.sqrt(q.shape[-1])


def _causal_upper_triangle(n):
    q, k = _grid(n)
    return k >= q


def _causal_without_diagonal(n):
    q, k = _grid(n)
    return k < q


def _causal_one_key_ahead(n):
    q, k = _grid(n)
    return k <= q + 1


def _causal_all_keys(n):
    return np.ones((n, n), dtype=bool)


def _no_scale(q, k, v):
    return 1.0


def _scale_by_d(q, k, v):
    return 1.0 / q.shape[-1]


def _scale_by_sqrt_keys(q, k, v):
    return 1.0 / np.sqrt(k.shape[0])


def _scale_by_sqrt_value_dim(q, k, v):
    return 1.0 / np.sqrt(v.shape[-1])


def _attention_pair_swapped(q, k, v, mask=None):
    return _ref_attention(q, k, v, mask)[::-1]


def specs(st, hnp) -> list[Spec]:
    n_sizes = st.integers(1, 40)
    floats = _halves(st, 5)
    big = _halves(st, 10_000)

    def arrays(shape, elements=floats):
        return _float_arrays(st, shape, elements)

    @st.composite
    def attention_case(draw, with_mask):
        n, m, d, dv = (draw(st.integers(1, 4)) for _ in range(4))
        q, k, v = draw(arrays((n, d))), draw(arrays((m, d))), draw(arrays((m, dv)))
        if not with_mask:
            return Case((q, k, v))
        mask = draw(hnp.arrays(np.bool_, (n, m)))
        mask[np.arange(n), draw(hnp.arrays(np.int64, n, elements=st.integers(0, m - 1)))] = True
        return Case((q, k, v, mask))

    def att(seed, n, m, d, dv, mask=None, scale=1.0):
        q = _rng_floats(seed, n, d, scale=scale)
        k = _rng_floats(seed + 1, m, d, scale=scale)
        v = _rng_floats(seed + 2, m, dv)
        return Case((q, k, v) if mask is None else (q, k, v, mask))

    causal3 = _ref_causal_mask(3)
    rect = np.array([[True, False, True, False], [False, True, True, True]])
    return [
        Spec(
            "causal_mask",
            ("n",),
            _ref_causal_mask,
            compare_bool_mask,
            cases=[warmup(1), Case((2,)), Case((3,)), Case((5,))],
            properties=[("random sizes n = 1..40", lambda: n_sizes.map(lambda n: Case((n,))))],
            mistakes=[
                (
                    "upper instead of lower triangle: mask[q, k] is True when query q may see key k, "
                    "so causal means k <= q (the lower triangle, np.tril)",
                    _causal_upper_triangle,
                ),
                ("a token may attend to itself: keep the diagonal (k <= q, not k < q)", _causal_without_diagonal),
                (
                    "this also lets each query see the key right after it (k <= q + 1, np.tril(..., k=1)); "
                    "causal keeps k <= q: np.tril with the default k=0",
                    _causal_one_key_ahead,
                ),
                ("this lets every query see every key; causal hides the future keys (k > q)", _causal_all_keys),
            ],
        ),
        Spec(
            "softmax",
            ("x",),
            _ref_softmax,
            lambda got, exp: _compare_floats(got, exp, nan_hint=_SOFTMAX_OVERFLOW),
            cases=[
                warmup(np.array([0.0])),
                Case((np.array([1.0, 2.0, 3.0]),)),
                Case((np.array([[1.0, 2.0], [3.0, 5.0]]),)),
                Case((np.array([0.0, -np.inf, 1.0]),)),
                Case((np.array([1000.0, 1000.0]),)),
                Case((np.array([[1e4, 0.0, -5.0], [0.0, -1e4, 3.0]]),)),
                Case((np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),)),
            ],
            properties=[
                ("random 1-D arrays", lambda: st.integers(1, 8).flatmap(arrays).map(lambda x: Case((x,)))),
                (
                    "random 2-D arrays",
                    lambda: st.tuples(st.integers(1, 5), st.integers(1, 6)).flatmap(arrays).map(lambda x: Case((x,))),
                ),
                (
                    "large inputs up to 1e4",
                    lambda: (
                        st.tuples(st.integers(1, 4), st.integers(1, 5))
                        .flatmap(lambda s: arrays(s, big))
                        .map(lambda x: Case((x,)))
                    ),
                ),
            ],
            mistakes=[
                (_SOFTMAX_OVERFLOW, _naive_softmax),
                ("normalise along the last axis (axis=-1, keepdims=True): each row must sum to 1", _softmax_axis0),
                ("normalise each row separately (axis=-1, keepdims=True), not the whole array", _softmax_whole_array),
                (
                    "subtract each row's own maximum (x.max(axis=-1, keepdims=True)), not the maximum "
                    "of the whole array: rows far below it underflow to 0/0",
                    _softmax_global_max,
                ),
                (_KEEPDIMS_HINT, _softmax_no_keepdims),
                (_KEEPDIMS_HINT, _softmax_sum_without_keepdims),
            ],
        ),
        Spec(
            "attention",
            ("q", "k", "v", "mask"),
            _ref_attention,
            _compare_attention,
            cases=[
                Case(att(0, 1, 1, 1, 1).args, weight=0.0),
                att(1, 2, 2, 2, 1),
                att(2, 3, 3, 4, 2, mask=causal3),
                att(3, 2, 4, 3, 3, mask=rect),
                att(4, 3, 3, 1, 2, mask=causal3, scale=40.0),
            ],
            properties=[
                ("random q, k, v without a mask", lambda: attention_case(False)),
                ("random q, k, v with a random mask", lambda: attention_case(True)),
            ],
            mistakes=[
                ("unscaled scores: divide q k^T by sqrt(d), the key dimension", _attention_with(_no_scale)),
                ("scale by 1/sqrt(d), not 1/d", _attention_with(_scale_by_d)),
                (
                    "scale by 1/sqrt(d) with d = q.shape[-1], the query/key dimension, not the number of "
                    "keys m = k.shape[0]",
                    _attention_with(_scale_by_sqrt_keys),
                ),
                (
                    "scale by 1/sqrt(d) with d = q.shape[-1], the query/key dimension, not the value "
                    "dimension v.shape[-1]",
                    _attention_with(_scale_by_sqrt_value_dim),
                ),
                (
                    "masking after the softmax: the kept weights no longer sum to 1; set masked "
                    "scores to -inf BEFORE the softmax",
                    _attention_with(_sqrt_scale, None, mask_weights=True),
                ),
                (
                    "the mask is inverted: True means the query MAY attend to that key",
                    _attention_with(_sqrt_scale, _mask_inverted),
                ),
                (
                    "multiplying scores by the mask gives masked keys a score of 0, and exp(0) = 1; "
                    "use np.where(mask, scores, -np.inf)",
                    _attention_with(_sqrt_scale, _mask_by_multiplying),
                ),
                (
                    "normalise the weights over the keys (last axis), not over the queries",
                    _attention_with(_sqrt_scale, softmax=_softmax_axis0),
                ),
                (_SOFTMAX_OVERFLOW, _attention_with(_sqrt_scale, softmax=_naive_softmax)),
                ("return the pair in the order (out, weights)", _attention_pair_swapped),
            ],
        ),
    ]


# ---- ex2_sparse ----------------------------------------------------------------------
