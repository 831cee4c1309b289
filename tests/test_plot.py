"""Headless tests of globattn_lite.plot: each figure shows what its inputs say.

Counts in titles are checked against numbers computed here independently (closed forms or
the core modules), and image data against the masks/weights drawn. The module never uses
pyplot, so no figure is registered anywhere: a figure is freed as soon as a test drops it,
with nothing to close.
"""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import PowerNorm, to_rgba
from matplotlib.figure import Figure
from PIL import Image

from globattn_lite import attention, costs, plot
from globattn_lite import patterns as P

QUIZ = P.causal() & (P.sliding_window(3) | P.sinks(1))
GIB = 2**30


def title_numbers(title):
    """(n, pairs, density) from a plot_mask title."""
    m = re.search(r"n=(\d+): ([\d,]+) pairs, density ([0-9.e+-]+)", title)
    assert m, title
    return int(m.group(1)), int(m.group(2).replace(",", "")), float(m.group(3))


def query_keys(title):
    m = re.search(r"query (\d+): (\d+) keys", title)
    assert m, title
    return int(m.group(1)), int(m.group(2))


def test_plot_module_never_imports_pyplot():
    code = "import sys, globattn_lite.plot; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- plot_mask


@pytest.mark.parametrize(
    "pattern",
    [QUIZ, P.full(), P.band(2) | P.global_tokens(2), P.dilated(2, 3)],
    ids=["quiz", "full", "band_global", "dilated"],
)
@pytest.mark.parametrize("n", [2, 16, 64])
def test_plot_mask_title_and_image_match_the_pattern(pattern, n):
    for query in (None, 0, n - 1):
        fig = plot.plot_mask(pattern, n, query=query)
        assert isinstance(fig, Figure)
        ax = fig.axes[0]
        title = ax.get_title()
        assert str(pattern) in title.replace("\n", "")
        got_n, pairs, density = title_numbers(title)
        assert (got_n, pairs) == (n, pattern.num_pairs(n))
        assert density == pytest.approx(pattern.density(n), rel=1e-3)
        np.testing.assert_array_equal(ax.images[0].get_array(), pattern.mask(n))
        if query is None:
            counts = pattern.kv_counts(n)
            assert f"keys per query: {counts.min()} to {counts.max()}" in title
            assert len(ax.images) == 1
        else:
            G = pattern.attended(query, n)
            assert query_keys(title) == (query, len(G))
            overlay = ax.images[1].get_array()  # (1, n, RGBA): painted exactly at G
            np.testing.assert_array_equal(np.flatnonzero(overlay[0, :, 3] > 0), G)
        assert ax.get_xlabel().startswith("key position k") and ax.get_ylabel() == "query position q"
        assert "yellow: may attend" in ax.get_xlabel() and len(fig.axes) == 1  # no colour bar needed
        assert len(ax.collections) == 2  # grid lines up to n = 64


def test_plot_mask_quiz_row_499_has_four_keys():
    fig = plot.plot_mask(QUIZ, 1024, query=499)
    title = fig.axes[0].get_title()
    assert query_keys(title) == (499, 4)
    assert "G = {0, 497, 498, 499}" in title
    assert title_numbers(title)[1] == 1 + 2 + 3 + 4 * (1024 - 3)  # rows 0, 1, 2 see 1, 2, 3 keys; later rows 4


def test_plot_mask_n1_and_bool_mask_input():
    fig = plot.plot_mask(np.ones((1, 1), dtype=bool), query=0)
    title = fig.axes[0].get_title()
    assert title.startswith("mask")
    assert title_numbers(title) == (1, 1, 1.0)
    assert query_keys(title) == (0, 1)
    assert list(fig.axes[0].get_xticks()) == [0]
    causal = np.tril(np.ones((8, 8), dtype=bool))
    fig = plot.plot_mask(causal, n=8, query=7)
    assert title_numbers(fig.axes[0].get_title())[1] == 36
    assert query_keys(fig.axes[0].get_title()) == (7, 8)


def test_plot_mask_no_grid_above_64():
    ax = plot.plot_mask(QUIZ, 65).axes[0]
    assert len(ax.collections) == 0


def test_plot_mask_aggregates_large_n_into_block_fractions():
    n = 4096
    pattern = P.causal() & (P.sliding_window(64) | P.sinks(4))
    fig = plot.plot_mask(pattern, n, query=n - 1)
    ax = fig.axes[0]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (256, 256)  # 16 x 16 token blocks
    mask = pattern.mask(n)
    expected = mask.reshape(256, 16, 256, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(image, expected)
    assert ax.get_xlim() == (-0.5, n - 0.5)  # axes stay in token units
    assert title_numbers(ax.get_title())[:2] == (n, pattern.num_pairs(n))
    assert query_keys(ax.get_title()) == (n - 1, 68)
    # the highlighted query row paints the blocks holding its keys: block 0 (sinks) and the last 4
    overlay = ax.images[1].get_array()
    assert overlay.shape[:2] == (1, 256)
    assert list(np.flatnonzero(overlay[0, :, 3] > 0)) == [0, 252, 253, 254, 255]
    assert "16 x 16 block" in fig.axes[1].get_ylabel()  # the colorbar explains the aggregation


def test_plot_mask_partial_last_block():
    n = 300  # blocks of 2 tokens, 150 cells; all full
    fig = plot.plot_mask(P.causal(), n)
    image = np.asarray(fig.axes[0].images[0].get_array())
    assert image.shape == (150, 150)
    n = 301  # blocks of 2, last block holds one token
    image = np.asarray(plot.plot_mask(P.full(), n).axes[0].images[0].get_array())
    assert image.shape == (151, 151) and np.allclose(image, 1.0)


def test_plot_mask_bigbird_and_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    pattern = P.bigbird(8)
    assert plot.plot_mask(pattern, 128, query=40, ax=ax) is fig
    assert title_numbers(ax.get_title())[1] == pattern.num_pairs(128)


def test_given_axes_inside_a_subfigure_return_the_root_figure():
    fig = Figure()
    left, right = fig.subfigures(1, 2)
    assert plot.plot_mask(P.causal(), 4, ax=left.add_subplot()) is fig
    assert plot.plot_scaling({"n": [8], "method": ["x"], "seconds": [1e-3]}, ax=right.subplots(1, 2)) is fig


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((QUIZ,), ValueError, "n \\(the sequence length"),  # Pattern without n
        ((QUIZ, 0), ValueError, "n must be >= 1"),
        ((QUIZ, 8.0), TypeError, "n must be a whole number"),
        ((np.ones((3, 3), dtype=bool), 4), ValueError, r"pattern_or_mask must have shape \(N, N\) = \(4, 4\)"),
        ((np.ones((3, 3)), None), TypeError, "pattern_or_mask must be a boolean array"),  # not boolean
        ((np.ones((3, 4), dtype=bool), None), ValueError, "pattern_or_mask must be square"),  # not square
        (("causal", 8), TypeError, "pattern_or_mask must be a Pattern"),
        ((P.global_tokens(9), 8), ValueError, "global_tokens\\(9\\) needs n >= 9"),  # more global tokens than positions
    ],
)
def test_plot_mask_rejects_bad_input(args, error, words):
    with pytest.raises(error, match=words):
        plot.plot_mask(*args)


@pytest.mark.parametrize(
    "query, error, words",
    [
        (-1, ValueError, "query must be >= 0, got -1"),
        (8, ValueError, "query must be <= 7, got 8"),
        (2.0, TypeError, r"query must be a whole number \(int\), got 2\.0"),
    ],
)
def test_plot_mask_rejects_bad_query(query, error, words):
    with pytest.raises(error, match=words):
        plot.plot_mask(QUIZ, 8, query=query)


# --------------------------------------------------------------------------- plot_attention


def test_plot_attention_causal_weights_with_tokens():
    rng = np.random.default_rng(0)
    n = 6
    q, k, v = rng.normal(size=(3, n, 4))
    _, w = attention.attention(q, k, v, mask=P.causal())
    tokens = ["The", "cat", "sat", "on", "the", "mat"]
    fig = plot.plot_attention(w, tokens=tokens)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), w)
    title = ax.get_title()
    assert f"{n} queries x {n} keys" in title
    assert f"{n * (n - 1) // 2} zero weights" in title  # the masked upper triangle
    assert f"max weight {w.max():.3g}" in title
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert len(ax.texts) == n * n  # small matrices print each weight
    assert ax.get_xlabel() == "key token" and ax.get_ylabel() == "query token"
    assert fig.axes[1].get_ylabel() == "attention weight"


def test_plot_attention_rectangular_zeros_and_many_tokens():
    w = np.zeros((3, 5))
    ax = plot.plot_attention(w, tokens=list("abcde")).axes[0]
    assert "3 queries x 5 keys" in ax.get_title() and "15 zero weights" in ax.get_title()
    assert ax.get_ylabel() == "query position q"
    big = np.full((100, 100), 0.01)
    ax = plot.plot_attention(big, tokens=[f"t{i}" for i in range(100)]).axes[0]
    assert len(ax.texts) == 0
    assert 0 < len(ax.get_xticklabels()) <= 34  # thinned labels


@pytest.mark.parametrize(
    "weights, tokens, error, words",
    [
        (np.ones(4), None, ValueError, "weights must be 2-D"),
        (-np.eye(2), None, ValueError, "weights must be non-negative"),
        (np.array([[np.nan, 0.0], [0.0, 1.0]]), None, ValueError, "weights must be finite"),
        (np.eye(3), ["a", "b"], ValueError, "tokens must have one label per key"),
        (np.eye(3), "abc", TypeError, "tokens must be a sequence"),
        (np.array([["a"]]), None, TypeError, "weights must be an array of real numbers"),
    ],
)
def test_plot_attention_rejects_bad_input(weights, tokens, error, words):
    with pytest.raises(error, match=words):
        plot.plot_attention(weights, tokens=tokens)


# --------------------------------------------------------------------------- plot_softmax


def bars(ax):
    return [np.array([p.get_height() for p in c.patches]) for c in ax.containers]


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_softmax_plain():
    s = np.array([2.0, 1.0, 0.0, -1.0])
    ax = plot.plot_softmax(s).axes[0]
    p = np.exp(s) / np.exp(s).sum()
    (heights,) = bars(ax)
    np.testing.assert_allclose(heights, p)
    H = -(p * np.log(p)).sum()
    assert legend_texts(ax) == [f"softmax: H = {H:.3f} nats, max {p.max():.3f}"]
    assert f"ln 4 = {math.log(4):.3f}" in ax.get_title()
    assert ax.get_ylabel() == "attention weight (probability)"


def test_plot_softmax_with_sink_and_eviction():
    s = np.array([3.0, 0.5, 0.0, 1.0, -2.0])
    keep = np.array([False, True, True, True, True])
    ax = plot.plot_softmax(s, sink_logit=0.0, keep=keep).axes[0]
    plain, sink, evicted = bars(ax)
    Z = np.exp(s).sum()
    np.testing.assert_allclose(sink, np.exp(s) / (1 + Z))
    kept = np.where(keep, np.exp(s), 0) / np.exp(s[keep]).sum()
    np.testing.assert_allclose(evicted, kept)
    title = ax.get_title()
    assert f"sink takes {1 / (1 + Z):.3f} of the mass" in title
    assert f"kept weights grow x{Z / np.exp(s[keep]).sum():.3f}" in title
    texts = legend_texts(ax)
    (after,) = [t for t in texts if t.startswith("after evicting 1 of 5 keys")]
    H = -(kept[keep] * np.log(kept[keep])).sum()
    assert f"H = {H:.3f} nats, max {kept.max():.3f}" in after
    assert "evicted key" in texts


def test_plot_softmax_reports_the_sink_share_and_only_real_entropies():
    s, b = np.array([1.0, 0.0, -1.0, 2.0]), 1.0
    ax = plot.plot_softmax(s, sink_logit=b).axes[0]
    Z = np.exp(b) + np.exp(s).sum()
    share, w, p = np.exp(b) / Z, np.exp(s) / Z, np.exp(s) / np.exp(s).sum()
    full = np.r_[share, w]
    H_full, H_plain = -(full * np.log(full)).sum(), -(p * np.log(p)).sum()
    (label,) = [t for t in legend_texts(ax) if t.startswith("with sink")]
    assert label == (
        f"with sink (logit 1): keys get 1 - s = {1 - share:.3f}, H incl. sink = {H_full:.3f} nats, max {w.max():.3f}"
    )
    assert f"keys renormalised = the softmax (H {H_plain:.3f})" in ax.get_title()
    artefact = -(w * np.log(w)).sum()  # the entropy of sub-normalised weights: never shown
    assert f"{artefact:.3f}" not in " ".join(legend_texts(ax)) + ax.get_title()
    (sink_bar,) = [r for r in ax.patches if r.get_hatch() == "//"]  # the sink's own bar, left of key 0
    assert sink_bar.get_height() == pytest.approx(share) and sink_bar.get_x() < -0.5


def test_receptive_field_drawing_update_draws_what_a_fresh_figure_draws():
    """Another pattern, number of layers (other colours, colour-bar ticks) or query over the same n:
    repainted in place, pixel for pixel the figure plot_receptive_field draws anew."""
    from globattn_lite.attention import local_global_pattern

    window = local_global_pattern(4, causal=True)
    drawing = plot.ReceptiveFieldDrawing(window, 64, 3, query=63)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(drawing.figure)))
    cases = [
        (window, 4, 63),
        (local_global_pattern(6, global_tokens=2, causal=False), 12, 10),
        (local_global_pattern(3, sinks=4, causal=True), 1, 0),
    ]
    for pattern, layers, query in cases:
        assert drawing.fits(pattern, 64, layers, query=query)
        assert drawing.update(pattern, 64, layers, query=query) is drawing
        fresh = plot.plot_receptive_field(pattern, 64, layers, query=query)
        np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh)))
        assert drawing.ax.get_title() == fresh.axes[0].get_title()
    assert not drawing.fits(window, 32, 3)
    with pytest.raises(ValueError, match=r"update needs the layout \(n, title lines\) \(64, 3\), got \(32, 3\)"):
        drawing.update(window, 32, 3)


def test_a_fits_then_update_prepares_the_arguments_once(monkeypatch):
    from globattn_lite.attention import local_global_pattern

    pattern = local_global_pattern(4, causal=True)
    drawing = plot.ReceptiveFieldDrawing(pattern, 32, 3)
    calls, prepare = [], plot._receptive_field_args
    monkeypatch.setattr(plot, "_receptive_field_args", lambda *a: calls.append(a) or prepare(*a))
    assert drawing.fits(pattern, 32, 4) and drawing.update(pattern, 32, 4) is drawing
    assert len(calls) == 1  # the hop matrix once, not twice
    drawing.update(local_global_pattern(4, causal=True), 32, 4)  # another object: prepared anew
    assert len(calls) == 2


def test_softmax_drawing_update_draws_what_a_fresh_figure_draws():
    """Repainted in place (the softmax explorer's sliders): pixel for pixel the figure plot_softmax draws
    anew, including the legend, whose marks' entry matplotlib lists before the bars'."""
    s = np.array([3.0, 0.5, 0.0, 1.0, -2.0, 0.7])
    drawing = plot.SoftmaxDrawing(s, sink_logit=0.0, keep=np.arange(6) >= 1)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(drawing.figure)))
    for scores, b, evict in [(s / 3, 0.0, 1), (s, 4.0, 2), (s * 2, -2.0, 5)]:  # other heights, y range, marks
        keep = np.arange(6) >= evict
        assert drawing.fits(scores, b, keep)
        assert drawing.update(scores, b, keep) is drawing
        fresh = plot.plot_softmax(scores, sink_logit=b, keep=keep)
        np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh)))
        assert (
            legend_texts(drawing.ax) == legend_texts(fresh.axes[0])
            and drawing.ax.get_title() == fresh.axes[0].get_title()
        )
    for change in [dict(scores=s[:5], keep=None), dict(sink_logit=None), dict(keep=None), dict(keep=np.ones(6, bool))]:
        args = {**dict(scores=s, sink_logit=0.0, keep=np.arange(6) >= 1), **change}
        assert not drawing.fits(**args)
        with pytest.raises(ValueError, match="layout"):
            drawing.update(**args)


def test_softmax_and_receptive_field_drawings_can_leave_their_title_to_a_caption():
    from globattn_lite.attention import local_global_pattern

    s = np.array([3.0, 0.5, 0.0, 1.0])
    titled = plot.plot_softmax(s, sink_logit=1.0)
    drawing = plot.SoftmaxDrawing(s, sink_logit=1.0, titles_in_figure=False)
    assert drawing.caption == titled.axes[0].get_title().splitlines() and not drawing.ax.get_title()
    drawing.update(s * 2, sink_logit=1.0)
    fresh = plot.SoftmaxDrawing(s * 2, sink_logit=1.0, titles_in_figure=False)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh.figure)))
    assert drawing.caption == plot.plot_softmax(s * 2, sink_logit=1.0).axes[0].get_title().splitlines()
    # no room is kept for a title: the axes reach higher
    assert drawing.ax.get_position().y1 > titled.axes[0].get_position().y1

    window = local_global_pattern(4, causal=True)
    titled = plot.plot_receptive_field(window, 32, 3)
    drawing = plot.ReceptiveFieldDrawing(window, 32, 3, titles_in_figure=False)
    assert drawing.caption == titled.axes[0].get_title().splitlines() and not drawing.ax.get_title()
    drawing.update(window, 32, 5, query=3)
    fresh = plot.ReceptiveFieldDrawing(window, 32, 5, query=3, titles_in_figure=False)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh.figure)))
    assert drawing.caption == fresh.caption and "query 3 reaches" in drawing.caption[1]


def test_plot_softmax_and_receptive_field_into_given_axes_and_a_bad_ax():
    from globattn_lite.attention import local_global_pattern

    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot.plot_softmax([1.0, 0.0], ax=left) is fig and len(left.patches) == 2
    assert plot.plot_receptive_field(local_global_pattern(2), 8, 2, ax=right) is fig and right.images
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes or None, got str"):
        plot.plot_softmax([1.0, 0.0], ax="x")
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes or None, got str"):
        plot.plot_receptive_field(local_global_pattern(2), 8, 2, ax="x")


def test_plot_softmax_keep_all_and_single_key():
    s = np.array([0.3, -0.2, 1.5])
    ax = plot.plot_softmax(s, keep=np.ones(3, dtype=bool)).axes[0]
    plain, after = bars(ax)
    np.testing.assert_allclose(plain, after)
    assert "grow x1.000" in ax.get_title() and "evicted key" not in legend_texts(ax)
    ax = plot.plot_softmax([4.0], sink_logit=4.0).axes[0]
    plain, sink = bars(ax)
    assert plain[0] == pytest.approx(1.0) and sink[0] == pytest.approx(0.5)
    assert "H = 0.000 nats, max 1.000" in legend_texts(ax)[0]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(scores=np.ones((2, 2))), ValueError, "scores must be 1-D"),
        (dict(scores=[]), ValueError, "scores must be 1-D"),
        (dict(scores=[1.0, np.inf]), ValueError, "scores must be finite"),
        (dict(scores=[1.0, 2.0], keep=[False, False]), ValueError, "keep must keep at least one key"),
        (dict(scores=[1.0, 2.0], keep=[1, 0]), TypeError, "keep must be a boolean array"),
        (dict(scores=[1.0, 2.0], keep=[True]), ValueError, "keep must have the same shape"),
        (dict(scores=[1.0, 2.0], sink_logit=np.nan), ValueError, "sink_logit must be finite"),
    ],
)
def test_plot_softmax_rejects_bad_input(kwargs, error, words):
    with pytest.raises(error, match=words):
        plot.plot_softmax(**kwargs)


# --------------------------------------------------------------------------- plot_receptive_field


def test_plot_receptive_field_sliding_window_closed_form():
    n, W, layers = 40, 4, 3
    pattern = P.sliding_window(W)
    ax = plot.plot_receptive_field(pattern, n, layers).axes[0]
    shown = np.ma.filled(ax.images[0].get_array(), -1)
    q, k = np.indices((n, n))
    # each layer moves information W - 1 positions forward: first layer = ceil((q - k) / (W - 1))
    expected = np.where(k <= q, -(-(q - k) // (W - 1)), -1)
    expected[expected > layers] = -1
    np.testing.assert_array_equal(shown, expected)
    for L in range(layers + 1):  # and it agrees with the core's receptive field at every depth
        np.testing.assert_array_equal((shown >= 0) & (shown <= L), costs.receptive_field(pattern, n, L))
    title = ax.get_title()
    reach = 1 + layers * (W - 1)
    assert f"query {n - 1} reaches {reach} of {n} keys" in title
    assert f"key 0 -> query {n - 1}: {math.ceil((n - 1) / (W - 1))} hops" in title
    connected = int((expected >= 0).sum())
    assert f"{connected:,} of {n * n:,} (q, k) pairs connected" in title


def test_plot_receptive_field_global_token_connects_in_two_layers():
    n = 32
    pattern = P.band(1) | P.global_tokens(1)
    ax = plot.plot_receptive_field(pattern, n, 2, query=20).axes[0]
    shown = np.ma.filled(ax.images[0].get_array(), -1)
    assert (shown >= 0).all() and shown.max() == 2
    title = ax.get_title()
    assert "query 20 reaches 32 of 32 keys; key 0 -> query 20: 1 hop" in title
    assert "(100.0%)" in title


def test_plot_receptive_field_mask_input_n1_and_never():
    ax = plot.plot_receptive_field(np.ones((1, 1), dtype=bool), 1, 1).axes[0]
    assert "query 0 reaches 1 of 1 keys; key 0 -> query 0: 0 hops" in ax.get_title()
    # anti-causal: key 0 never reaches the last query
    ax = plot.plot_receptive_field(~P.causal() | (P.band(0)), 8, 2).axes[0]
    assert "key 0 -> query 7: never" in ax.get_title()


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((QUIZ, 8, 0), {}, "layers must be >= 1, got 0"),
        ((QUIZ, 0, 2), {}, "n must be >= 1, got 0"),
        ((QUIZ, 8, 2), {"query": 8}, "query must be <= 7, got 8"),
        ((np.ones((3, 3), dtype=bool), 4, 1), {}, r"pattern_or_mask must have shape \(N, N\) = \(4, 4\), got \(3, 3\)"),
    ],
)
def test_plot_receptive_field_rejects_bad_input(args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        plot.plot_receptive_field(*args, **kwargs)


# --------------------------------------------------------------------------- plot_kv_budget


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_kv_budget_llama_dense():
    ax = plot.plot_kv_budget("Llama-2-7B", 4096, policies=("dense",), budget_bytes=24 * GIB).axes[0]
    dense = lines_by_label(ax)["dense (every token)"]
    x, y = dense.get_data()
    np.testing.assert_allclose(y, x * 524_288 / GIB)  # 2 * 32 layers * 32 heads * 128 * 2 bytes per token
    assert y[-1] == pytest.approx(2.0)
    assert "dense: 2.00 GiB (12 sequences fit)" in ax.get_title()
    assert costs.max_sequences(24 * GIB, 32, 32, 128, 4096) == 12
    assert "budget 24.0 GiB" in lines_by_label(ax)
    assert ax.get_xlabel() == "tokens in context" and "GiB" in ax.get_ylabel()


def test_plot_kv_budget_mistral_policies_batch_and_dtype():
    per_token = 2 * 32 * 8 * 128 * 4  # fp32
    ax = plot.plot_kv_budget(
        "Mistral-7B", 32768, window=8192, sinks=4, batch=2, bytes_per_element=4, budget_bytes=10 * GIB
    ).axes[0]
    lines = lines_by_label(ax)
    assert set(lines) == {"dense (every token)", "window (last 8,192)", "sinks (4 + last 8,192)", "budget 10.0 GiB"}
    _, dense = lines["dense (every token)"].get_data()
    _, window = lines["window (last 8,192)"].get_data()
    assert dense[-1] == pytest.approx(2 * 32768 * per_token / GIB)
    # Mistral's own layers never look back more than 4096 tokens, so a larger window keeps 4096
    assert window[-1] == pytest.approx(2 * 4096 * per_token / GIB)
    title = ax.get_title()
    fits = 10 * GIB // (32768 * per_token)
    assert fits == 1
    assert f"dense: {2 * 32768 * per_token / GIB:.2f} GiB (1 sequence fit)" in title
    assert f"window: {2 * 4096 * per_token / GIB:.2f} GiB ({10 * GIB // (4096 * per_token)} sequences fit)" in title
    assert "batch 2" in title and "4 B/element" in title


def test_plot_kv_budget_gemma_native_and_one_token():
    preset = costs.PRESETS["Gemma-2-9B"]
    ax = plot.plot_kv_budget(preset, 8192, policies=["native", "dense"]).axes[0]
    _, native = lines_by_label(ax)["native (the model's own window 4,096)"].get_data()
    _, dense = lines_by_label(ax)["dense (every token)"].get_data()
    assert native[-1] == pytest.approx(0.75 * dense[-1])  # half the layers keep 4096 of 8192 tokens
    ax = plot.plot_kv_budget("Llama-2-7B", 1).axes[0]
    assert len(ax.get_lines()) == 3


def test_plot_kv_budget_stacks_precision_and_trained_context():
    stack = tuple(None if (i + 1) % 6 == 0 else 1024 for i in range(32))
    fig = plot.plot_kv_budget(
        "Mistral-7B", 32768, policies=("native",), bytes_per_element=0.5, stacks={"5:1": stack}, budget_bytes=4 * GIB
    )
    ax = fig.axes[0]
    lines = lines_by_label(ax)
    _, y = lines["stack 5:1 (needs retraining): 27 x window 1,024 + 5 x full"].get_data()
    assert y[-1] * GIB == (27 * 1024 + 5 * 32768) * 2 * 8 * 128 * 0.5  # 4-bit elements
    _, native = lines["native (the model's own window 4,096)"].get_data()
    assert native[-1] * GIB == 32 * 4096 * 2 * 8 * 128 * 0.5
    title = ax.get_title()
    assert "0.5 B/element" in title and "at 32,768 tokens, batch 1 (beyond its 8,192-token context):" in title
    assert "5:1 (needs retraining)" in title
    assert [p.get_label() for p in ax.patches] == ["beyond its trained context (8,192)"]
    # sinks inside the window: S + (W - S) entries, the window's cost
    ax = plot.plot_kv_budget("Llama-2-7B", 4096, policies=("window", "sinks"), window=2048, sinks_window=2044).axes[0]
    _, window = lines_by_label(ax)["window (last 2,048)"].get_data()
    _, sinks = lines_by_label(ax)["sinks (4 + last 2,044)"].get_data()
    np.testing.assert_array_equal(window, sinks)
    assert not ax.patches  # 4,096 is Llama 2's own context
    # multi-head latent attention: one latent per token and layer
    ax = plot.plot_kv_budget("DeepSeek-V3", 1024, policies=("dense",)).axes[0]
    assert "61 layers x latent 576 per layer" in ax.get_title()
    _, y = lines_by_label(ax)["dense (every token)"].get_data()
    assert y[-1] * GIB == 1024 * 70_272


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(stacks=[None] * 32), TypeError, r"stacks must be a dict \{label: stack\}"),
        (dict(stacks={"x": [None] * 3}), ValueError, "a stack for Mistral-7B needs 32 layers, got 3"),
        (dict(bytes_per_element=0), ValueError, "bytes_per_element must be >= 1, got 0"),
        (dict(preset="GPT-9"), ValueError, r"preset must be one of \[.*\], got 'GPT-9'"),
        (dict(preset=7), TypeError, "preset must be a ModelPreset"),
        (dict(max_tokens=0), ValueError, "max_tokens must be >= 1"),
        (dict(policies=("dense", "lru")), ValueError, r"policies must be one of \[.*\], got 'lru'"),
        (dict(policies=()), ValueError, "policies must be a non-empty sequence"),
        (dict(batch=0), ValueError, "batch must be >= 1"),
        (dict(budget_bytes=-1.0), ValueError, "budget_bytes must be > 0"),
        (dict(window=0), ValueError, "window must be >= 1"),
    ],
)
def test_plot_kv_budget_rejects_bad_input(kwargs, error, words):
    args = dict(preset="Mistral-7B", max_tokens=1024) | kwargs
    with pytest.raises(error, match=words):
        plot.plot_kv_budget(**args)


# --------------------------------------------------------------------------- plot_scaling


ROWS = [
    {"n": 256, "method": "dense", "seconds": 0.001, "peak_bytes": 2**20},
    {"n": 512, "method": "dense", "seconds": 0.004, "peak_bytes": 2**22},
    {"n": 512, "method": "dense", "seconds": 0.006, "peak_bytes": 2**22},  # repeat: median
    {"n": 512, "method": "dense", "seconds": 0.005, "peak_bytes": 2**22},
    {"n": 256, "method": "local_global", "seconds": 0.002, "peak_bytes": None},
    {"n": 512, "method": "local_global", "seconds": 0.004, "note": "ignored"},
]


def test_plot_scaling_from_rows_and_columns_agree():
    fig = plot.plot_scaling(ROWS)
    ax_time, ax_mem = fig.axes
    dense, local = ax_time.get_lines()
    assert dense.get_label() == "dense" and local.get_label() == "local_global"
    np.testing.assert_allclose(dense.get_xydata(), [[256, 0.001], [512, 0.005]])
    np.testing.assert_allclose(ax_mem.get_lines()[0].get_xydata(), [[256, 1.0], [512, 4.0]])  # MiB
    assert len(ax_mem.get_lines()) == 1  # local_global measured no memory
    assert ax_time.get_xscale() == "log" and ax_time.get_yscale() == "log" and ax_mem.get_yscale() == "log"
    assert ax_time.get_ylabel() == "time per call (s)" and ax_mem.get_ylabel() == "peak memory (MiB)"
    assert "(2 methods)" in ax_time.get_title()
    columns = {key: [row.get(key) for row in ROWS] for key in ("n", "method", "seconds", "peak_bytes")}
    again = plot.plot_scaling(columns).axes[0].get_lines()[0]
    np.testing.assert_allclose(again.get_xydata(), dense.get_xydata())


def test_plot_scaling_without_memory_and_with_axes():
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert plot.plot_scaling({"n": [8], "method": ["x"], "seconds": [1e-3]}, ax=axes) is fig
    assert axes[1].texts[0].get_text() == "no peak memory measured"


@pytest.mark.parametrize(
    "table, error, words",
    [
        ([], ValueError, "table must have at least one row"),
        ({"n": [1], "method": ["a"]}, ValueError, r"table must have the columns .*; missing \['seconds'\]"),
        ({"n": [1, 2], "method": ["a"], "seconds": [1.0]}, ValueError, "table's columns must all have the same length"),
        ([{"n": 4, "method": "a", "seconds": 0.0}], ValueError, "table\\[0\\]\\['seconds'\\] must be > 0"),
        ([{"n": 4, "method": 3, "seconds": 1.0}], TypeError, "table\\[0\\]\\['method'\\] must be a string"),
        ([(4, "a", 1.0)], TypeError, "table\\[0\\] must be a dict"),
        ("table", TypeError, "table must be a list of dicts"),
    ],
)
def test_plot_scaling_rejects_bad_tables(table, error, words):
    with pytest.raises(error, match=words):
        plot.plot_scaling(table)


def test_figures_show_themselves_as_png_without_pyplot():
    fig = plot.plot_mask(QUIZ, 8, query=3)
    assert isinstance(fig, plot.CourseFigure)
    png = fig._repr_png_()  # what IPython shows when a cell ends with the figure
    assert png.startswith(b"\x89PNG") and png == plot.figure_png(fig)


# --------------------------------------------------------------------------- a trained model's weights


def band_global_weights(n=12, seed=0):
    """Row-softmax weights of random scores under band(2) | global_tokens(1): exactly 0 where masked."""
    mask = (P.band(2) | P.global_tokens(1)).mask(n)
    scores = np.random.default_rng(seed).normal(size=(n, n))
    w = np.where(mask, np.exp(scores), 0)
    return w / w.sum(1, keepdims=True), mask


def test_plot_model_attention_shades_masked_pairs_apart_from_small_weights():
    w, mask = band_global_weights()
    fig = plot.plot_model_attention(
        w, mask, query=11, n_global=1, numbers={"weight on key 0": "0.123"}, title="toy model"
    )
    heat = fig.axes[0]
    rgba = np.asarray(heat.images[0].get_array())
    viridis = colormaps["viridis"](PowerNorm(0.5, vmin=0, vmax=w.max())(w))
    np.testing.assert_allclose(rgba[mask], viridis[mask])
    assert (rgba[~mask] == to_rgba(plot.STYLE["missing"])).all()  # grey exactly on masked pairs
    assert not np.isclose(rgba[mask][:, :3], to_rgba(plot.STYLE["missing"])[:3]).all(axis=1).any()
    outlines = [p for p in heat.patches if p.get_edgecolor()[:3] == to_rgba(plot.HIGHLIGHT)[:3]]
    assert len(outlines) == 1 and outlines[0].get_y() == pytest.approx(10.5)  # the query row
    assert len(heat.patches) == 3  # + the global token's row and column
    assert heat.get_title().startswith(f"toy model\n12 positions (1 prepended), {int(mask.sum()):,} allowed pairs")
    assert len(fig.axes) == 2 and "weight on key 0: 0.123" in fig.texts[0].get_text()  # heatmap, colour bar


def test_plot_model_attention_into_given_axes_puts_numbers_in_the_title():
    w, mask = band_global_weights(8)
    fig = Figure()
    ax = fig.add_subplot()
    assert plot.plot_model_attention(w, mask, numbers={"entropy": "1.0 nats"}, ax=ax) is fig
    assert ax.get_title().endswith("entropy: 1.0 nats") and len(ax.patches) == 0


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)))


def test_model_attention_drawing_update_draws_what_a_fresh_figure_draws():
    w, mask = band_global_weights()
    drawing = plot.ModelAttentionDrawing(w, mask, query=11, n_global=1, numbers={"a": "1"}, title="layer 0")
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(drawing.figure)))
    w2, _ = band_global_weights(seed=1)
    w2 = w2 * 0.4 / w2.max()  # another top weight: other colour-bar ticks
    assert drawing.fits(w2, query=11, n_global=1, title="layer 1")
    assert drawing.update(w2, mask, query=11, n_global=1, numbers={"a": "2", "b": "3"}, title="layer 1") is drawing
    fresh = plot.plot_model_attention(w2, mask, query=11, n_global=1, numbers={"a": "2", "b": "3"}, title="layer 1")
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh)))
    assert drawing.figure.axes[0].get_title().startswith("layer 1\n") and "b: 3" in drawing.figure.texts[0].get_text()
    for change in [dict(query=10), dict(n_global=2), dict(title="two\nlines")]:
        kwargs = {**dict(query=11, n_global=1, title="layer 1"), **change}
        assert not drawing.fits(w2, **kwargs)
        with pytest.raises(ValueError, match="layout"):
            drawing.update(w2, mask, **kwargs)


def test_model_attention_drawing_can_leave_its_texts_to_a_caption():
    """titles_in_figure=False: the title and numbers are lines of .caption, not drawn; updates repaint
    what a fresh drawing of the same arguments draws, whatever the title's length."""
    w, mask = band_global_weights()
    drawing = plot.ModelAttentionDrawing(
        w, mask, query=11, n_global=1, numbers={"a": "1"}, title="layer 0", titles_in_figure=False
    )
    assert drawing.caption == [
        "layer 0",
        f"12 positions (1 prepended), {int(mask.sum()):,} allowed pairs; grey = masked",
        "a: 1",
    ]
    assert not drawing.figure.texts and not any(ax.get_title() for ax in drawing.figure.axes)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(drawing.figure)))
    w2, _ = band_global_weights(seed=1)
    assert drawing.fits(w2, query=11, n_global=1, title="two\nlines") and not drawing.fits(w2, query=10, n_global=1)
    drawing.update(w2, mask, query=11, n_global=1, numbers={"b": "2"}, title="two\nlines")
    fresh = plot.ModelAttentionDrawing(w2, mask, query=11, n_global=1, title="other", titles_in_figure=False)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh.figure)))
    assert drawing.caption[:2] == ["two", "lines"] and drawing.caption[-1] == "b: 2"


def test_captioned_png_draws_the_lines_above_the_unchanged_picture():
    w, mask = band_global_weights()
    png = plot.figure_png(plot.plot_model_attention(w, mask))
    lines = ["first line", "a long line " * 20]  # wrapped to the picture's width
    out = plot.captioned_png(png, lines)
    picture, captioned = pixels(png), pixels(out)
    assert captioned.shape[1] == picture.shape[1] and captioned.shape[0] > picture.shape[0]
    np.testing.assert_array_equal(captioned[-picture.shape[0] :], picture)
    caption = captioned[: -picture.shape[0]]
    assert (caption[..., :3] < 128).any(axis=-1).any(axis=-1).sum() > 3 * plot.STYLE["label_size"]  # 3+ lines of ink
    assert Image.open(io.BytesIO(out)).info["dpi"] == pytest.approx((plot.STYLE["dpi"],) * 2, abs=0.01)
    one = pixels(plot.captioned_png(png, (line for line in ["first line"])))  # any iterable of lines
    assert one.shape[0] < captioned.shape[0]
    # wrapped as measured: wide glyphs (capitals, digits) never run past the right margin
    wide = pixels(plot.captioned_png(png, ["WWW MMM 0000 " * 12, "$x$ " * 40]))
    margin = round(0.1 * plot.STYLE["dpi"]) - 2
    assert (wide[: -picture.shape[0], -margin:, :3] == 255).all()
    assert plot.captioned_png(png, []) == png
    with pytest.raises(TypeError, match="lines must be a list of strings, got a single string"):
        plot.captioned_png(png, "first line")
    with pytest.raises(TypeError, match="lines must be a list of strings"):
        plot.captioned_png(png, [1])


@pytest.mark.parametrize(
    "change, error, words",
    [
        (lambda w, m: (w, m[:-1, :-1]), ValueError, "weights and mask must both be square and of one shape"),
        (lambda w, m: (w + (~m) * 0.1, m), ValueError, "weights must be 0 on every pair the mask forbids"),
        (lambda w, m: (-w, m), ValueError, "weights must be non-negative, got a minimum of"),
        (lambda w, m: (w, m.astype(int)), TypeError, r"mask must be a boolean array .* or a Pattern, got dtype int64"),
    ],
)
def test_plot_model_attention_rejects_bad_input(change, error, words):
    w, mask = band_global_weights(8)
    with pytest.raises(error, match=words):
        plot.plot_model_attention(*change(w, mask))
    with pytest.raises(ValueError, match="query must be <= 7, got 8"):
        plot.plot_model_attention(w, mask, query=8)


# --------------------------------------------------------------------------- one KV-cache step


def cache_step_args(C=8, steps=20):
    tokens = [str(i) for i in range(C)]
    tokens[-1] = ""
    positions = np.r_[np.arange(C - 1), -1]
    weights = np.r_[np.linspace(0.3, 0.05, C - 1), np.nan]
    first = np.linspace(0.5, 0.1, steps)
    return tokens, positions, weights, 5, first, np.linspace(4, 3, steps), np.linspace(3.9, 3, steps)


def test_plot_cache_step_slots_and_curves():
    tokens, positions, weights, step, first, ppl, ref = cache_step_args()
    fig = plot.plot_cache_step(
        tokens,
        positions,
        weights,
        step,
        first,
        ppl,
        ref,
        sinks=1,
        current_slot=6,
        evicted_at=7,
        policy="window",
        reference="recompute",
        title="step 5",
    )
    slots, _, ax_w, ax_p = fig.axes
    grid = np.asarray(slots.images[0].get_array())
    assert grid.shape == (1, 16)
    np.testing.assert_allclose(grid[0, :7], weights[:7])
    assert np.ma.getmaskarray(grid)[0, 7:].all() or np.isnan(grid[0, 7:]).all()  # empty and padding: grey
    assert [t.get_text() for t in slots.texts if t.get_visible()] == [f"{i}\np{i}" for i in range(7)]
    edge = {tuple(p.get_edgecolor()[:3]) for p in slots.patches if p.get_visible()}
    assert edge == {to_rgba(plot.OKABE_ITO[0])[:3], to_rgba(plot.HIGHLIGHT)[:3]}  # sink, newest
    np.testing.assert_allclose(ax_p.lines[0].get_ydata(), ppl)
    np.testing.assert_allclose(ax_p.lines[1].get_ydata(), ref)
    assert f"window (solid) {ppl[5]:.3f}, recompute (dashed) {ref[5]:.3f}" in ax_p.get_title()
    assert "first eviction (step 7)" in ax_p.get_title() and not ax_p.get_legend()
    assert f"(now {first[5]:.3f})" in ax_w.get_title()
    assert [x for line in ax_w.lines[2:] for x in line.get_xdata()] == [5, 5, 7, 7]  # step and eviction lines


def test_cache_step_drawing_update_draws_what_a_fresh_figure_draws():
    tokens, positions, weights, step, first, ppl, ref = cache_step_args()
    fixed = dict(sinks=1, evicted_at=7, trained_at=3, policy="window", reference="recompute")
    drawing = plot.CacheStepDrawing(
        tokens, positions, weights, step, first, ppl, ref, current_slot=6, title="step 5", **fixed
    )
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(drawing.figure)))
    tokens = [str(10 + i) for i in range(8)]  # every slot filled, another newest slot, weights and curve
    positions, weights, first = np.arange(8), np.linspace(0.02, 0.4, 8), np.linspace(0.9, 0.2, 20)
    for step in (12, 7, 19):  # the last two on the eviction mark and the last step
        drawing.update(tokens, positions, weights, step, first, current_slot=2, title=f"step {step}")
        fresh = plot.plot_cache_step(
            tokens, positions, weights, step, first, ppl, ref, current_slot=2, title=f"step {step}", **fixed
        )
        np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh)))
    assert drawing.figure.axes[0].get_title() == "step 19" and len(drawing.figure.axes[0].texts) == 8
    # the labels and outlines are restyled in place: a newest slot among the sinks, then none, then slots
    # emptied again (their labels hidden) must still draw what a fresh figure draws
    two_sinks = dict(fixed, sinks=2)
    drawing = plot.CacheStepDrawing(tokens, positions, weights, 3, first, ppl, ref, current_slot=5, **two_sinks)
    empty = np.r_[np.arange(3), -1, -1, -1, -1, -1]
    few = (tokens[:3] + [""] * 5, empty, np.r_[weights[:3], [np.nan] * 5])
    for args, current in [((tokens, positions, weights), 1), ((tokens, positions, weights), None), (few, 2)]:
        drawing.update(*args, 3, first, current_slot=current)
        fresh = plot.plot_cache_step(*args, 3, first, ppl, ref, current_slot=current, **two_sinks)
        np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh)))
    assert [t.get_text() for t in drawing.figure.axes[0].texts if t.get_visible()] == ["10\np0", "11\np1", "12\np2"]
    with pytest.raises(ValueError, match="layout"):
        drawing.update(tokens, positions, weights, 3, first, title="two\nlines")
    with pytest.raises(ValueError, match="layout"):
        drawing.update(tokens, positions, weights, 3, first[:-1], title="step 3")
    with pytest.raises(ValueError, match="step"):
        drawing.update(tokens, positions, weights, 20, first, title="step 20")


def test_cache_step_drawing_can_leave_its_titles_to_a_caption():
    tokens, positions, weights, step, first, ppl, ref = cache_step_args()
    fixed = dict(sinks=1, evicted_at=7, policy="window", reference="recompute", titles_in_figure=False)
    drawing = plot.CacheStepDrawing(
        tokens, positions, weights, step, first, ppl, ref, current_slot=6, title="step 5", **fixed
    )
    assert not any(ax.get_title() for ax in drawing.figure.axes)
    assert drawing.caption == [
        "step 5",
        f"middle: weight of each step's query on the entry at position 0 (now {first[5]:.3f})",
        f"bottom: running perplexity after step 5: window (solid) {ppl[5]:.3f}, recompute (dashed) {ref[5]:.3f}",
        "grey line: this step; dotted vermillion: first eviction (step 7)",
    ]
    titled = plot.plot_cache_step(
        tokens,
        positions,
        weights,
        step,
        first,
        ppl,
        ref,
        current_slot=6,
        title="step 5",
        **{k: v for k, v in fixed.items() if k != "titles_in_figure"},
    )
    assert drawing.figure.get_size_inches()[1] < titled.get_size_inches()[1]  # no room kept for titles
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(drawing.figure)))
    drawing.update(tokens, positions, weights, 12, first, current_slot=2, title="step 12\nof 20")  # any title length
    fresh = plot.CacheStepDrawing(tokens, positions, weights, 12, first, ppl, ref, current_slot=2, **fixed)
    np.testing.assert_array_equal(pixels(drawing.png()), pixels(plot.figure_png(fresh.figure)))
    assert drawing.caption[:2] == ["step 12", "of 20"] and "after step 12:" in drawing.caption[3]
    with pytest.raises(ValueError, match=r"update needs 8 slots, 20 steps \(the figure's layout\), got 8, 19;"):
        drawing.update(tokens, positions, weights, 3, first[:-1])


def test_plot_cache_step_many_slots_drop_the_labels():
    C = 100
    fig = plot.plot_cache_step(["1"] * C, np.arange(C), np.full(C, 0.01), 0, [0.5], [3.0], [3.0], trained_at=0)
    assert np.asarray(fig.axes[0].images[0].get_array()).shape == (4, 32) and not fig.axes[0].texts
    assert "past the training length (step 0)" in fig.axes[3].get_title()


@pytest.mark.parametrize(
    "change, error, words",
    [
        (
            lambda a: (a[0][:-1],) + a[1:],
            ValueError,
            "slot_tokens, slot_positions and slot_weights must be 1-D, non-empty and of one length, got 7, 8, 8",
        ),
        (lambda a: a[:3] + (99,) + a[4:], ValueError, "step must be <= 19, got 99"),
        (
            lambda a: a[:4] + (a[4][:-1],) + a[5:],
            ValueError,
            r"first_weight, policy_ppl and reference_ppl must have one value per step, got lengths \[19, 20, 20\]",
        ),
        (lambda a: a[:5] + (np.r_[a[5][:-1], np.nan],) + a[6:], ValueError, "policy_ppl must be finite"),
    ],
)
def test_plot_cache_step_rejects_bad_input(change, error, words):
    with pytest.raises(error, match=words):
        plot.plot_cache_step(*change(cache_step_args()))
