"""globattn_lite.patterns against brute-force double loops, closed forms and FlexAttention."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from globattn_lite import patterns as P


def brute(rule, n):
    """The mask from a plain Python double loop over (q, k): independent of the library code."""
    return np.array([[bool(rule(q, k)) for k in range(n)] for q in range(n)], dtype=bool)


sizes = st.integers(min_value=1, max_value=64)


# ----- each constructor against a brute-force loop ---------------------------------------


def test_full_and_causal():
    for n in (1, 2, 7, 33):
        assert P.full().mask(n).all()
        assert (P.causal().mask(n) == brute(lambda q, k: k <= q, n)).all()


@given(n=sizes, W=st.integers(1, 70))
def test_sliding_window(n, W):
    assert (P.sliding_window(W).mask(n) == brute(lambda q, k: 0 <= q - k < W, n)).all()


@given(n=sizes, r=st.integers(0, 70))
def test_band(n, r):
    assert (P.band(r).mask(n) == brute(lambda q, k: -r <= q - k <= r, n)).all()


@given(n=sizes, r=st.integers(0, 20), d=st.integers(1, 8))
def test_dilated(n, r, d):
    # keys at q + d*m for m in -r..r
    expected = brute(lambda q, k: any(k == q + d * m for m in range(-r, r + 1)), n)
    assert (P.dilated(r, d).mask(n) == expected).all()


@given(n=sizes, data=st.data())
def test_global_tokens_and_sinks(n, data):
    g = data.draw(st.integers(0, n))
    assert (P.global_tokens(g).mask(n) == brute(lambda q, k: q in range(g) or k in range(g), n)).all()
    assert (P.sinks(g).mask(n) == brute(lambda q, k: k in range(g), n)).all()


@given(n=sizes, data=st.data())
def test_global_positions(n, data):
    G = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=6))
    expected = brute(lambda q, k: q in G or k in G, n)
    assert (P.global_positions(G).mask(n) == expected).all()


@given(n=sizes, s=st.integers(1, 20))
def test_strided(n, s):
    assert (P.strided(s).mask(n) == brute(lambda q, k: abs(q - k) % s == 0, n)).all()


@given(n=sizes, w=st.integers(0, 70))
def test_from_lookback(n, w):
    assert (P.from_lookback(w).mask(n) == brute(lambda q, k: k <= q and q - k <= w, n)).all()
    assert str(P.from_lookback(w)) == f"sliding_window({w + 1})"


@given(n=sizes, half=st.integers(1, 40))
def test_from_longformer_window(n, half):
    a = 2 * half
    assert (P.from_longformer_window(a).mask(n) == brute(lambda q, k: abs(q - k) <= a // 2, n)).all()


# ----- the source quiz and closed forms --------------------------------------------------


def test_quiz_position_500():
    p = P.causal() & (P.sliding_window(3) | P.sinks(1))
    assert str(p) == "causal() & (sliding_window(3) | sinks(1))"
    assert p.kv_counts(1024)[499] == 4
    assert p.attended(499, 1024).tolist() == [0, 497, 498, 499]


def test_causal_count():
    for n in (1, 5, 100, 1024):
        assert P.causal().num_pairs(n) == n * (n + 1) // 2


def test_lookback_plus_sinks_closed_form():
    N, w, S = 1024, 128, 4
    closed = sum(min(i, w) + 1 + max(0, min(S, i - w)) for i in range(N))
    assert closed == 127_414
    p = P.causal() & (P.from_lookback(w) | P.sinks(S))
    assert p.num_pairs(N) == 127_414 == p.mask(N).sum()
