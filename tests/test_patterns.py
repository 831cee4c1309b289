"""globattn_lite.patterns against brute-force double loops, closed forms and FlexAttention."""

import sys

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


@given(n=sizes, W=st.integers(1, 70))
def test_sliding_window_count(n, W):
    assert P.sliding_window(W).num_pairs(n) == sum(min(i + 1, W) for i in range(n))


@given(n=sizes, r=st.integers(0, 70))
def test_band_count(n, r):
    expected = sum(min(i, r) + 1 + min(n - 1 - i, r) for i in range(n))
    assert P.band(r).num_pairs(n) == expected


@given(n=sizes, data=st.data())
def test_global_tokens_count(n, data):
    g = data.draw(st.integers(0, n))
    p = P.global_tokens(g)
    assert p.num_pairs(n) == n * n - (n - g) ** 2
    counts = p.kv_counts(n)
    assert (counts[:g] == n).all() and (counts[g:] == g).all()
    assert p.density(n) == pytest.approx((n * n - (n - g) ** 2) / n**2)


# ----- combinations: random formula trees against the same tree of Python rules ----------


def leaves(n):
    """(pattern, rule) pairs whose parameters fit a sequence of length n."""
    small = st.integers(0, n + 3)
    fit = st.integers(0, n)
    return st.one_of(
        st.just((P.full(), lambda q, k: True)),
        st.just((P.causal(), lambda q, k: k <= q)),
        st.integers(1, n + 3).map(lambda W: (P.sliding_window(W), lambda q, k: 0 <= q - k < W)),
        small.map(lambda r: (P.band(r), lambda q, k: abs(q - k) <= r)),
        st.tuples(st.integers(0, 5), st.integers(1, 4)).map(
            lambda rd: (P.dilated(*rd), lambda q, k: abs(q - k) <= rd[0] * rd[1] and (q - k) % rd[1] == 0)
        ),
        fit.map(lambda g: (P.global_tokens(g), lambda q, k: q < g or k < g)),
        fit.map(lambda s: (P.sinks(s), lambda q, k: k < s)),
        st.lists(st.integers(0, n - 1), unique=True, max_size=4).map(
            lambda G: (P.global_positions(G), lambda q, k: q in G or k in G)
        ),
        st.integers(1, 6).map(lambda s: (P.strided(s), lambda q, k: (q - k) % s == 0)),
    )


def formulas(n):
    def extend(children):
        return st.one_of(
            children.map(lambda a: (~a[0], lambda q, k: not a[1](q, k))),
            st.tuples(children, children).map(
                lambda ab: (ab[0][0] & ab[1][0], lambda q, k: ab[0][1](q, k) and ab[1][1](q, k))
            ),
            st.tuples(children, children).map(
                lambda ab: (ab[0][0] | ab[1][0], lambda q, k: ab[0][1](q, k) or ab[1][1](q, k))
            ),
        )

    return st.recursive(leaves(n), extend, max_leaves=6)


@given(data=st.data())
def test_combinations_match_brute_force_and_print_evaluable_formulas(data):
    n = data.draw(st.integers(1, 40))
    p, rule = data.draw(formulas(n))
    m = p.mask(n)
    assert (m == brute(rule, n)).all(), str(p)
    assert (p.kv_counts(n) == m.sum(axis=1)).all()
    assert p.num_pairs(n) == m.sum()
    i = data.draw(st.integers(0, n - 1))
    assert p.attended(i, n).tolist() == np.flatnonzero(m[i]).tolist()
    # the printed formula is Python that rebuilds the same pattern
    again = eval(str(p), vars(P))
    assert str(again) == str(p) == repr(p)
    assert (again.mask(n) == m).all()


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda: ~P.causal(), "~causal()"),
        (lambda: ~~P.causal(), "~~causal()"),
        (lambda: ~(P.causal() & P.sinks(2)), "~(causal() & sinks(2))"),
        (lambda: ~(P.causal() | P.sinks(2)), "~(causal() | sinks(2))"),
        (lambda: P.causal() & (P.sliding_window(3) | P.sinks(1)), "causal() & (sliding_window(3) | sinks(1))"),
        (lambda: (P.causal() & P.sliding_window(3)) | P.sinks(1), "causal() & sliding_window(3) | sinks(1)"),
        (lambda: P.sinks(1) | (P.causal() & P.band(2)), "sinks(1) | causal() & band(2)"),
        (lambda: P.causal() & (P.band(1) & P.sinks(1)), "causal() & band(1) & sinks(1)"),
        (lambda: (P.band(1) | P.sinks(1)) & ~P.causal(), "(band(1) | sinks(1)) & ~causal()"),
        (lambda: P.global_positions([9, 0, 4]), "global_positions([0, 4, 9])"),
        (lambda: P.from_longformer_window(512), "band(256)"),
        (lambda: P.from_index_sets([[0], [1, 0]]), "from_index_sets([[0], [0, 1]])"),
        (lambda: P.bigbird(64), "bigbird(64, window_blocks=3, global_blocks=2, random_blocks=3, seed=0)"),
    ],
)
def test_formula_text_has_minimal_parentheses(build, text):
    assert str(build()) == text


# ----- from_index_sets and the call interface ---------------------------------------------


@given(data=st.data())
def test_from_index_sets(data):
    m = data.draw(st.integers(1, 30))
    sets = data.draw(st.lists(st.lists(st.integers(0, m - 1), max_size=8), min_size=m, max_size=m))
    p = P.from_index_sets(sets)
    assert p.needs_length
    n = data.draw(st.integers(1, m))
    assert (p.mask(n) == brute(lambda q, k: k in sets[q], n)).all()
    i = data.draw(st.integers(0, n - 1))
    assert p.attended(i, n).tolist() == sorted(k for k in set(sets[i]) if k < n)


def test_index_sets_round_trip_of_another_pattern():
    n = 20
    p = P.causal() & (P.sliding_window(4) | P.global_positions([0, 7]))
    q = P.from_index_sets([p.attended(i, n) for i in range(n)])
    assert (q.mask(n) == p.mask(n)).all()


def test_call_broadcasts_numpy_and_torch():
    torch = pytest.importorskip("torch")
    p = P.sinks(2)
    q, k = np.arange(3)[:, None], np.arange(5)[None, :]
    out = p(q, k)
    assert out.shape == (3, 5) and out.dtype == bool and out.flags.writeable
    assert (out == (k < 2)).all()
    assert p(4, 1) and not p(0, 3)
    assert P.causal()([[0], [3]], [0, 2]).tolist() == [[True, False], [True, True]]  # lists work too
    t = p(torch.arange(3)[:, None], torch.arange(5)[None, :])
    assert t.dtype == torch.bool and tuple(t.shape) == (3, 5)
    assert (t.numpy() == out).all()
    bb = P.bigbird(2, random_blocks=1)
    assert (bb(q, k, n=10) == bb.mask(10)[:3, :5]).all()


def test_masks_and_counts_need_no_torch(monkeypatch):
    """Masks and counts are numpy only: with torch made unimportable they still work."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    m = P.bigbird(4).mask(40)
    assert isinstance(m, np.ndarray) and m.shape == (40, 40)
    assert (P.bigbird(4).kv_counts(40) == m.sum(axis=1)).all()
    counts = (P.causal() & P.global_positions([1])).kv_counts(9)
    assert (counts == brute(lambda q, k: k <= q and 1 in (q, k), 9).sum(axis=1)).all()


def test_large_mask_is_vectorised():
    n = 16384
    p = P.causal() & (P.sliding_window(3) | P.sinks(1))
    m = p.mask(n)
    assert m.dtype == bool and m.shape == (n, n)
    assert m.sum() == 1 + 2 + 3 + 4 * (n - 3)
    assert m[499].sum() == 4 and m[n - 1, [0, n - 3, n - 2, n - 1]].all()


# ----- BigBird ----------------------------------------------------------------------------


@given(data=st.data())
def test_bigbird_without_random_blocks_against_brute_force(data):
    b = data.draw(st.integers(1, 8))
    window = data.draw(st.sampled_from([1, 3, 5]))
    glob = data.draw(st.integers(0, 4))
    n = data.draw(st.integers(max(1, (glob - 1) * b + 1), 64))
    nb = -(-n // b)
    first, last = glob - glob // 2, glob // 2

    def is_global(block):
        return block < first or block >= nb - last

    def rule(q, k):
        qb, kb = q // b, k // b
        return abs(qb - kb) <= window // 2 or is_global(qb) or is_global(kb)

    p = P.bigbird(b, window_blocks=window, global_blocks=glob, random_blocks=0)
    assert (p.mask(n) == brute(rule, n)).all()


def block_view(mask, b):
    """(nb, nb) block matrix, after checking the mask is constant on every b x b tile."""
    nb = mask.shape[0] // b
    tiles = mask.reshape(nb, b, nb, b)
    assert (tiles.all(axis=(1, 3)) == tiles.any(axis=(1, 3))).all(), "not block-constant"
    return tiles.all(axis=(1, 3))


@pytest.mark.parametrize("nb, random_blocks", [(12, 3), (6, 3), (5, 3), (16, 1), (3, 3)])
def test_bigbird_structure_hf_defaults(nb, random_blocks):
    b = 4
    n = nb * b
    p = P.bigbird(b, random_blocks=random_blocks, seed=7)
    blocks = block_view(p.mask(n), b)
    assert blocks[0].all() and blocks[-1].all(), "global blocks see everything"
    assert blocks[:, 0].all() and blocks[:, -1].all(), "everyone sees the global blocks"
    for qb in range(1, nb - 1):
        near = [kb for kb in (qb - 1, qb, qb + 1)]
        assert blocks[qb, near].all(), "window: own block and both neighbours"
        fixed = set(near) | {0, nb - 1}
        extra = set(np.flatnonzero(blocks[qb])) - fixed
        assert len(extra) == min(random_blocks, nb - len(fixed))
    assert p.mask(n).sum() == p.num_pairs(n)


def test_bigbird_middle_block_counts_match_facts_sheet():
    # (5 + r) * b keys for a middle query block with HF defaults (facts sheet, section 1)
    b, r, nb = 64, 3, 16
    counts = P.bigbird(b).kv_counts(nb * b)
    assert (counts[2 * b : (nb - 2) * b] == (5 + r) * b).all()


def test_bigbird_seed_and_partial_last_block():
    n = 16 * 8
    a = P.bigbird(8, seed=1).mask(n)
    assert (a == P.bigbird(8, seed=1).mask(n)).all()
    assert (a != P.bigbird(8, seed=2).mask(n)).any()
    # n not a multiple of the block size: the partial last block is a (global) block too
    m = P.bigbird(8, seed=1).mask(n + 3)
    assert m[-3:].all() and m[:, -3:].all()
    # global_blocks=3: the first two blocks and the last one are global
    g3 = P.bigbird(4, global_blocks=3, random_blocks=0).mask(40)
    assert g3[:8].all() and g3[-4:].all() and not g3[8:12].all()


# ----- FlexAttention: the mask_mod gives the same mask -------------------------------------


def flex_patterns():
    return [
        P.full(),
        P.causal(),
        P.sliding_window(5),
        P.band(2),
        P.dilated(2, 3),
        P.global_tokens(2),
        P.sinks(3),
        P.global_positions([0, 5, 11]),
        P.strided(4),
        P.from_lookback(3),
        P.from_longformer_window(4),
        P.causal() & (P.sliding_window(3) | P.sinks(1)),
        ~P.causal() | (P.band(1) & ~P.strided(2)),
        P.bigbird(4),
        P.bigbird(3, window_blocks=1, global_blocks=1, random_blocks=2, seed=5),
        P.causal() & P.bigbird(4, seed=2),
        P.from_index_sets([[0], [0, 1], [1], [0, 2, 3]] + [[i] for i in range(4, 20)]),
    ]


def test_mask_mod_matches_mask():
    torch = pytest.importorskip("torch")
    from torch.nn.attention.flex_attention import create_mask

    for p in flex_patterns():
        for n in (13, 16):
            mod = p.mask_mod_for(n) if p.needs_length else p.mask_mod
            dense = create_mask(mod, 1, 1, n, n, device="cpu")
            assert dense.dtype == torch.bool
            assert (dense[0, 0].numpy() == p.mask(n)).all(), (str(p), n)


def test_mask_mod_needs_length_for_bigbird_and_index_sets():
    for p in (P.bigbird(4), P.from_index_sets([[0]]), P.causal() & P.bigbird(2)):
        assert p.needs_length
        with pytest.raises(ValueError, match=r"has no length-free mask_mod: use mask_mod_for\(n\)"):
            _ = p.mask_mod
    assert not (P.causal() | P.global_positions([3])).needs_length
    with pytest.raises(ValueError, match=r"bigbird\(4, .*\) depends on the sequence length: pass n"):
        P.bigbird(4)(np.arange(3), np.arange(3))


# ----- attention-gym's reference mask_mods -----------------------------------------------


def attention_gym_masks():
    """attention-gym's ``masks`` module. attention-gym follows torch's newest FlexAttention API, so
    with an older torch (the lowest-bounds leg) its package fails to import a torch name: only then is
    the cross-check skipped, saying why; any other import failure fails the test."""
    pytest.importorskip("torch")
    try:
        import attn_gym.masks as gym
    except ImportError as error:
        if "torch" not in str(error):
            raise
        import torch

        pytest.skip(f"attention-gym needs a newer torch than {torch.__version__}: {error}")
    return gym


def gym_mask(mod, n):
    from torch.nn.attention.flex_attention import create_mask

    return create_mask(mod, 1, 1, n, n, device="cpu")[0, 0].numpy()


def test_attention_gym_conventions():
    gym = attention_gym_masks()
    n = 37
    assert (gym_mask(gym.causal_mask, n) == P.causal().mask(n)).all()
    for w in (0, 1, 3, 8):
        # attention-gym's window is a look-back: w + 1 keys, not w
        lookback = gym_mask(gym.generate_sliding_window(w), n)
        assert (lookback == P.from_lookback(w).mask(n)).all()
        assert (lookback == P.sliding_window(w + 1).mask(n)).all()
        if w >= 1:
            assert (lookback != P.sliding_window(w).mask(n)).any()
    for prefix in (0, 1, 5):
        assert (gym_mask(gym.generate_prefix_lm_mask(prefix), n) == (P.causal() | P.sinks(prefix)).mask(n)).all()
    G = [0, 9, 30]
    is_global = __import__("torch").zeros(n, dtype=__import__("torch").bool)
    is_global[G] = True
    longformer = gym_mask(gym.generate_global_sliding_window(3, is_global), n)
    assert (longformer == (P.band(3) | P.global_positions(G)).mask(n)).all()


@pytest.mark.parametrize("radius, dilation", [(2, 2), (3, 3), (4, 2), (1, 5)])
def test_attention_gym_dilated_counts_positions_not_tokens(radius, dilation):
    gym = attention_gym_masks()
    n = 40
    ours = P.dilated(radius, dilation).mask(n)
    # equal once attention-gym's window is given in positions: radius * dilation
    assert (gym_mask(gym.generate_dilated_sliding_window(radius * dilation, dilation), n) == ours).all()
    # passing our radius (a token count) to attention-gym reaches only radius // dilation tokens each side
    theirs = gym_mask(gym.generate_dilated_sliding_window(radius, dilation), n)
    assert (theirs == P.dilated(radius // dilation, dilation).mask(n)).all()
    middle = n // 2
    assert ours[middle].sum() == 2 * radius + 1
    assert theirs[middle].sum() == 2 * (radius // dilation) + 1 < ours[middle].sum()


# ----- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: P.sliding_window(0), ValueError, "W must be >= 1, got 0"),
        (lambda: P.sliding_window(-2), ValueError, "W must be >= 1, got -2"),
        (lambda: P.sliding_window(2.0), TypeError, "W must be a whole number (int), got 2.0 of type float"),
        (lambda: P.sliding_window(True), TypeError, "W must be a whole number (int), got True of type bool"),
        (lambda: P.band(-1), ValueError, "radius must be >= 0, got -1"),
        (lambda: P.band(1.5), TypeError, "radius must be a whole number (int), got 1.5 of type float"),
        (lambda: P.dilated(2, 0), ValueError, "dilation must be >= 1, got 0"),
        (lambda: P.dilated(-1, 2), ValueError, "radius must be >= 0, got -1"),
        (lambda: P.global_tokens(-1), ValueError, "g must be >= 0, got -1"),
        (lambda: P.global_tokens(False), TypeError, "g must be a whole number (int), got False of type bool"),
        (lambda: P.sinks(-4), ValueError, "S must be >= 0, got -4"),
        (lambda: P.sinks("4"), TypeError, "S must be a whole number (int), got '4' of type str"),
        (lambda: P.strided(0), ValueError, "stride must be >= 1, got 0"),
        (lambda: P.from_lookback(-1), ValueError, "w must be >= 0, got -1"),
        (lambda: P.global_positions([1, -1]), ValueError, "indices[1] must be >= 0, got -1"),
        (lambda: P.global_positions([1, 1]), ValueError, "indices must be unique, got duplicates [1]"),
        (lambda: P.global_positions([0.5]), TypeError, "indices[0] must be a whole number (int), got 0.5"),
        (lambda: P.global_positions(3), TypeError, "indices must be a sequence of ints, got 3"),
        (lambda: P.bigbird(0), ValueError, "block_size must be >= 1, got 0"),
        (lambda: P.bigbird(4, window_blocks=2), ValueError, "window_blocks must be odd"),
        (lambda: P.bigbird(4, global_blocks=-1), ValueError, "global_blocks must be >= 0, got -1"),
        (lambda: P.bigbird(4, random_blocks=-1), ValueError, "random_blocks must be >= 0, got -1"),
        (lambda: P.bigbird(4, seed=1.0), TypeError, "seed must be a whole number (int), got 1.0 of type float"),
        (lambda: P.from_index_sets([]), ValueError, "sets must hold at least one query's keys, got an empty sequence"),
        (lambda: P.from_index_sets([[0], [2]]), ValueError, "sets[1][...] must be <= 1, got 2"),
        (lambda: P.from_index_sets([0, 1]), TypeError, "sets[0] must be a sequence of key positions, got 0"),
        (lambda: P.from_index_sets(5), TypeError, "sets must be a sequence of key-position sequences, got 5"),
        (lambda: P.from_longformer_window(3), ValueError, "attention_window must be even"),
        (lambda: P.from_longformer_window(0), ValueError, "attention_window must be >= 1, got 0"),
        (lambda: P.from_longformer_window(-2), ValueError, "attention_window must be >= 1, got -2"),
        (lambda: P.from_longformer_window(4.0), TypeError, "attention_window must be a whole number (int), got 4.0"),
        (lambda: P.causal().mask(0), ValueError, "n must be >= 1, got 0"),
        (lambda: P.causal().mask(2.5), TypeError, "n must be a whole number (int), got 2.5 of type float"),
        (lambda: P.causal().kv_counts(-1), ValueError, "n must be >= 1, got -1"),
        (lambda: P.global_tokens(5).mask(3), ValueError, "global_tokens(5) needs n >= 5, got n=3"),
        (lambda: (P.causal() & P.sinks(4)).num_pairs(2), ValueError, "sinks(4) needs n >= 4, got n=2"),
        (lambda: P.global_positions([0, 7]).mask(7), ValueError, "global_positions([0, 7]) needs n >= 8, got n=7"),
        (
            lambda: P.bigbird(4, global_blocks=3).mask(8),
            ValueError,
            "needs n >= 9 (3 blocks of 4 for the global blocks), got n=8",
        ),
        (lambda: P.from_index_sets([[0], [1]]).mask(3), ValueError, "has sets for 2 queries, so n must be <= 2"),
        (lambda: P.sinks(2).mask_mod_for(1), ValueError, "sinks(2) needs n >= 2, got n=1"),
        (lambda: P.causal().attended(5, 5), ValueError, "i must be <= 4, got 5"),
        (lambda: P.causal().attended(-1, 5), ValueError, "i must be >= 0, got -1"),
        (lambda: P.causal().attended(1.0, 5), TypeError, "i must be a whole number (int), got 1.0 of type float"),
        (lambda: P.causal() & 1, TypeError, "can only combine a Pattern with another Pattern using &, got 1"),
        (
            lambda: P.causal() | np.ones((2, 2), bool),
            TypeError,
            "can only combine a Pattern with another Pattern using |, got array(",
        ),
        (lambda: True & P.causal(), TypeError, "can only combine a Pattern with another Pattern using &, got True"),
        (lambda: None | P.causal(), TypeError, "can only combine a Pattern with another Pattern using |, got None"),
        (lambda: P.causal() and P.sinks(1), TypeError, "a Pattern has no truth value (causal())"),
        (lambda: P.causal()(np.array([0.5]), np.array([0])), TypeError, "q must hold integer positions"),
    ],
)
def test_bad_input(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    assert words in str(info.value)


# ----- as_mask / as_torch_mask: the one "Pattern or mask -> mask" conversion ----------------


def test_as_mask_reads_a_pattern_an_array_and_nested_lists_alike():
    p = P.causal() & (P.sliding_window(3) | P.sinks(1))
    m = p.mask(9)
    assert (P.as_mask(p, 9) == m).all()
    assert P.as_mask(m) is m  # an array is returned as it is, not copied
    assert (P.as_mask(m.tolist(), 9) == m).all()
    assert P.as_mask(np.ones((2, 3, 4), bool), square=False).shape == (2, 3, 4)


def test_as_torch_mask_matches_as_mask_and_keeps_a_bool_tensor():
    torch = pytest.importorskip("torch")
    p = P.band(2) | P.global_tokens(1)
    t = P.as_torch_mask(p, 7)
    assert t.dtype == torch.bool and (t.numpy() == P.as_mask(p, 7)).all()
    given_tensor = torch.from_numpy(p.mask(7))
    assert P.as_torch_mask(given_tensor, 7) is given_tensor
    assert (P.as_torch_mask(p.mask(7).tolist(), 7) == t).all()


@pytest.mark.parametrize(
    "value, n, exc, words",
    [
        (P.causal(), None, ValueError, "n (the sequence length, >= 1) is required when m is a Pattern"),
        ("causal", 4, TypeError, "m must be a Pattern (from globattn_lite.patterns) or a boolean (n, n) array"),
        (None, 4, TypeError, "m must be a Pattern (from globattn_lite.patterns) or a boolean (n, n) array"),
        (np.ones((4, 4)), 4, TypeError, "m must be a boolean array (True = may attend) or a Pattern"),
        (np.ones(4, bool), 4, ValueError, "m must be 2-D (queries x keys), got shape (4,)"),
        (np.ones((3, 4), bool), None, ValueError, "m must be square (n x n), got shape (3, 4)"),
        (np.ones((0, 0), bool), None, ValueError, "m must have at least one row and column, got shape (0, 0)"),
        (np.ones((3, 3), bool), 4, ValueError, "m must have shape (N, N) = (4, 4), got (3, 3)"),
        (np.ones((3, 3), bool), 2.0, TypeError, "n must be a whole number (int), got 2.0 of type float"),
    ],
)
def test_as_mask_bad_input(value, n, exc, words):
    with pytest.raises(exc) as info:
        P.as_mask(value, n, name="m")
    assert words in str(info.value)


def test_as_torch_mask_bad_tensor():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"m must be a bool tensor \(True = may attend\), got dtype torch\.float32"):
        P.as_torch_mask(torch.ones(3, 3), 3, name="m")
    with pytest.raises(ValueError, match=r"m must have shape \(N, N\) = \(4, 4\), got \(3, 3\)"):
        P.as_torch_mask(torch.ones(3, 3, dtype=torch.bool), 4, name="m")
