"""Checks of exercise set 2 (sparse attention): sliding_window_mask, attended_positions,
count_kv_pairs and the quiz answer kv_pairs_at_500."""

from __future__ import annotations

import numpy as np

from globattn_lite.checks.compare import (
    _NONE_HINT,
    _as_array,
    _compare_int,
    _fmt,
    compare_bool_mask,
    compare_whole_number_answer,
)
from globattn_lite.checks.engine import Case, Spec, warmup
from globattn_lite.checks.ex1_dense import _ref_causal_mask
from globattn_lite.checks.inputs import _answer, _grid

SET = "ex2_sparse"


def _ref_sliding_window_mask(n, window):
    q, k = _grid(n)
    return (k <= q) & (q - k < window)


def _ref_attended_positions(mask, i):
    return [k for k in range(mask.shape[1]) if mask[i, k]]


def _compare_positions(got, expected):
    if got is None:
        return "returned None", _NONE_HINT
    if isinstance(got, (set, frozenset)):
        return "returned a set", "return a sorted list or 1-D array (sets have no order)"
    if isinstance(got, tuple) and len(got) == 1 and isinstance(got[0], np.ndarray):
        return "returned a tuple of arrays", "np.nonzero returns a tuple: take [0] (or use np.flatnonzero)"
    arr = _as_array(got)
    if arr is None or arr.ndim != 1:
        return f"returned {_fmt(got, 80)}, expected a list or 1-D array of ints", None
    if arr.dtype == np.bool_ and len(expected):
        return "returned booleans", "return the key indices (np.flatnonzero(row)), not the boolean row"
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        return f"dtype {arr.dtype}, expected ints", None
    if arr.tolist() != list(expected):
        return f"expected {list(expected)}, got {arr.tolist()}", None
    return None


def _ref_count_kv_pairs(mask):
    return sum(1 for row in mask for allowed in row if allowed)


def _window_look_back(n, window):
    q, k = _grid(n)
    return (k <= q) & (q - k <= window)


def _window_one_short(n, window):
    q, k = _grid(n)
    return (k <= q) & (q - k < window - 1)


def _window_two_sided(n, window):
    q, k = _grid(n)
    return np.abs(q - k) < window


def _window_not_causal(n, window):
    q, k = _grid(n)
    return q - k < window


def _window_upper_triangle(n, window):
    q, k = _grid(n)
    return (k >= q) & (k - q < window)


def _positions_of_column(mask, i):
    return np.flatnonzero(mask[:, i]) if i < mask.shape[1] else []


def _positions_one_based(mask, i):
    return np.flatnonzero(mask[i]) + 1


def _positions_as_booleans(mask, i):
    return mask[i]


def _count_false(mask):
    return int(mask.size - mask.sum())


def _count_per_query(mask):
    return mask.sum(axis=1)


def _count_full_causal(mask):
    return mask.shape[0] * (mask.shape[0] + 1) // 2


def _count_last_row(mask):
    return int(mask[-1].sum())


def _count_rows(mask):
    return len(mask)


def specs(st, hnp) -> list[Spec]:
    @st.composite
    def window_case(draw):
        n = draw(st.integers(1, 20))
        return Case((n, draw(st.integers(1, n + 2))))

    @st.composite
    def mask_and_row(draw):
        n = draw(st.integers(1, 8))
        m = draw(st.integers(1, 8))
        return Case((draw(hnp.arrays(np.bool_, (n, m))), draw(st.integers(0, n - 1))))

    def masks():
        return st.tuples(st.integers(1, 10), st.integers(1, 10)).flatmap(lambda s: hnp.arrays(np.bool_, s))

    example = _ref_sliding_window_mask(5, 2) | (np.arange(5)[None, :] == 0) & _ref_causal_mask(5)
    return [
        Spec(
            "sliding_window_mask",
            ("n", "window"),
            _ref_sliding_window_mask,
            compare_bool_mask,
            cases=[warmup(1, 1), Case((3, 1)), Case((3, 2)), Case((4, 5)), Case((6, 3))],
            properties=[("random n and window", window_case)],
            mistakes=[
                (
                    "window off by one: `window` counts the keys INCLUDING the query, so keep "
                    "q - k < window (q - k <= window is attention-gym's look-back w = window - 1)",
                    _window_look_back,
                ),
                (
                    "window off by one: the query itself counts, so there are window keys "
                    "with q - k = 0, 1, ..., window - 1",
                    _window_one_short,
                ),
                ("the window must be causal: keys after the query (k > q) stay hidden", _window_two_sided),
                (
                    "the causal condition is missing: a key after the query has q - k < 0, which is "
                    "< window too; combine with k <= q: (k <= q) & (q - k < window)",
                    _window_not_causal,
                ),
                (
                    "upper instead of lower triangle: mask[q, k] is True when query q may see key k",
                    _window_upper_triangle,
                ),
            ],
        ),
        Spec(
            "attended_positions",
            ("mask", "i"),
            _ref_attended_positions,
            _compare_positions,
            cases=[
                warmup(np.array([[True]]), 0),
                Case((_ref_causal_mask(3), 0)),
                Case((_ref_causal_mask(3), 2)),
                Case((np.zeros((2, 2), dtype=bool), 1)),
                Case((example, 4)),
            ],
            properties=[("random masks and rows", mask_and_row)],
            mistakes=[
                ("row i is query i (its keys are the columns): use mask[i], not mask[:, i]", _positions_of_column),
                ("positions are 0-based: key k is index k (no + 1)", _positions_one_based),
                ("return the key indices (np.flatnonzero(mask[i])), not the boolean row", _positions_as_booleans),
            ],
        ),
        Spec(
            "count_kv_pairs",
            ("mask",),
            _ref_count_kv_pairs,
            _compare_int,
            cases=[
                warmup(np.array([[True]])),
                warmup(np.array([[False]])),
                Case((_ref_causal_mask(3),)),
                Case((np.array([[True, False, True]]),)),
                Case((example,)),
            ],
            properties=[("random masks", lambda: masks().map(lambda m: Case((m,))))],
            mistakes=[
                ("count the True entries (allowed pairs), not the False ones", _count_false),
                ("return one total for the whole mask, not one count per query", _count_per_query),
                ("count the mask you are given; n(n+1)/2 holds only for full causal attention", _count_full_causal),
                ("count every allowed (query, key) pair: all rows, not only the last one", _count_last_row),
                (
                    "len(mask) is the number of rows (queries), not the number of allowed pairs: "
                    "count the True entries",
                    _count_rows,
                ),
            ],
        ),
        Spec(
            "kv_pairs_at_500",
            (),
            _answer(len({1, 500 - 2, 500 - 1, 500})),
            compare_whole_number_answer("a whole number"),
            is_answer=True,
            mistakes=[
                (
                    "that is full causal attention; this model sees only position 1, itself and the "
                    "two positions before it",
                    500,
                ),
                ("position 500 attends to itself too: count it", 3),
                ("count each distinct position once: the first position is not part of the window", 5),
            ],
        ),
    ]


# ---- ex3_global ----------------------------------------------------------------------
