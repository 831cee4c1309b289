"""Headless tests of the explorers: move each control, the PNG changes and the figure says so.

No kernel and no browser: setting ``control.value`` runs the same callback a slider would,
synchronously, and the test reads what the Image widget now holds (decoded PNG) and what the
current figure shows (titles, data), checked against numbers computed here independently.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from globattn_lite import costs, patterns as P, widgets as W
from globattn_lite.attention import local_global_pattern

GIB = 2**30


def decoded(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(png)))


def title(explorer) -> str:
    return explorer.figure.axes[0].get_title()


def move(explorer, name, value):
    """Set a control and check a new, valid picture arrived."""
    before = explorer.image.value
    explorer.controls[name].value = value
    assert explorer.error is None, explorer.error
    assert explorer.controls[name].value == value
    assert explorer.image.value == explorer.png and explorer.png != before
    assert decoded(explorer.png).shape[:2] == (480, 640)
    return title(explorer)


def pairs_and_keys(text):
    m = re.search(r"n=(\d+): ([\d,]+) pairs", text)
    q = re.search(r"query (\d+): (\d+) keys", text)
    return int(m.group(1)), int(m.group(2).replace(",", "")), int(q.group(1)), int(q.group(2))


def check_mask_title(explorer, pattern):
    n, pairs, q, keys = pairs_and_keys(title(explorer))
    assert n == explorer.controls["n"].value and q == explorer.controls["query"].value
    assert str(pattern) in title(explorer).replace("\n", "")
    assert pairs == pattern.num_pairs(n)
    assert keys == len(pattern.attended(q, n))
    assert f"{pairs:,} pairs" in explorer.status.value  # live counts next to the figure


def test_widgets_module_never_imports_pyplot():
    code = "import sys, globattn_lite.widgets; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("factory", [W.mask_explorer, W.softmax_explorer, W.receptive_field_explorer,
                                     W.kv_budget_explorer])
def test_explorer_builds_and_has_a_static_fallback(factory):
    ex = factory()
    assert isinstance(ex, W.Explorer) and ex.error is None and ex.errors == []
    assert isinstance(ex.figure, Figure)
    assert ex.image.value == ex.png and decoded(ex.png).ndim == 3
    assert all(c in ex.children[1].children for c in ex.controls.values())  # the two-column grid
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live widget ...
    assert base64.b64decode(bundle["image/png"]) == ex.png  # ... and a picture for GitHub / nbconvert
    assert bundle["text/plain"].startswith(ex.title)
    for control in ex.controls.values():  # expensive sliders redraw on release only
        if isinstance(control, W.widgets.IntSlider) and control.description.startswith(("n", "window", "layers")):
            assert control.continuous_update is False


# --------------------------------------------------------------------------- mask explorer


def test_mask_explorer_each_control():
    ex = W.mask_explorer(n=32, family="window + sinks", window=4, global_tokens=1, query=16)
    check_mask_title(ex, P.causal() & (P.sliding_window(4) | P.sinks(1)))
    move(ex, "window", 6)
    check_mask_title(ex, P.causal() & (P.sliding_window(6) | P.sinks(1)))
    move(ex, "globals", 3)
    check_mask_title(ex, P.causal() & (P.sliding_window(6) | P.sinks(3)))
    move(ex, "query", 31)
    assert pairs_and_keys(title(ex))[3] == 6 + 3
    move(ex, "n", 64)
    assert ex.controls["query"].max == 63 and ex.controls["window"].max == 64
    check_mask_title(ex, P.causal() & (P.sliding_window(6) | P.sinks(3)))
    move(ex, "family", "dilated")
    assert ex.controls["window"].description == "radius r" and not ex.controls["dilation"].disabled
    check_mask_title(ex, P.dilated(6, 2) | P.global_tokens(3))
    move(ex, "dilation", 3)
    check_mask_title(ex, P.dilated(6, 3) | P.global_tokens(3))
    move(ex, "family", "BigBird")
    assert ex.controls["window"].disabled and not ex.controls["block"].disabled
    check_mask_title(ex, P.bigbird(8))
    move(ex, "block", 16)
    check_mask_title(ex, P.bigbird(16))


@pytest.mark.parametrize(
    "family, expected",
    [
        ("dense", P.full()),
        ("causal", P.causal()),
        ("sliding window", P.sliding_window(5)),
        ("band + global", P.band(5) | P.global_tokens(2)),
    ],
)
def test_mask_explorer_families(family, expected):
    ex = W.mask_explorer(n=24, family="dilated", window=5, global_tokens=2, query=3)
    move(ex, "family", family)
    check_mask_title(ex, expected)
    np.testing.assert_array_equal(ex.figure.axes[0].images[0].get_array(), expected.mask(24))


def test_mask_explorer_sliders_follow_n():
    ex = W.mask_explorer(n=64, window=40, global_tokens=30, query=60)
    ex.controls["n"].value = 10
    assert ex.error is None
    c = ex.controls
    assert (c["query"].max, c["window"].max, c["globals"].max, c["block"].max) == (9, 10, 10, 10)
    assert (c["query"].value, c["window"].value, c["globals"].value) == (9, 10, 10)
    check_mask_title(ex, P.causal() & (P.sliding_window(10) | P.sinks(10)))
    ex.controls["n"].value = 1
    assert ex.error is None and c["query"].value == 0
    assert pairs_and_keys(title(ex)) == (1, 1, 0, 1)


def test_mask_explorer_large_n_is_aggregated():
    ex = W.mask_explorer(n=64)
    move(ex, "n", 4096)
    assert np.asarray(ex.figure.axes[0].images[0].get_array()).shape == (256, 256)
    check_mask_title(ex, P.causal() & (P.sliding_window(4) | P.sinks(1)))


def test_mask_explorer_bad_combination_shows_an_error(caplog):
    ex = W.mask_explorer(n=32, family="BigBird", block=8)
    good_png, good_figure = ex.png, ex.figure
    with caplog.at_level(logging.WARNING, logger="globattn_lite.widgets"):
        ex.controls["block"].value = 32  # a single block cannot hold BigBird's two global blocks
    assert isinstance(ex.error, ValueError) and ex.errors == [ex.error]
    assert "Cannot draw this combination" in ex.status.value and "needs n &gt;= 33" in ex.status.value
    assert ex.png == good_png and ex.image.value == good_png and ex.figure is good_figure  # last good picture stays
    assert any("redraw failed" in r.getMessage() for r in caplog.records)  # logged, not swallowed
    move(ex, "n", 64)  # now two blocks fit: the error clears
    assert "Cannot draw" not in ex.status.value
    check_mask_title(ex, P.bigbird(32))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_default_arguments_fit_a_small_n(n):
    ex = W.mask_explorer(n=n, family="sliding window")  # the default window 4 and block 8 exceed n
    assert ex.error is None and ex.controls["window"].value == n
    if n >= 2:
        assert W.receptive_field_explorer(n=n).error is None


def test_mask_explorer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="family"):
        W.mask_explorer(family="star")
    with pytest.raises(ValueError, match="query"):
        W.mask_explorer(n=8, query=8)
    with pytest.raises(ValueError, match="n"):
        W.mask_explorer(n=0)


@pytest.mark.parametrize(
    "call, error, words",
    [  # a float slider would silently clamp these, and the figure would not show what was asked
        (lambda: W.softmax_explorer(temperature=10.0), ValueError, "temperature must be between 0.1 and 5"),
        (lambda: W.softmax_explorer(sink_logit=-20), ValueError, "sink_logit must be between -5 and 10"),
        (lambda: W.softmax_explorer(boost=9.0), ValueError, "boost must be between 0 and 8"),
        (lambda: W.kv_budget_explorer(budget_gib=500), ValueError, "budget_gib must be between 1 and 160"),
        (lambda: W.kv_budget_explorer(bytes_per_element=True), TypeError, "bytes_per_element"),
        (lambda: W.explorer_scores(4, seed="a"), TypeError, "seed"),
        (lambda: W.explorer_scores(4, seed=-1), ValueError, "seed"),
    ],
)
def test_explorers_reject_values_their_controls_cannot_show(call, error, words):
    with pytest.raises(error, match=words):
        call()


# --------------------------------------------------------------------------- softmax explorer


def heights(ex):
    return [np.array([p.get_height() for p in c.patches]) for c in ex.figure.axes[0].containers]


def expected_scores(keys, temperature, boost):
    z = np.random.default_rng(0).normal(size=64)[:keys].copy()
    z[0] += boost
    return z / temperature


def test_softmax_explorer_each_control():
    ex = W.softmax_explorer(keys=8, temperature=1.0, sink_logit=0.0, use_sink=True, evict=0, boost=3.0)
    s = expected_scores(8, 1.0, 3.0)
    plain, sink = heights(ex)
    np.testing.assert_allclose(plain, np.exp(s) / np.exp(s).sum())
    np.testing.assert_allclose(sink, np.exp(s) / (1 + np.exp(s).sum()))

    move(ex, "temperature", 2.0)
    s = expected_scores(8, 2.0, 3.0)
    np.testing.assert_allclose(heights(ex)[0], np.exp(s) / np.exp(s).sum())

    move(ex, "sink_logit", 2.5)
    share = np.exp(2.5) / (np.exp(2.5) + np.exp(s).sum())
    assert f"sink takes {share:.3f} of the mass" in title(ex)
    legend = [t.get_text() for t in ex.figure.axes[0].get_legend().get_texts()]
    assert any(t.startswith("with sink (logit 2.5)") and "H incl. sink" in t and f"1 - s = {1 - share:.3f}" in t
               for t in legend)

    move(ex, "keys", 20)
    assert len(heights(ex)[0]) == 20 and ex.controls["evict"].max == 20
    s = expected_scores(20, 2.0, 3.0)

    move(ex, "evict", 2)
    plain, sink, after = heights(ex)
    assert (after[:2] == 0).all() and after.sum() == pytest.approx(1.0)
    assert f"kept weights grow x{np.exp(s).sum() / np.exp(s[2:]).sum():.3f}" in title(ex)

    move(ex, "use_sink", False)
    assert ex.controls["sink_logit"].disabled and len(heights(ex)) == 2

    move(ex, "boost", 6.0)
    s = expected_scores(20, 2.0, 6.0)
    np.testing.assert_allclose(heights(ex)[0], np.exp(s) / np.exp(s).sum())


def test_softmax_explorer_evicting_every_key_is_an_error_not_a_crash():
    ex = W.softmax_explorer(keys=4)
    ex.controls["evict"].value = 4
    assert isinstance(ex.error, ValueError) and "at least one key" in ex.status.value
    move(ex, "evict", 3)
    assert ex.error is None


# --------------------------------------------------------------------------- receptive-field explorer


def reach_title(ex):
    m = re.search(r"query (\d+) reaches (\d+) of (\d+) keys; key 0 -> query \d+: (\w+)", title(ex))
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)


def test_receptive_field_explorer_each_control():
    ex = W.receptive_field_explorer(n=64, window=4, layers=3, global_tokens=0, causal=True)
    assert reach_title(ex) == (63, 1 + 3 * 3, 64, "21")  # 3 new positions per layer; 63 / 3 hops
    move(ex, "window", 8)
    assert reach_title(ex) == (63, 1 + 3 * 7, 64, "9")
    move(ex, "layers", 5)
    assert reach_title(ex) == (63, 1 + 5 * 7, 64, "9")
    move(ex, "globals", 2)  # causal sinks: key 0 reaches everyone in one hop
    pattern = local_global_pattern(8, sinks=2)
    reach = int(costs.receptive_field(pattern, 64, 5)[63].sum())
    assert reach_title(ex) == (63, reach, 64, "1")
    move(ex, "causal", False)  # bidirectional band + global tokens: any pair within two hops
    assert ex.controls["window"].description == "radius r"
    assert reach_title(ex) == (63, 64, 64, "1") and "(100.0%)" in title(ex)
    move(ex, "query", 10)
    assert reach_title(ex)[0] == 10
    move(ex, "n", 128)
    assert ex.controls["query"].max == 127
    assert re.search(r"n=128, 5 layers", title(ex))


# --------------------------------------------------------------------------- KV-budget explorer


def dense_gib(preset, tokens, batch=1, bpe=2):
    return 2 * preset.layers * preset.kv_heads * preset.head_dim * tokens * batch * bpe / GIB


def test_kv_budget_explorer_each_control():
    ex = W.kv_budget_explorer(preset="Mistral-7B", tokens=32768, budget_gib=24.0)
    mistral, llama = costs.PRESETS["Mistral-7B"], costs.PRESETS["Llama-2-7B"]
    assert f"dense: {dense_gib(mistral, 32768):.2f} GiB (6 sequences fit)" in title(ex)
    move(ex, "tokens", 8192)
    assert f"at 8,192 tokens" in title(ex)
    move(ex, "batch", 4)
    assert f"dense: {dense_gib(mistral, 8192, 4):.2f} GiB" in title(ex)
    move(ex, "dtype", 4)
    assert "4 B/element" in title(ex) and f"dense: {dense_gib(mistral, 8192, 4, 4):.2f} GiB" in title(ex)
    move(ex, "budget", 40.0)
    fits = int(40 * GIB // (dense_gib(mistral, 8192, 1, 4) * GIB))
    assert f"({fits} sequences fit)" in title(ex)
    move(ex, "policy", "sinks")
    assert not ex.controls["sinks"].disabled
    move(ex, "sinks", 16)
    assert "sinks (16 + last 4,096)" in [line.get_label() for line in ex.figure.axes[0].get_lines()]
    move(ex, "policy", "window")
    assert ex.controls["sinks"].disabled and not ex.controls["window"].disabled
    move(ex, "window", 2048)
    assert "window (last 2,048)" in [line.get_label() for line in ex.figure.axes[0].get_lines()]
    move(ex, "preset", "Llama-2-7B")  # the window resets to the model's own (none: 4096)
    assert ex.controls["window"].value == 4096
    move(ex, "policy", "dense")
    assert ex.controls["window"].disabled
    assert f"dense: {dense_gib(llama, 8192, 4, 4):.2f} GiB" in title(ex)


# --------------------------------------------------------------------------- threads


def test_concurrent_changes_from_two_threads_leave_a_consistent_figure():
    """Callbacks may arrive on a subshell thread while the main thread also changes controls."""
    ex = W.mask_explorer(n=32)

    def change(name, values):
        for value in values:
            ex.controls[name].value = value

    threads = [threading.Thread(target=change, args=("n", [40, 48, 56, 64])),
               threading.Thread(target=change, args=("window", [2, 3, 5, 7]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ex.errors == []
    check_mask_title(ex, P.causal() & (P.sliding_window(7) | P.sinks(1)))
    assert ex.image.value == ex.png
