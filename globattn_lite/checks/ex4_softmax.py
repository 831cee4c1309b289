"""Checks of exercise set 4 (softmax, sinks, eviction): softmax_with_sink, entropy, evict."""

from __future__ import annotations

import numpy as np

from globattn_lite.checks.compare import _compare_float_scalar, _compare_floats
from globattn_lite.checks.engine import Case, Spec, warmup
from globattn_lite.checks.ex1_dense import _SOFTMAX_OVERFLOW, _ref_softmax
from globattn_lite.checks.inputs import _halves

SET = "ex4_softmax"


def _ref_softmax_with_sink(scores, sink_logit):
    scores = np.asarray(scores, dtype=np.float64)
    m = max(scores.max(), sink_logit)
    e = np.exp(scores - m)
    return e / (np.exp(sink_logit - m) + e.sum())


def _ref_entropy(weights):
    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def _ref_evict(scores, keep):
    return _ref_softmax(np.where(keep, scores, -np.inf))


_SINK_OVERFLOW = (
    "softmax overflow: shift by m = max(max(scores), sink_logit) before np.exp, "
    "and shift the sink too: exp(sink_logit - m)"
)


def _sink_missing(scores, sink_logit):
    return _ref_softmax(np.asarray(scores, dtype=float))


def _sink_as_one(scores, sink_logit):
    s = np.asarray(scores, dtype=float)
    m = max(s.max(), 0.0)
    e = np.exp(s - m)
    return e / (np.exp(-m) + e.sum())


def _sink_unshifted(scores, sink_logit):
    s = np.asarray(scores, dtype=float)
    e = np.exp(s - s.max())
    return e / (np.exp(sink_logit) + e.sum())


def _sink_naive(scores, sink_logit):
    s = np.asarray(scores, dtype=float)
    e = np.exp(s)
    return e / (np.exp(sink_logit) + e.sum())


def _sink_weight_returned(scores, sink_logit):
    return _ref_softmax(np.append(np.asarray(scores, dtype=float), sink_logit))


def _entropy_log2(weights):
    return _ref_entropy(weights) / np.log(2)


def _entropy_with_zeros(weights):
    w = np.asarray(weights, dtype=float)
    return float(-(w * np.log(w)).sum())


def _entropy_negated(weights):
    return -_ref_entropy(weights)


def _evict_without_renormalising(scores, keep):
    return _ref_softmax(np.asarray(scores, dtype=float)) * keep


def _evict_inverted(scores, keep):
    return np.nan_to_num(_ref_softmax(np.where(keep, -np.inf, np.asarray(scores, dtype=float))))


def _evict_compressed(scores, keep):
    return _ref_softmax(np.asarray(scores, dtype=float)[keep])


def _evict_naive(scores, keep):
    e = np.exp(np.asarray(scores, dtype=float)) * keep
    return e / e.sum()


def _evict_global_max(scores, keep):
    """Shifts by the maximum of ALL scores: an evicted score far above the kept ones makes
    every kept exp underflow to 0, and 0 / 0 is NaN."""
    s = np.asarray(scores, dtype=float)
    e = np.exp(s - s.max()) * keep
    return e / e.sum()


def specs(st, hnp) -> list[Spec]:
    floats = _halves(st, 20)

    def scores(n):
        return hnp.arrays(np.float64, n, elements=floats)

    @st.composite
    def sink_case(draw):
        s = draw(st.integers(1, 8).flatmap(scores))
        return Case((s, draw(_halves(st, 10))))

    @st.composite
    def big_sink_case(draw):
        s = draw(st.integers(1, 5).flatmap(lambda n: hnp.arrays(np.float64, n, elements=_halves(st, 10_000))))
        return Case((s, draw(_halves(st, 10_000))))

    @st.composite
    def distribution(draw):
        n = draw(st.integers(1, 8))
        raw = draw(hnp.arrays(np.float64, n, elements=st.integers(0, 20).map(float)))
        if raw.sum() == 0:
            raw[draw(st.integers(0, n - 1))] = 1.0
        return Case((raw / raw.sum(),))

    @st.composite
    def evict_case(draw):
        n = draw(st.integers(1, 8))
        keep = draw(hnp.arrays(np.bool_, n))
        keep[draw(st.integers(0, n - 1))] = True
        return Case((draw(scores(n)), keep))

    return [
        Spec(
            "softmax_with_sink",
            ("scores", "sink_logit"),
            _ref_softmax_with_sink,
            lambda got, exp: _compare_floats(got, exp, nan_hint=_SINK_OVERFLOW),
            cases=[
                warmup(np.array([0.0]), 0.0),
                Case((np.array([1.0, 2.0]), 0.0)),
                Case((np.array([1.0, 2.0, 3.0]), 2.0)),
                Case((np.array([0.0, 0.0]), -3.0)),
                Case((np.array([1000.0, 1000.0]), 0.0)),
                Case((np.array([0.0, 1.0]), 1000.0)),
            ],
            properties=[
                ("random scores and sink logits", sink_case),
                ("large scores and sink logits up to 1e4", big_sink_case),
            ],
            mistakes=[
                ("the sink adds exp(sink_logit) to the denominator; without it this is a plain softmax", _sink_missing),
                (
                    "the sink contributes exp(sink_logit) to the denominator; that is 1 only when sink_logit = 0",
                    _sink_as_one,
                ),
                (
                    "when you shift the scores by their maximum m, shift the sink logit too: exp(sink_logit - m)",
                    _sink_unshifted,
                ),
                (_SINK_OVERFLOW, _sink_naive),
                (
                    "return the weights over the real keys only (the sink's own weight is dropped), "
                    "so they sum to less than 1",
                    _sink_weight_returned,
                ),
            ],
        ),
        Spec(
            "entropy",
            ("weights",),
            _ref_entropy,
            lambda got, exp: _compare_float_scalar(
                got, exp, nan_hint=("0 * log(0) is NaN in numpy: ignore the zero weights (their limit is 0)")
            ),
            cases=[
                warmup(np.array([1.0])),
                Case((np.array([0.5, 0.5]),)),
                Case((np.array([1.0, 0.0]),)),
                Case((np.array([0.25, 0.25, 0.5]),)),
                Case((np.array([0.0, 0.2, 0.0, 0.8]),)),
                Case((np.full(8, 1 / 8),)),
            ],
            properties=[("random distributions (with zeros)", distribution)],
            mistakes=[
                ("entropy with log2: the course uses the natural log (np.log), in nats", _entropy_log2),
                ("ignore zero weights: 0 * log(0) is NaN in numpy, but its limit is 0", _entropy_with_zeros),
                ("entropy is -sum(w * log w), which is >= 0: mind the minus sign", _entropy_negated),
            ],
        ),
        Spec(
            "evict",
            ("scores", "keep"),
            _ref_evict,
            lambda got, exp: _compare_floats(got, exp, nan_hint=_SOFTMAX_OVERFLOW),
            cases=[
                warmup(np.array([0.0]), np.array([True])),
                Case((np.array([1.0, 2.0]), np.array([True, False]))),
                Case((np.array([1.0, 2.0, 3.0]), np.array([True, False, True]))),
                Case((np.array([5.0, 0.0, 0.0, 1.0]), np.array([False, True, True, True]))),
                Case((np.array([1000.0, 999.0, 0.0]), np.array([True, True, False]))),
                Case((np.array([1000.0, 0.0, 1.0]), np.array([False, True, True]))),  # the lesson's case
            ],
            properties=[("random scores and keep masks", evict_case)],
            mistakes=[
                (
                    "evict renormalising wrongly: zeroing the evicted weights of the full softmax leaves "
                    "the kept ones summing to less than 1; take the softmax over the kept scores only",
                    _evict_without_renormalising,
                ),
                ("keep is True for the keys that STAY in the cache", _evict_inverted),
                ("return an array of the same shape as scores, with 0 at the evicted keys", _evict_compressed),
                (
                    "shift by the maximum of the KEPT scores (take the max after setting the evicted "
                    "ones to -inf): an evicted score far above the rest makes every kept exp() "
                    "underflow to 0, and 0 / 0 is NaN",
                    _evict_global_max,
                ),
                (_SOFTMAX_OVERFLOW, _evict_naive),
            ],
        ),
    ]


# ---- ex5_costs -----------------------------------------------------------------------
