"""Building blocks of the exercise sets' inputs: index grids, short random floats,
hypothesis strategies that shrink well, and constant answers."""

from __future__ import annotations

import numpy as np


def _grid(n):
    return np.arange(n)[:, None], np.arange(n)[None, :]


def _rng_floats(seed, *shape, scale=1.0):
    """Reproducible normal floats rounded to one decimal (short to print)."""
    return np.round(np.random.default_rng(seed).normal(size=shape), 1) * scale


def _halves(st, bound):
    """Floats k / 2 in [-bound, bound]: they shrink fast and print short."""
    return st.integers(-2 * bound, 2 * bound).map(lambda i: i / 2)


def _float_arrays(st, shape, elements):
    """Float64 arrays of a fixed shape drawn as a flat list (cheaper to shrink than hnp.arrays)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = int(np.prod(shape))
    return st.lists(elements, min_size=size, max_size=size).map(
        lambda xs: np.array(xs, dtype=np.float64).reshape(shape)
    )


def _answer(value):
    """The reference of a quiz answer: a function of no arguments returning it."""
    return lambda: value
