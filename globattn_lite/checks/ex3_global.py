"""Checks of exercise set 3 (global tokens): local_global_mask, longformer_mask,
receptive_field, min_layers."""

from __future__ import annotations

import numpy as np

from globattn_lite.checks.compare import _compare_int, _fmt, compare_bool_mask
from globattn_lite.checks.engine import Case, Spec, warmup
from globattn_lite.checks.ex1_dense import _ref_causal_mask
from globattn_lite.checks.ex2_sparse import _ref_sliding_window_mask
from globattn_lite.checks.inputs import _grid

SET = "ex3_global"


def _ref_local_global_mask(n, window, num_global):
    q, k = _grid(n)
    return (k <= q) & ((q - k < window) | (k < num_global))


def _ref_longformer_mask(n, radius, global_positions):
    q, k = _grid(n)
    is_global = np.zeros(n, dtype=bool)
    is_global[list(global_positions)] = True
    return (np.abs(q - k) <= radius) | is_global[q] | is_global[k]


def _ref_receptive_field(mask, layers):
    n = mask.shape[0]
    step = mask | np.eye(n, dtype=bool)  # residual path: a position keeps what it had
    reach = np.eye(n, dtype=bool)  # 0 layers: every position holds only itself
    for _ in range(layers):
        # reach[q, k]: some key j that q attends to already held position k's information
        reach = (step.astype(np.int64) @ reach.astype(np.int64)) > 0
    return reach


def _ref_min_layers(mask, src, dst):
    """Fewest layers for information at src to reach dst: the package's ``costs.hops(mask, n, src, dst)``."""
    reached = {src}
    for layers in range(mask.shape[0] + 1):
        if dst in reached:
            return layers
        reached |= {q for q in range(mask.shape[0]) for j in reached if mask[q, j]}
    return None


def _compare_min_layers(got, expected):
    if expected is None:
        if got is None:
            return None
        return (
            f"expected None (never reached), got {_fmt(got, 80)}",
            "return None when the information can never reach dst (not -1, inf or n)",
        )
    if got is None:
        return f"expected {expected}, got None", None
    return _compare_int(got, expected)


def _receptive_field_without_residual(mask, layers):
    reach = np.eye(mask.shape[0], dtype=bool)
    for _ in range(layers):
        reach = (mask.astype(np.int64) @ reach.astype(np.int64)) > 0
    return reach


def _receptive_field_transposed(mask, layers):
    return _ref_receptive_field(mask, layers).T


def _receptive_field_one_layer_too_many(mask, layers):
    return _ref_receptive_field(mask, layers + 1)


def _receptive_field_one_layer_too_few(mask, layers):
    return _ref_receptive_field(mask, max(layers - 1, 0))


def _min_layers_transposed(mask, src, dst):
    return _ref_min_layers(mask.T, src, dst)


def _min_layers_minus_one(mask, src, dst):
    result = _ref_min_layers(mask, src, dst)
    return -1 if result is None else result


def _min_layers_inf(mask, src, dst):
    result = _ref_min_layers(mask, src, dst)
    return float("inf") if result is None else result


def _min_layers_plus_one(mask, src, dst):
    result = _ref_min_layers(mask, src, dst)
    return None if result is None else result + 1


def _min_layers_capped(mask, src, dst, cap=10):
    """A breadth-first search that gives up after ``cap`` layers."""
    result = _ref_min_layers(mask, src, dst)
    return None if result is None or result > cap else result


def _receptive_field_capped(mask, layers, cap=10):
    return _ref_receptive_field(mask, min(layers, cap))


def _longformer_precedence(n, r, g):
    q, k = _grid(n)
    is_global = np.isin(np.arange(n), g)
    return np.abs(q - k) <= r | is_global[q] | is_global[k]  # the deliberate mistake: | binds tighter than <=


def _local_global_precedence(n, w, g):
    q, k = _grid(n)
    return (k <= q) & (q - k < w) | k < g  # the deliberate mistake: | binds tighter than <


_PRECEDENCE_HINT = (
    "operator precedence: | and & bind tighter than <, <= and ==, so `a <= r | b` "
    "means `a <= (r | b)`; put every comparison in parentheses: (a <= r) | b"
)


def _global_keys_not_causal(n, window, num_global):
    return _ref_sliding_window_mask(n, window) | (_grid(n)[1] < num_global)


def _global_rows_see_the_future(n, window, num_global):
    q, k = _grid(n)
    return _ref_sliding_window_mask(n, window) | (k < num_global) | (q < num_global)


def _local_global_window_plus_one(n, window, num_global):
    q, k = _grid(n)
    return (k <= q) & ((q - k <= window) | (k < num_global))


def _local_global_one_global_too_many(n, window, num_global):
    q, k = _grid(n)
    return (k <= q) & ((q - k < window) | (k <= num_global))


def _local_global_not_causal(n, window, num_global):
    q, k = _grid(n)
    return (q - k < window) | (k < num_global)


def _local_global_and_instead_of_or(n, window, num_global):
    q, k = _grid(n)
    return (k <= q) & (q - k < window) & (k < num_global)


def _longformer_global_columns_only(n, radius, global_positions):
    q, k = _grid(n)
    return (np.abs(q - k) <= radius) | np.isin(k, global_positions)


def _longformer_global_rows_only(n, radius, global_positions):
    q, k = _grid(n)
    return (np.abs(q - k) <= radius) | np.isin(q, global_positions)


def _longformer_radius_minus_one(n, radius, global_positions):
    q, k = _grid(n)
    return (np.abs(q - k) < radius) | np.isin(q, global_positions) | np.isin(k, global_positions)


def _longformer_causal_window(n, radius, global_positions):
    q, k = _grid(n)
    return ((k <= q) & (q - k <= radius)) | np.isin(q, global_positions) | np.isin(k, global_positions)


def specs(st, hnp) -> list[Spec]:
    @st.composite
    def local_global_case(draw):
        n = draw(st.integers(1, 16))
        return Case((n, draw(st.integers(1, n + 1)), draw(st.integers(0, n))))

    @st.composite
    def longformer_case(draw):
        n = draw(st.integers(1, 16))
        g = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=3))
        return Case((n, draw(st.integers(0, n)), sorted(g)))

    @st.composite
    def square_mask(draw, max_n=7):
        n = draw(st.integers(1, max_n))
        return draw(hnp.arrays(np.bool_, (n, n)))

    @st.composite
    def receptive_case(draw):
        return Case((draw(square_mask()), draw(st.integers(0, 4))))

    @st.composite
    def hops_case(draw):
        mask = draw(square_mask())
        n = mask.shape[0]
        return Case((mask, draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))))

    strict_lower = _grid(4)[1] < _grid(4)[0]
    window = _ref_sliding_window_mask(6, 2)
    star = _ref_local_global_mask(6, 1, 1) | (np.arange(6)[:, None] == 0)  # token 0 sees all
    long_window = _ref_sliding_window_mask(64, 2)  # the lesson's 0 -> 63 example
    medium_window = _ref_sliding_window_mask(12, 2)
    return [
        Spec(
            "local_global_mask",
            ("n", "window", "num_global"),
            _ref_local_global_mask,
            compare_bool_mask,
            cases=[
                warmup(1, 1, 0),
                Case((2, 1, 1)),
                Case((3, 1, 2)),
                Case((5, 2, 1)),
                Case((6, 2, 0)),
                Case((6, 3, 2)),
            ],
            properties=[("random n, window and num_global", local_global_case)],
            mistakes=[
                (
                    "non-causal global tokens: the first num_global keys are visible only to queries "
                    "at or after them (k <= q still holds, sink style)",
                    _global_keys_not_causal,
                ),
                (
                    "non-causal global tokens: in a causal model the global tokens' own rows must not "
                    "see the future either; use causal & (window | k < num_global)",
                    _global_rows_see_the_future,
                ),
                (
                    "window off by one: the window holds `window` keys including the query (q - k < window)",
                    _local_global_window_plus_one,
                ),
                (
                    "the first num_global keys are k = 0, ..., num_global - 1: use k < num_global, "
                    "not k <= num_global (which makes one key too many global)",
                    _local_global_one_global_too_many,
                ),
                (
                    "the causal condition is missing: keys after the query have q - k < 0, which is < "
                    "window too; use (k <= q) & ((q - k < window) | (k < num_global))",
                    _local_global_not_causal,
                ),
                (_PRECEDENCE_HINT, _local_global_precedence),
                (
                    "the global keys come in addition to the window: combine them with | (or)",
                    _local_global_and_instead_of_or,
                ),
            ],
        ),
        Spec(
            "longformer_mask",
            ("n", "radius", "global_positions"),
            _ref_longformer_mask,
            compare_bool_mask,
            cases=[
                warmup(1, 0, []),
                Case((3, 0, [1])),
                Case((4, 1, [])),
                Case((5, 1, [0])),
                Case((6, 1, [0, 5])),
                Case((7, 2, [3])),
            ],
            properties=[("random n, radius and global positions", longformer_case)],
            mistakes=[
                (
                    "global tokens are symmetric: every token sees them (their columns) AND they see "
                    "every token (their rows)",
                    _longformer_global_columns_only,
                ),
                (
                    "global tokens are symmetric: their columns must be all True too (every token sees them)",
                    _longformer_global_rows_only,
                ),
                (
                    "radius off by one: radius keys on each side, |q - k| <= radius (2 * radius + 1 keys)",
                    _longformer_radius_minus_one,
                ),
                (_PRECEDENCE_HINT, _longformer_precedence),
                (
                    "Longformer's local window is bidirectional: keys after the query within the radius count",
                    _longformer_causal_window,
                ),
            ],
        ),
        Spec(
            "receptive_field",
            ("mask", "layers"),
            _ref_receptive_field,
            compare_bool_mask,
            cases=[
                warmup(np.array([[False]]), 0),
                warmup(np.array([[False]]), 1),
                Case((strict_lower, 1)),
                Case((_ref_causal_mask(3), 0)),
                Case((strict_lower, 2)),
                Case((window, 2)),
                Case((star, 2)),
                Case((medium_window, 11)),  # more layers than a loop capped at 10
            ],
            properties=[("random masks and layer counts", receptive_case)],
            mistakes=[
                (
                    "receptive field without the residual path: each layer also keeps what a position "
                    "already holds (use mask | identity for every step)",
                    _receptive_field_without_residual,
                ),
                (
                    "orientation: result[q, k] is True when key k's information has reached query q; "
                    "information flows along mask[q, k] from k to q",
                    _receptive_field_transposed,
                ),
                (
                    "apply all `layers` layers: a loop capped at a fixed count (here 10) stops too early on long masks",
                    _receptive_field_capped,
                ),
                (
                    "apply exactly `layers` layers, starting from the identity (0 layers: each position "
                    "holds only itself)",
                    _receptive_field_one_layer_too_many,
                ),
                (
                    "apply exactly `layers` layers, starting from the identity (0 layers: each position "
                    "holds only itself)",
                    _receptive_field_one_layer_too_few,
                ),
            ],
        ),
        Spec(
            "min_layers",
            ("mask", "src", "dst"),
            _ref_min_layers,
            _compare_min_layers,
            cases=[
                warmup(np.array([[False]]), 0, 0),
                Case((strict_lower[:2, :2], 0, 1)),
                Case((strict_lower[:2, :2], 1, 0)),
                Case((window, 0, 5)),
                Case((star, 5, 4)),
                Case((long_window, 0, 63)),  # 63 layers
            ],
            properties=[("random masks, sources and destinations", hops_case)],
            mistakes=[
                (
                    "keep searching until nothing new is reached: a search capped at a fixed number "
                    "of layers (here 10) gives up on long paths such as 0 -> 63 in a window of 2",
                    _min_layers_capped,
                ),
                (
                    "direction: information moves from key to query, so it goes from src to dst when "
                    "mask[dst, src] is True",
                    _min_layers_transposed,
                ),
                ("return None when dst can never be reached (not -1)", _min_layers_minus_one),
                ("return None when dst can never be reached (not infinity)", _min_layers_inf),
                (
                    "count layers (edges), not positions: one layer carries information one hop, and "
                    "src == dst needs 0 layers",
                    _min_layers_plus_one,
                ),
            ],
        ),
    ]


# ---- ex4_softmax ---------------------------------------------------------------------
