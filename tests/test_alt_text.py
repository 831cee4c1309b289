"""Every course figure describes itself: the alt text in its notebook output is made from what
it draws (the chart kind, the title with its numbers, the axis labels), so the website and
screen readers say what the picture shows."""

from __future__ import annotations

import base64

import numpy as np
from IPython.core.formatters import DisplayFormatter

from globattn_lite import costs, plot
from globattn_lite import patterns as P


def shown(fig):
    """(data, metadata) as IPython puts them in a notebook output when a cell ends with fig."""
    return DisplayFormatter().format(fig)


def test_mask_figure_output_carries_its_counts_as_alt_text():
    pattern = P.causal() & (P.sliding_window(3) | P.sinks(1))
    fig = plot.plot_mask(pattern, 64)
    data, metadata = shown(fig)
    alt = metadata["image/png"]["alt"]
    assert alt == plot.alt_text(fig)
    assert alt.startswith("heatmap: ") and "n=64" in alt and "query position q" in alt
    assert f"{pattern.num_pairs(64):,} pairs" in alt
    assert base64.b64decode(data["image/png"]) == plot.figure_png(fig)
    assert data["text/plain"] == repr(fig)  # the committed text output stays what it was


def test_alt_text_names_each_chart_and_skips_colour_bars():
    softmax = plot.plot_softmax(np.array([1.0, 2.0, 3.0]), sink_logit=0.5)
    assert plot.alt_text(softmax).startswith("bar chart: softmax over 3 keys")
    big = plot.plot_mask(P.causal() & P.sliding_window(8), 1024)  # aggregated: has a colour bar
    assert len(big.axes) == 2 and plot.alt_text(big).count("heatmap: ") == 1
    budget = plot.plot_kv_budget(sorted(costs.PRESETS)[0], 4096)
    assert plot.alt_text(budget).startswith("line chart: ")


def test_alt_text_of_an_empty_figure():
    assert plot.alt_text(plot.CourseFigure()) == "empty figure"
