"""Interactive explorers: sliders and menus around the figures of :mod:`globattn_lite.plot`.

Show one with a bare expression in a notebook cell::

    from globattn_lite.widgets import mask_explorer
    mask_explorer()

Each function returns an :class:`Explorer` (an ``ipywidgets.VBox``) with
``.controls`` (dict name -> widget), ``.figure`` (the current matplotlib Figure),
``.image`` (the ``ipywidgets.Image`` holding its PNG), ``.status`` (an HTML line with the
live counts, or the error), ``.error`` / ``.errors`` (the last / every exception a redraw
raised) and ``.refresh()``. Set a control (``ex.controls["n"].value = 128``) and the figure
is redrawn at once, also headless, so tests can check what it shows.

How drawing works, and why (see the course's widgets notes): JupyterLab 4.6 with ipykernel 7
may run widget callbacks on a kernel *subshell thread*, concurrently with the main thread;
callbacks drawing with ``pyplot`` then intermittently produce broken figures. So every
redraw builds a standalone ``matplotlib.figure.Figure`` (never pyplot), renders it to PNG
bytes with the Agg canvas, and *assigns* the bytes to the Image widget, all under a lock;
no ``with out:`` and no ``plt.show()``. The course also installs a JupyterLab settings override
(``commsOverSubshells: "disabled"``) so callbacks run on the main thread.

A redraw that fails (a combination the pattern rejects, say BigBird with a single block)
does not crash and is not swallowed: the message shows in red above the last good figure,
the exception is kept in ``.error`` and ``.errors`` and logged to the ``globattn_lite.widgets``
logger. Without a widget front end (nbconvert, GitHub, nbviewer) an explorer still shows
as the PNG of its current figure: ``_repr_mimebundle_`` adds ``image/png`` next to the widget view.
"""

from __future__ import annotations

import base64
import html
import logging
import threading

import ipywidgets as widgets
import numpy as np

from globattn_lite import costs, patterns, plot
from globattn_lite._validate import choice_arg, float_arg, int_arg
from globattn_lite.attention import local_global_pattern

__all__ = [
    "Explorer",
    "mask_explorer",
    "softmax_explorer",
    "receptive_field_explorer",
    "kv_budget_explorer",
]

log = logging.getLogger(__name__)

_DESCRIPTION = {"description_width": "120px"}
_WIDE = widgets.Layout(width="98%")


class Explorer(widgets.VBox):
    """A figure that redraws when one of its controls changes.

    ``controls``: dict name -> value widget, laid out in two columns (fits a 1024 px screen).
    ``draw(values) -> Figure``: values is ``{name: widget.value}``; the figure's title doubles
    as the live-counts line. ``sync(controls, change)``: optional, run before each draw to
    keep controls consistent (a query slider's max follows n, unused controls are disabled);
    ``change`` is the traitlets change that triggered the redraw, or None.
    """

    def __init__(self, title, controls, draw, sync=None):
        image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        status = widgets.HTML()
        grid = widgets.GridBox(
            list(controls.values()),
            layout=widgets.Layout(grid_template_columns="repeat(2, minmax(0, 1fr))",
                                  grid_gap="2px 16px", width="min(100%, 960px)"),
        )
        super().__init__([widgets.HTML(f"<b>{html.escape(title)}</b>"), grid, status, image])
        self.title = title
        self.controls = dict(controls)
        self.image = image
        self.status = status
        self.figure = None
        self.png = b""
        self.error = None
        self.errors = []
        self._draw = draw
        self._sync = sync
        self._lock = threading.RLock()
        self._busy = False
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.refresh()

    @property
    def values(self) -> dict:
        """The controls' current values, ``{name: value}``, floats rounded to 9 decimals: a
        browser's FloatSlider sends its value back with float noise when first shown
        (1.0 -> 1.0000000000000002, 0.0 -> 8.9e-16), which must not change the figure."""
        return {name: round(c.value, 9) if isinstance(c.value, float) else c.value
                for name, c in self.controls.items()}

    def _on_change(self, change):
        self.refresh(change)

    def refresh(self, change=None):
        """Redraw from the controls' values and assign the new PNG to ``.image``."""
        with self._lock:
            if self._busy:  # a control adjusted by sync during this redraw: the redraw sees it
                return
            self._busy = True
            try:
                if self._sync is not None:
                    self._sync(self.controls, change)
                fig = self._draw(self.values)
                png = plot.figure_png(fig)
            except Exception as exc:  # shown and recorded, never silent
                self.error = exc
                self.errors.append(exc)
                self.status.value = (
                    '<span style="color:#b00020"><b>Cannot draw this combination:</b> '
                    f"{html.escape(f'{type(exc).__name__}: {exc}')}</span>"
                )
                log.warning("%s: redraw failed for %s", self.title, self.values, exc_info=True)
                return
            finally:
                self._busy = False
            self.figure, self.png, self.error = fig, png, None
            self.image.value = png
            self.status.value = html.escape(self.summary)

    @property
    def summary(self) -> str:
        """The live counts: the current figure's title(s) on one line."""
        if self.figure is None:
            return ""
        titles = [ax.get_title() for ax in self.figure.axes if ax.get_title()]
        return " | ".join(t.replace("\n", " | ") for t in titles)

    def _repr_mimebundle_(self, **kwargs):
        """The widget view plus a static PNG of the current figure for renderers without widgets."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if self.png:
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        bundle["text/plain"] = f"{self.title}: {self.summary}" if self.figure is not None else self.title
        return bundle


def _slider(description, value, minimum, maximum, step=1, continuous=False):
    return widgets.IntSlider(value=value, min=minimum, max=maximum, step=step, description=description,
                             continuous_update=continuous, style=_DESCRIPTION, layout=_WIDE)


def _float_slider(description, name, value, minimum, maximum, step, strictly_positive=False):
    """A FloatSlider for argument ``name``; a start value outside [minimum, maximum] raises
    (the slider would silently clamp it, and the figure would not show what was asked)."""
    value = float_arg(name, value, strictly_positive=strictly_positive)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum:g} and {maximum:g} (the slider's range), got {value:g}")
    return widgets.FloatSlider(value=value, min=minimum, max=maximum, step=step, description=description,
                               continuous_update=True, style=_DESCRIPTION, layout=_WIDE)


def _dropdown(description, options, value):
    return widgets.Dropdown(options=options, value=value, description=description, style=_DESCRIPTION,
                            layout=_WIDE)


def _set_max(slider, maximum):
    """Move a slider's upper bound; ipywidgets clamps the value into the new range."""
    slider.max = max(slider.min, maximum)


# --------------------------------------------------------------------------- masks

FAMILIES = ("dense", "causal", "sliding window", "window + sinks", "band + global", "dilated", "BigBird")
_FAMILY_USES = {
    "dense": (),
    "causal": (),
    "sliding window": ("window",),
    "window + sinks": ("window", "globals"),
    "band + global": ("window", "globals"),
    "dilated": ("window", "dilation", "globals"),
    "BigBird": ("block",),
}
MAX_N = 4096


def family_pattern(family, window=4, global_tokens=1, dilation=2, block=8):
    """The Pattern the mask explorer draws for a family name and its settings.

    ``window`` is W keys (causal, the query included) for "sliding window" and
    "window + sinks", the one-sided radius r for "band + global" and "dilated";
    ``global_tokens`` is the number of sinks (causal) or symmetric global tokens.
    """
    family = choice_arg("family", family, FAMILIES)
    if family == "dense":
        return patterns.full()
    if family == "causal":
        return patterns.causal()
    if family == "sliding window":
        return patterns.sliding_window(window)
    if family == "window + sinks":
        return local_global_pattern(window, sinks=global_tokens, causal=True)
    if family == "band + global":
        return local_global_pattern(window, global_tokens=global_tokens, causal=False)
    if family == "dilated":
        pattern = patterns.dilated(window, dilation)
        return pattern | patterns.global_tokens(global_tokens) if global_tokens else pattern
    return patterns.bigbird(block)


def mask_explorer(n=32, family="window + sinks", window=None, global_tokens=1, dilation=2, block=None,
                  query=None):
    """Explore attention masks: n, pattern family, window, global tokens / sinks, dilation,
    BigBird block size, and a query whose index set G is highlighted; counts in the title.

    Defaults: window min(4, n), block min(8, n), query n // 2. Sliders follow n (query <= n - 1;
    window, globals and block <= n); controls a family does not use are disabled. Returns an
    :class:`Explorer`.
    """
    n = int_arg("n", n, minimum=1, maximum=MAX_N)
    family = choice_arg("family", family, FAMILIES)
    window = min(4, n) if window is None else window  # a default must fit a small n
    block = min(8, n) if block is None else block
    query = n // 2 if query is None else int_arg("query", query, minimum=0, maximum=n - 1)
    controls = {
        "n": _slider("n (tokens)", n, 1, MAX_N),
        "family": _dropdown("pattern", FAMILIES, family),
        "window": _slider("window W", int_arg("window", window, minimum=1, maximum=n), 1, n),
        "globals": _slider("sinks / global", int_arg("global_tokens", global_tokens, minimum=0, maximum=n), 0, n),
        "dilation": _slider("dilation", int_arg("dilation", dilation, minimum=1, maximum=16), 1, 16),
        "block": _slider("BigBird block", int_arg("block", block, minimum=1, maximum=n), 1, n),
        "query": _slider("query q", query, 0, n - 1),
    }

    def sync(c, change):
        n = c["n"].value
        _set_max(c["query"], n - 1)
        for name in ("window", "globals", "block"):
            _set_max(c[name], n)
        family = c["family"].value
        for name in ("window", "globals", "dilation", "block"):
            c[name].disabled = name not in _FAMILY_USES[family]
        c["window"].description = "radius r" if family in ("band + global", "dilated") else "window W"
        c["globals"].description = "sinks S" if family == "window + sinks" else "global tokens g"

    def draw(v):
        pattern = family_pattern(v["family"], v["window"], v["globals"], v["dilation"], v["block"])
        return plot.plot_mask(pattern, v["n"], query=v["query"])

    return Explorer("Mask explorer", controls, draw, sync)


# --------------------------------------------------------------------------- softmax

MAX_KEYS = 64


def explorer_scores(keys, temperature=1.0, boost=3.0, seed=0):
    """The softmax explorer's scores: fixed normal draws (``default_rng(seed)``), key 0 raised
    by ``boost`` (a sink-like first token, as trained models show), all divided by the temperature.
    """
    keys = int_arg("keys", keys, minimum=1, maximum=MAX_KEYS)
    temperature = float_arg("temperature", temperature, strictly_positive=True)
    z = np.random.default_rng(int_arg("seed", seed, minimum=0)).normal(size=MAX_KEYS)[:keys]
    z[0] += float_arg("boost", boost)
    return z / temperature


def softmax_explorer(keys=12, temperature=1.0, sink_logit=0.0, use_sink=True, evict=0, boost=3.0):
    """Explore one query's softmax: number of keys, temperature, a sink logit (on/off),
    evicting the first tokens, and how strongly key 0 stands out. The picture (``plot.plot_softmax``)
    shows the sink's share as its own bar, the max weights, and only entropies of real
    distributions: the softmax, the full distribution with the sink counted, the evicted softmax.

    Evicting every key is allowed by the slider and shown as an error (a softmax over no keys
    is undefined). Returns an :class:`Explorer`.
    """
    keys = int_arg("keys", keys, minimum=1, maximum=MAX_KEYS)
    controls = {
        "keys": _slider("keys", keys, 1, MAX_KEYS, continuous=True),
        "temperature": _float_slider("temperature", "temperature", temperature, 0.1, 5.0, 0.1,
                                     strictly_positive=True),
        "use_sink": widgets.Checkbox(value=bool(use_sink), description="add a sink", style=_DESCRIPTION,
                                     layout=_WIDE),
        "sink_logit": _float_slider("sink logit b", "sink_logit", sink_logit, -5.0, 10.0, 0.5),
        "evict": _slider("evict first", int_arg("evict", evict, minimum=0, maximum=keys), 0, keys,
                         continuous=True),
        "boost": _float_slider("key 0 boost", "boost", boost, 0.0, 8.0, 0.5),
    }

    def sync(c, change):
        _set_max(c["evict"], c["keys"].value)
        c["sink_logit"].disabled = not c["use_sink"].value

    def draw(v):
        scores = explorer_scores(v["keys"], v["temperature"], v["boost"])
        keep = np.arange(v["keys"]) >= v["evict"] if v["evict"] else None
        return plot.plot_softmax(scores, sink_logit=v["sink_logit"] if v["use_sink"] else None, keep=keep)

    return Explorer("Softmax explorer", controls, draw, sync)


# --------------------------------------------------------------------------- receptive field


def receptive_field_explorer(n=64, window=None, layers=3, global_tokens=0, causal=True, query=None):
    """Explore how far information travels through stacked local + global layers.

    The pattern is ``local_global_pattern(window, ...)``: causal (window W keys, ``globals``
    sinks) or bidirectional (radius r, ``globals`` symmetric global tokens). The heatmap shows
    the first layer at which each key reaches each query; the title gives the chosen query's
    reach and the hops from key 0. Defaults: window min(4, n), query n - 1. Returns an :class:`Explorer`.
    """
    n = int_arg("n", n, minimum=2, maximum=256)
    window = min(4, n) if window is None else window  # a default must fit a small n
    query = n - 1 if query is None else int_arg("query", query, minimum=0, maximum=n - 1)
    controls = {
        "n": _slider("n (tokens)", n, 2, 256),
        "window": _slider("window W", int_arg("window", window, minimum=1, maximum=n), 1, n),
        "layers": _slider("layers", int_arg("layers", layers, minimum=1, maximum=12), 1, 12),
        "globals": _slider("sinks S", int_arg("global_tokens", global_tokens, minimum=0, maximum=16), 0, 16),
        "causal": widgets.Checkbox(value=bool(causal), description="causal", style=_DESCRIPTION, layout=_WIDE),
        "query": _slider("query q", query, 0, n - 1),
    }

    def sync(c, change):
        n = c["n"].value
        _set_max(c["window"], n)
        _set_max(c["globals"], min(16, n))
        _set_max(c["query"], n - 1)
        causal = c["causal"].value
        c["window"].description = "window W" if causal else "radius r"
        c["globals"].description = "sinks S" if causal else "global tokens g"

    def draw(v):
        if v["causal"]:
            pattern = local_global_pattern(v["window"], sinks=v["globals"], causal=True)
        else:
            pattern = local_global_pattern(v["window"], global_tokens=v["globals"], causal=False)
        return plot.plot_receptive_field(pattern, v["n"], v["layers"], query=v["query"])

    return Explorer("Receptive-field explorer", controls, draw, sync)


# --------------------------------------------------------------------------- KV budget

TOKEN_CHOICES = tuple((f"{2**p // 1024}K", 2**p) for p in range(10, 18))  # 1K ... 128K
DTYPES = (("fp32 (4 B)", 4), ("fp16 / bf16 (2 B)", 2), ("int8 / fp8 (1 B)", 1))
POLICY_CHOICES = {
    "all": ("dense", "native", "window", "sinks"),
    "dense": ("dense",),
    "native": ("native",),
    "window": ("window",),
    "sinks": ("sinks",),
}


def kv_budget_explorer(preset="Mistral-7B", tokens=32768, batch=1, bytes_per_element=2, policy="all",
                       window=None, sinks=4, budget_gib=24.0):
    """Explore KV-cache memory: model preset, context tokens, batch, dtype, cache policy,
    window, sinks and a memory budget (GiB); the title says how many sequences fit.

    Changing the preset resets the window to the model's own sliding window (4096 if it has
    none). Returns an :class:`Explorer`.
    """
    preset = choice_arg("preset", preset, costs.PRESETS)
    if tokens not in dict(TOKEN_CHOICES).values():
        raise ValueError(f"tokens must be one of {[v for _, v in TOKEN_CHOICES]}, got {tokens!r}")
    if int_arg("bytes_per_element", bytes_per_element) not in (4, 2, 1):
        raise ValueError(f"bytes_per_element must be 4, 2 or 1, got {bytes_per_element!r}")
    policy = choice_arg("policy", policy, POLICY_CHOICES)
    if window is None:
        window = costs.PRESETS[preset].sliding_window or plot.DEFAULT_WINDOW
    controls = {
        "preset": _dropdown("model", list(costs.PRESETS), preset),
        "tokens": widgets.SelectionSlider(options=TOKEN_CHOICES, value=tokens, description="tokens",
                                          continuous_update=False, style=_DESCRIPTION, layout=_WIDE),
        "batch": _slider("batch", int_arg("batch", batch, minimum=1, maximum=64), 1, 64),
        "dtype": _dropdown("dtype", DTYPES, bytes_per_element),
        "policy": _dropdown("policy", list(POLICY_CHOICES), policy),
        "window": _slider("window W", int_arg("window", window, minimum=256, maximum=32768), 256, 32768,
                          step=256),
        "sinks": _slider("sinks S", int_arg("sinks", sinks, minimum=0, maximum=64), 0, 64),
        "budget": _float_slider("budget (GiB)", "budget_gib", budget_gib, 1.0, 160.0, 1.0),
    }

    def sync(c, change):
        if change is not None and change["owner"] is c["preset"]:
            c["window"].value = costs.PRESETS[c["preset"].value].sliding_window or plot.DEFAULT_WINDOW
        uses_window = any(p in ("window", "sinks") for p in POLICY_CHOICES[c["policy"].value])
        c["window"].disabled = not uses_window
        c["sinks"].disabled = "sinks" not in POLICY_CHOICES[c["policy"].value]

    def draw(v):
        return plot.plot_kv_budget(v["preset"], v["tokens"], policies=POLICY_CHOICES[v["policy"]],
                                   window=v["window"], sinks=v["sinks"], batch=v["batch"],
                                   bytes_per_element=v["dtype"], budget_bytes=v["budget"] * plot.GIB)

    return Explorer("KV-budget explorer", controls, draw, sync)
