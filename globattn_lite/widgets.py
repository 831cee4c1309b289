"""Interactive explorers: sliders and menus around the figures of :mod:`globattn_lite.plot`.

Show one with a bare expression in a notebook cell::

    from globattn_lite.widgets import mask_explorer
    mask_explorer()

Each function returns an :class:`Explorer` (an ``ipywidgets.VBox``) with
``.controls`` (dict name -> widget), ``.figure`` (the current matplotlib Figure),
``.image`` (the ``ipywidgets.Image`` holding its PNG), ``.status`` (HTML: the live counts or
the caption, or the error), ``.numbers`` (the numbers the current figure shows, for explorers
that compute some), ``.caption`` (the lines of text an explorer that repaints in place shows
above its picture instead of drawing them), ``.error`` / ``.errors`` (the last / every exception a redraw
raised) and ``.refresh()``. Set a control (``ex.controls["n"].value = 128``) and the figure
is redrawn at once, also headless, so tests can check what it shows.

How drawing works, and why (see the course's widgets notes): JupyterLab 4.6 with ipykernel 7
may run widget callbacks on a kernel *subshell thread*, concurrently with the main thread;
callbacks drawing with ``pyplot`` then intermittently produce broken figures. So every
redraw builds a standalone ``matplotlib.figure.Figure`` (never pyplot), renders it to PNG
bytes with the Agg canvas, and *assigns* the bytes to the Image widget, all under a lock;
no ``with out:`` and no ``plt.show()``. The softmax, receptive-field and trained-model explorers
keep their Figure while its layout fits and repaint only what a control changes
(``plot.SoftmaxDrawing``, ``plot.ReceptiveFieldDrawing``, ``plot.ModelAttentionDrawing``,
``plot.CacheStepDrawing``): a redraw from scratch took longer than the 100 ms a slider allows.
Their titles (and numbers), which change with every control, are written as HTML text above the
picture (``.caption``) rather than drawn: rendering that text took a quarter to over half of a
repainted frame. The course also installs a JupyterLab settings override
(``commsOverSubshells: "disabled"``) so callbacks run on the main thread.

A redraw that fails (a combination the pattern rejects, say BigBird with a single block)
does not crash and is not swallowed: the message shows in red above the last good figure,
the exception is kept in ``.error`` and ``.errors`` and logged to the ``globattn_lite.widgets``
logger. Without a widget front end (nbconvert, GitHub, nbviewer) an explorer still shows
as the PNG of its current figure: ``_repr_mimebundle_`` adds ``image/png`` next to the widget view
(``.static_png``: with the caption lines drawn above the figure, so nothing shown live is missing).
"""

from __future__ import annotations

import base64
import contextlib
import html
import logging
import threading

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from globattn_lite import costs, patterns, plot
from globattn_lite._validate import choice_arg, float_arg, int_arg
from globattn_lite.attention import local_global_pattern

__all__ = [
    "Explorer",
    "mask_explorer",
    "softmax_explorer",
    "receptive_field_explorer",
    "kv_budget_explorer",
    "attention_explorer",
    "cache_explorer",
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
    ``change`` is the traitlets change that triggered the redraw, or None. ``draw`` may also
    return ``(figure, numbers)``: the dict ``numbers`` is kept as ``.numbers``; instead of a Figure,
    a drawing with ``.figure``, ``.png()`` and optionally ``.caption`` (a figure repainted in place,
    e.g. ``plot.CacheStepDrawing``; its caption lines replace the live-counts line). ``extras``:
    widgets laid out after the controls but not observed (a Play button linked to a slider in the
    browser).
    """

    def __init__(self, title, controls, draw, sync=None, extras=()):
        image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        status = widgets.HTML()
        grid = widgets.GridBox(
            list(controls.values()) + list(extras),
            layout=widgets.Layout(
                grid_template_columns="repeat(2, minmax(0, 1fr))", grid_gap="2px 16px", width="min(100%, 960px)"
            ),
        )
        super().__init__([widgets.HTML(f"<b>{html.escape(title)}</b>"), grid, status, image])
        self.title = title
        self.controls = dict(controls)
        self.image = image
        self.status = status
        self.figure = None
        self.numbers = {}
        self.png = b""
        self.caption = []  # lines a drawing leaves out of its figure, shown as text (see plot.ModelAttentionDrawing)
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
        return {name: round(c.value, 9) if isinstance(c.value, float) else c.value for name, c in self.controls.items()}

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
                fig, numbers = fig if isinstance(fig, tuple) else (fig, {})
                if isinstance(fig, Figure):
                    png, caption = plot.figure_png(fig), []
                else:  # a drawing that redraws only what changed (plot.SoftmaxDrawing and the like)
                    caption = getattr(fig, "caption", [])
                    assert isinstance(caption, list), type(caption)  # lines, not one string
                    fig, png, caption = fig.figure, fig.png(), list(caption)
            except Exception as exc:  # shown and recorded, never silent
                self.error = exc
                self.errors.append(exc)
                self.status.value = (
                    '<span style="color:#b00020"><b>Cannot draw this combination:</b> '
                    f"{html.escape(f'{type(exc).__name__}: {exc}')}</span>"
                    + (f"<br>The picture below still shows:{_caption_html(self.caption)}" if self.caption else "")
                )
                log.warning("%s: redraw failed for %s", self.title, self.values, exc_info=True)
                return
            finally:
                self._busy = False
            self.figure, self.numbers, self.png, self.caption, self.error = fig, numbers, png, caption, None
            if caption:  # the figure's titles and numbers, shown as text above it
                self.status.value = _caption_html(caption)
            else:
                self.status.value = html.escape(self.summary)
            width = f"{int.from_bytes(png[16:20], 'big')}px"  # the PNG's own width (IHDR): shown 1:1, never blurred
            if self.image.layout.width != width:
                self.image.layout.width = width
            self.image.value = png  # last: the latency benchmark stops its clock here

    @property
    def summary(self) -> str:
        """The live counts: the current figure's title(s) and caption lines on one line."""
        if self.figure is None:
            return ""
        titles = [ax.get_title() for ax in self.figure.axes if ax.get_title()]
        return " | ".join([t.replace("\n", " | ") for t in titles] + self.caption)

    @property
    def static_png(self) -> bytes:
        """The picture for renderers without widgets: the PNG, with the caption lines drawn above it."""
        return plot.captioned_png(self.png, self.caption) if self.caption and self.png else self.png

    def _repr_mimebundle_(self, **kwargs):
        """The widget view plus a static PNG of the current figure for renderers without widgets."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if self.png:
            bundle["image/png"] = base64.b64encode(self.static_png).decode("ascii")
        bundle["text/plain"] = f"{self.title}: {self.summary}" if self.figure is not None else self.title
        return bundle


def _caption_html(lines):
    """A drawing's caption lines as HTML, spaced as text (a widget row is 28 px), the first in bold."""
    escaped = [html.escape(line) for line in lines]
    escaped[0] = f"<b>{escaped[0]}</b>"
    return '<div style="line-height: 1.4; padding: 4px 0">' + "<br>".join(escaped) + "</div>"


def _slider(description, value, minimum, maximum, step=1, continuous=False):
    return widgets.IntSlider(
        value=value,
        min=minimum,
        max=maximum,
        step=step,
        description=description,
        continuous_update=continuous,
        style=_DESCRIPTION,
        layout=_WIDE,
    )


def _float_slider(description, name, value, minimum, maximum, step, strictly_positive=False):
    """A FloatSlider for argument ``name``; a start value outside [minimum, maximum] raises
    (the slider would silently clamp it, and the figure would not show what was asked)."""
    value = float_arg(name, value, strictly_positive=strictly_positive)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum:g} and {maximum:g} (the slider's range), got {value:g}")
    return widgets.FloatSlider(
        value=value,
        min=minimum,
        max=maximum,
        step=step,
        description=description,
        continuous_update=True,
        style=_DESCRIPTION,
        layout=_WIDE,
    )


def _dropdown(description, options, value):
    return widgets.Dropdown(options=options, value=value, description=description, style=_DESCRIPTION, layout=_WIDE)


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


def mask_explorer(n=32, family="window + sinks", window=None, global_tokens=1, dilation=2, block=None, query=None):
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
        "temperature": _float_slider("temperature", "temperature", temperature, 0.1, 5.0, 0.1, strictly_positive=True),
        "use_sink": widgets.Checkbox(value=bool(use_sink), description="add a sink", style=_DESCRIPTION, layout=_WIDE),
        "sink_logit": _float_slider("sink logit b", "sink_logit", sink_logit, -5.0, 10.0, 0.5),
        "evict": _slider("evict first", int_arg("evict", evict, minimum=0, maximum=keys), 0, keys, continuous=True),
        "boost": _float_slider("key 0 boost", "boost", boost, 0.0, 8.0, 0.5),
    }

    def sync(c, change):
        _set_max(c["evict"], c["keys"].value)
        c["sink_logit"].disabled = not c["use_sink"].value

    drawn = {}  # the SoftmaxDrawing shown, repainted while its layout fits

    def draw(v):
        scores = explorer_scores(v["keys"], v["temperature"], v["boost"])
        keep = np.arange(v["keys"]) >= v["evict"] if v["evict"] else None
        sink_logit = v["sink_logit"] if v["use_sink"] else None
        drawing = drawn.get("drawing")
        if drawing is not None and drawing.fits(scores, sink_logit, keep):
            return drawing.update(scores, sink_logit, keep)
        drawn["drawing"] = plot.SoftmaxDrawing(scores, sink_logit, keep, titles_in_figure=False)
        return drawn["drawing"]

    return Explorer("Softmax explorer", controls, draw, sync)


# --------------------------------------------------------------------------- receptive field


def receptive_field_explorer(n=64, window=None, layers=3, global_tokens=0, causal=True, query=None):
    """Explore how far information travels through stacked local + global layers.

    The pattern is ``local_global_pattern(window, ...)``: causal (window W keys, ``globals``
    sinks) or bidirectional (radius r, ``globals`` symmetric global tokens). The heatmap shows
    the first layer at which each key reaches each query; the text above it gives the chosen query's
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

    drawn = {}  # the ReceptiveFieldDrawing shown, repainted while its layout fits

    def draw(v):
        if v["causal"]:
            pattern = local_global_pattern(v["window"], sinks=v["globals"], causal=True)
        else:
            pattern = local_global_pattern(v["window"], global_tokens=v["globals"], causal=False)
        args = (pattern, v["n"], v["layers"])
        drawing = drawn.get("drawing")
        if drawing is not None and drawing.fits(*args, query=v["query"]):
            return drawing.update(*args, query=v["query"])
        drawn["drawing"] = plot.ReceptiveFieldDrawing(*args, query=v["query"], titles_in_figure=False)
        return drawn["drawing"]

    return Explorer("Receptive-field explorer", controls, draw, sync)


# --------------------------------------------------------------------------- KV budget

TOKEN_CHOICES = tuple((f"{2**p:,}", 2**p) for p in range(10, 18))  # 1,024 ... 131,072: the exact count shows
DTYPES = (("fp32 (4 B)", 4), ("fp16 / bf16 (2 B)", 2), ("int8 / fp8 (1 B)", 1), ("4-bit (0.5 B)", 0.5))
POLICY_CHOICES = {
    "all": ("dense", "native", "window", "sinks"),
    "dense": ("dense",),
    "native": ("native",),
    "window": ("window",),
    "sinks": ("sinks",),
}


def kv_budget_explorer(
    preset="Mistral-7B",
    tokens=32768,
    batch=1,
    bytes_per_element=2,
    policy="all",
    window=None,
    sinks=4,
    budget_gib=24.0,
    stack=None,
    sinks_in_window=True,
):
    """Explore KV-cache memory: model preset, context tokens, batch, element size (fp32 down to
    4-bit), cache policy, window, sinks and a memory budget (GiB); the title says how many
    sequences fit and whether the context is beyond what the model was trained for.

    ``sinks_in_window`` (default): the sinks policy keeps S sinks + the last W - S tokens, S + (W - S)
    = W entries per layer, so it costs exactly what the window W costs; False keeps S + W.
    ``stack``: optionally ``(label, layers)`` with one entry per layer of the preset (None, W or
    (W, S)), drawn as an extra curve (a design from notebook 08); the model menu is then fixed to
    ``preset``. Changing the preset resets the window to the model's own sliding window (4096 if it
    has none). Returns an :class:`Explorer`.
    """
    preset = choice_arg("preset", preset, costs.PRESETS)
    if tokens not in dict(TOKEN_CHOICES).values():
        raise ValueError(f"tokens must be one of {[v for _, v in TOKEN_CHOICES]}, got {tokens!r}")
    if isinstance(bytes_per_element, (bool, np.bool_)) or bytes_per_element not in dict((v, k) for k, v in DTYPES):
        raise (TypeError if isinstance(bytes_per_element, (bool, np.bool_)) else ValueError)(
            f"bytes_per_element must be 4, 2, 1 or 0.5, got {bytes_per_element!r}"
        )
    policy = choice_arg("policy", policy, POLICY_CHOICES)
    stacks = None
    if stack is not None:
        if not (isinstance(stack, tuple) and len(stack) == 2 and isinstance(stack[0], str)):
            raise TypeError(f"stack must be a pair (label, layers), got {stack!r}")
        costs.PRESETS[preset].stack_problems(stack[1])  # raises if it has the wrong number of layers
        stacks = {stack[0]: stack[1]}
    if window is None:
        window = costs.PRESETS[preset].sliding_window or plot.DEFAULT_WINDOW
    controls = {
        "preset": _dropdown("model", [preset] if stacks else list(costs.PRESETS), preset),
        "tokens": widgets.SelectionSlider(
            options=TOKEN_CHOICES,
            value=tokens,
            description="tokens",
            continuous_update=False,
            style=_DESCRIPTION,
            layout=_WIDE,
        ),
        "batch": _slider("batch", int_arg("batch", batch, minimum=1, maximum=64), 1, 64),
        "dtype": _dropdown("KV element", DTYPES, bytes_per_element),
        "policy": _dropdown("policy", list(POLICY_CHOICES), policy),
        "window": _slider("window W", int_arg("window", window, minimum=128, maximum=32768), 128, 32768, step=128),
        "sinks": _slider("sinks S", int_arg("sinks", sinks, minimum=0, maximum=64), 0, 64),
        "sinks_in_window": widgets.Checkbox(
            value=bool(sinks_in_window), description="sinks inside W", style=_DESCRIPTION, layout=_WIDE
        ),
        "budget": _float_slider("budget (GiB)", "budget_gib", budget_gib, 1.0, 160.0, 1.0),
    }

    def sync(c, change):
        if change is not None and change["owner"] is c["preset"]:
            c["window"].value = costs.PRESETS[c["preset"].value].sliding_window or plot.DEFAULT_WINDOW
        uses_window = any(p in ("window", "sinks") for p in POLICY_CHOICES[c["policy"].value])
        c["window"].disabled = not uses_window
        uses_sinks = "sinks" in POLICY_CHOICES[c["policy"].value]
        c["sinks"].disabled = c["sinks_in_window"].disabled = not uses_sinks

    def draw(v):
        recent = max(1, v["window"] - v["sinks"]) if v["sinks_in_window"] else v["window"]
        return plot.plot_kv_budget(
            v["preset"],
            v["tokens"],
            policies=POLICY_CHOICES[v["policy"]],
            window=v["window"],
            sinks=v["sinks"],
            sinks_window=recent,
            batch=v["batch"],
            bytes_per_element=v["dtype"],
            budget_bytes=v["budget"] * plot.GIB,
            stacks=stacks,
        )

    return Explorer("KV-budget explorer", controls, draw, sync)


# --------------------------------------------------------------------------- trained models
# These two explorers import torch (through experiments) only when called: the other explorers
# stay a light import.


def _experiments():
    from globattn_lite import experiments

    return experiments


@contextlib.contextmanager
def _one_torch_thread():
    """Run the explorers' tiny models on one torch thread, then restore the count: on a shared 2-core
    machine a forward of the attention explorer took 2.5 ms CPU on one thread, 130 ms on two
    (each small op waits for the busy second core; see ``timing``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _head_options(n_head):
    return [("mean over heads", "mean")] + [(f"head {h}", h) for h in range(n_head)]


def _sync_layer_and_head(c, model):
    """Layer slider and head menu follow the chosen model's sizes (the value stays when it fits)."""
    _set_max(c["layer"], model.cfg.n_layer - 1)
    options = _head_options(model.cfg.n_head)
    if list(c["head"].options) != options:
        keep = c["head"].value
        c["head"].options = options
        c["head"].value = keep if keep in [v for _, v in options] else "mean"


def _layer_head(weights, layer, head):
    """Weights (n_layer, n_head, ...) -> one layer's for one head, or the mean over its heads
    (a mean of distributions: every row still sums to 1)."""
    w = weights[layer]
    return w.mean(axis=0) if head == "mean" else w[head]


def _load_explored(names, checkpoint_dir):
    """``{(experiment, variant): model}`` of every experiment in ``names`` with a checkpoint there."""
    E = _experiments()
    models = {}
    for name in names:
        choice_arg("experiments", name, E.EXPLORED)
        try:
            loaded = E.load_models(name, checkpoint_dir)
        except FileNotFoundError:
            continue
        models.update({(name, variant): m for variant, m in loaded.items()})
    if not models:
        raise FileNotFoundError(
            f"no checkpoint of {list(names)} in {checkpoint_dir or E.CHECKPOINT_DIR}; "
            "train one with: python -m globattn_lite.experiments long_range"
        )
    return models


def _pick_model(models, experiment, variant, what):
    """The (experiment, variant) key asked for; default: the first variant with a prepended token."""
    keys = [k for k in models if experiment is None or k[0] == experiment]
    if not keys:
        raise ValueError(f"experiment must be one of {sorted({k[0] for k in models})}, got {experiment!r}")
    if variant is None:
        return next((k for k in keys if models[k].cfg.n_global), keys[0])
    for k in keys:
        if k[1] == variant:
            return k
    raise ValueError(f"{what} must be one of {[k[1] for k in keys]} (the variants in the checkpoint), got {variant!r}")


def attention_explorer(
    experiment="long_range",
    variant=None,
    example=0,
    tokens="",
    layer=None,
    head="mean",
    checkpoint_dir=None,
    experiments=("long_range", "streaming"),
):
    """Explore what a trained model attends to: checkpoint variant, input, layer, head (or the mean).

    Loads every experiment of ``experiments`` found in ``checkpoint_dir`` (default: the shipped
    checkpoints) with ``experiments.load_models``; the variants are whatever the checkpoints hold
    (default: ``experiment``'s variant whose key 0 the most queries may read). The input is test
    input ``example`` of the experiment's evaluation (``experiments.explorer_example``) or typed
    token ids (``tokens``, e.g. ``"3 17 5"``; empty = the example). The heatmap shows the weights
    of ``layer`` (default: the last) and ``head`` under the variant's mask (masked pairs grey), the
    scored query's row outlined, prepended tokens dashed; beside it the numbers in ``.numbers``:
    the scored row's weight on key 0 and on the prepended tokens, key 0's mean weight over the
    queries allowed to see it, the row's entropy, and the prediction with its probability.
    Returns an :class:`Explorer`.
    """
    E = _experiments()
    import torch

    models = _load_explored(experiments, checkpoint_dir)
    if variant is None and experiment in {k[0] for k in models}:
        # default: the variant whose key 0 the most queries may read (the global token, the sink token)
        reach = {}
        for k, m in models.items():
            if k[0] == experiment:
                try:
                    reach[k] = int(E.explorer_example(*k, m)["mask"][:, 0].sum()) + 0.5 * bool(m.cfg.n_global)
                except ValueError:  # a variant this code cannot build inputs for: shown, with the error, if chosen
                    continue
        variant = max(reach, key=reach.get)[1] if reach else None
    start = _pick_model(models, experiment, variant, "variant")
    model = models[start]
    example = int_arg("example", example, minimum=0, maximum=E.EXAMPLES - 1)
    if not isinstance(tokens, str):
        raise TypeError(f"tokens must be a string of token ids (e.g. '3 17 5'), got {type(tokens).__name__}")
    layer = (
        model.cfg.n_layer - 1 if layer is None else int_arg("layer", layer, minimum=0, maximum=model.cfg.n_layer - 1)
    )
    if head != "mean":
        head = int_arg("head", head, minimum=0, maximum=model.cfg.n_head - 1)
    controls = {
        "model": _dropdown("model", [(f"{name}: {v}", (name, v)) for name, v in models], start),
        "example": _slider("test example", example, 0, E.EXAMPLES - 1),
        "layer": _slider("layer", layer, 0, model.cfg.n_layer - 1),
        "head": _dropdown("head", _head_options(model.cfg.n_head), head),
        "tokens": widgets.Text(
            value=tokens,
            placeholder="token ids, e.g. 3 17 5 (empty: the example)",
            description="typed tokens",
            continuous_update=False,
            style=_DESCRIPTION,
            layout=_WIDE,
        ),
    }
    forwards = {}  # (model key, example, tokens) -> the input, weights (L, H, n, n) and probabilities
    drawn = {}  # the ModelAttentionDrawing shown ("drawing"), repainted while the layout fits

    @torch.no_grad()
    @_one_torch_thread()
    def forward(key, example, tokens):
        if (key, example, tokens) not in forwards:
            m = models[key]
            case = E.explorer_example(key[0], key[1], m, example, tokens=tokens or None)
            logits, weights = m(case["ids"], case["mask"], need_weights=True)
            probs = logits[0, case["query"] - m.cfg.n_global].softmax(-1).double().numpy()
            weights = np.stack([w[0].double().numpy() for w in weights])
            forwards.clear()  # one input at a time: enough for moving layer and head
            forwards[(key, example, tokens)] = (case, weights, probs)
        return forwards[(key, example, tokens)]

    def sync(c, change):
        _sync_layer_and_head(c, models[c["model"].value])
        c["example"].disabled = bool(c["tokens"].value.strip())

    def draw(v):
        key = v["model"]
        m = models[key]
        case, weights, probs = forward(key, v["example"], v["tokens"].strip())
        w = _layer_head(weights, v["layer"], v["head"])
        return describe(key, m, case, w, probs, v)

    def describe(key, m, case, w, probs, v):
        from globattn_lite import softmax_tools

        g, q, mask = m.cfg.n_global, case["query"], case["mask"]
        row = w[q]
        allowed = int(mask[q].sum())
        predicted = int(probs.argmax())
        seen_by = mask[:, 0]
        numbers = {
            f"query {q}, weight on key 0" + (" (prepended)" if g else ""): f"{row[0]:.3f}"
            if mask[q, 0]
            else "none (masked)",
        }
        if g > 1:
            numbers[f"query {q}, weight on the {g} prepended"] = f"{row[:g].sum():.3f}"
        numbers[f"query {q}, entropy"] = (
            f"{softmax_tools.entropy(row[mask[q]] / row[mask[q]].sum()):.3f} nats over its {allowed} keys "
            f"(uniform: ln {allowed} = {np.log(allowed):.3f})"
        )
        numbers["key 0, mean weight"] = (
            f"{w[seen_by, 0].mean():.3f} over the {int(seen_by.sum())} queries that may read it"
        )
        numbers["prediction"] = f"{predicted} (p = {probs[predicted]:.3f})"
        if case["answer"] is not None:
            verdict = "right" if predicted == case["answer"] else "wrong"
            numbers["answer"] = f"{case['answer']} (p = {probs[case['answer']]:.3f}): {verdict}"
        head = "mean over heads" if v["head"] == "mean" else f"head {v['head']}"
        title = f"{key[0]}: {key[1]}, layer {v['layer']}, {head}\n{case['about']}"
        drawing = drawn.get("drawing")
        if drawing is not None and drawing.fits(w, query=q, n_global=g, title=title):  # repaint in place
            fig = drawing.update(w, mask, query=q, n_global=g, numbers=numbers, title=title)
        else:
            fig = drawn["drawing"] = plot.ModelAttentionDrawing(
                w, mask, query=q, n_global=g, numbers=numbers, title=title, titles_in_figure=False
            )
        return fig, {
            "query": q,
            "weights": w,
            "row": row,
            "probs": probs,
            "answer": case["answer"],
            "predicted": predicted,
            **numbers,
        }

    return Explorer("Attention explorer (trained models)", controls, draw, sync)


STREAM_POLICIES = (
    ("window: the last C entries", "window"),
    ("sinks + window (C in all)", "sinks"),
    ("dense: keeps every entry", "dense"),
)


def cache_explorer(
    variant=None, policy="window", cache=None, step=None, layer=0, head="mean", length=None, checkpoint_dir=None
):
    """Step through decoding a stream with a KV cache: a streaming checkpoint, a cache policy and size.

    The stream is test stream 0 of the streaming experiment (``length`` tokens, default 4 training
    lengths), fed one token per step by ``experiments.stream_trace`` (``stream_nll``'s code path:
    ``KVCache`` + ``TinyTransformer.step``, positions assigned within the cache). Policies: "window"
    (the last C entries), "sinks" (the first ``experiments.streaming_sinks(model)`` entries + the
    most recent, C in all), "dense" (keeps every entry). At step t the figure shows the cache's slots
    as stored (sinks, then the recent entries in a ring buffer) with each slot's token and position
    id, coloured by token t's attention (``layer``, ``head`` or the mean); the weight each step puts
    on the entry at position 0; and the running perplexity against recomputation
    (``stream_nll(..., "recompute", C)``: a fresh forward over the last C entries per token). The
    first eviction is marked. A Play button advances the step in the browser. Returns an :class:`Explorer`.
    """
    E = _experiments()
    import torch

    from globattn_lite.tasks import MarkovSource
    from globattn_lite.tiny import KVCache

    models = E.load_models("streaming", checkpoint_dir)
    key = _pick_model({("streaming", v): m for v, m in models.items()}, "streaming", variant, "variant")[1]
    model = models[key]
    policy = choice_arg("policy", policy, [p for _, p in STREAM_POLICIES])
    sizes = sorted(E.STREAMING["caches"])
    cache = sizes[0] if cache is None else cache
    if cache not in sizes:
        raise ValueError(f"cache must be one of {sizes} (the experiment's cache sizes), got {cache!r}")
    length = (
        4 * E.STREAMING["train_len"]
        if length is None
        else int_arg("length", length, minimum=max(sizes) + 2, maximum=1024)
    )
    steps = length - 1
    layer = int_arg("layer", layer, minimum=0, maximum=model.cfg.n_layer - 1)
    if head != "mean":
        head = int_arg("head", head, minimum=0, maximum=model.cfg.n_head - 1)
    first = cache - model.cfg.n_global  # the step whose new entry is the first one over the cache size
    step = min(first + 4, steps - 1) if step is None else int_arg("step", step, minimum=0, maximum=steps - 1)
    ids = torch.from_numpy(MarkovSource(**E.STREAMING["source"]).sample(1, length, seed=E.TEST_SEED))
    # training windows: g prepended + train_len stream tokens, so step t's query (position g + t in a
    # dense cache) is beyond every trained position from t = train_len on
    train_len = E.STREAMING["train_len"]

    controls = {
        "model": _dropdown("model", list(models), key),
        "policy": _dropdown("policy", STREAM_POLICIES, policy),
        "cache": _dropdown("cache size C", sizes, cache),
        "layer": _slider("layer", layer, 0, model.cfg.n_layer - 1),
        "head": _dropdown("head", _head_options(model.cfg.n_head), head),
        "step": _slider("step t", step, 0, steps - 1),
    }
    play = widgets.Play(
        value=step, min=0, max=steps - 1, interval=400, description="play", layout=widgets.Layout(width="auto")
    )
    link = widgets.jslink((play, "value"), (controls["step"], "value"))  # browser side: no kernel round trip
    traces = {}  # (variant, policy, C) -> what every step of that run shows

    @_one_torch_thread()
    def run(variant, policy, C):
        if (variant, policy, C) not in traces:
            m = models[variant]
            sinks = E.streaming_sinks(m) if policy == "sinks" else 0
            trace = E.stream_trace(m, ids, policy, C, sinks)
            reference = E.stream_nll(m, ids, "recompute", C)[0].numpy()
            size = None if policy == "dense" else C
            evicted_at = None if size is None else C - m.cfg.n_global  # the step that adds entry C + 1
            traces[(variant, policy, C)] = {
                **trace,
                "sinks": sinks,
                "layout": KVCache(1, size=size, sinks=sinks),
                "slots": m.cfg.n_global + steps if size is None else C,
                "ppl": E.running_perplexity(trace["nll"]),
                "reference": E.running_perplexity(reference),
                # each step's weights on the entry at position 0, (n_layer, n_head, steps): a layer's curve at once
                "first": np.stack([w[..., 0] for w in trace["weights"]], axis=-1),
                "evicted_at": evicted_at if evicted_at is not None and evicted_at < steps else None,
                "trained_at": train_len if train_len < steps else None,
            }
        return traces[(variant, policy, C)]

    drawn = {}  # the run whose figure is shown ("run") and its CacheStepDrawing ("drawing")

    def sync(c, change):
        _sync_layer_and_head(c, models[c["model"].value])

    def draw(v):
        r = run(v["model"], v["policy"], v["cache"])
        g, t = r["n_global"], v["step"]
        kept, w = r["kept"][t], _layer_head(r["weights"][t], v["layer"], v["head"])
        tokens, positions, weights = [""] * r["slots"], np.full(r["slots"], -1), np.full(r["slots"], np.nan)
        for position, entry in enumerate(kept):
            slot = r["layout"].ring_slot(int(entry))
            tokens[slot] = "sink" if entry < g else str(int(r["tokens"][entry - g]))
            positions[slot], weights[slot] = position, w[position]
        first_weight = _layer_head(r["first"], v["layer"], v["head"])
        evicted = r["evicted_at"]
        name = dict((p, label) for label, p in STREAM_POLICIES)[v["policy"]].split(":")[0]
        if v["policy"] != "dense":
            name = f"{name}, C = {v['cache']}"
        head = "mean over heads" if v["head"] == "mean" else f"head {v['head']}"
        title = (
            f"{v['model']}, {name}: step {t} feeds token {int(r['tokens'][t])} "
            f"(stream position {t}), predicts token {t + 1}\n{len(kept)} entries cached"
            + (f", the first {r['sinks']} kept as sinks" if r["sinks"] > 1 else "")
            + (", the first kept as a sink" if r["sinks"] == 1 else "")
            + f"; colour: its attention, layer {v['layer']}, {head}"
        )
        current = r["layout"].ring_slot(g + t)
        run_key = (v["model"], v["policy"], v["cache"])
        if drawn.get("run") == run_key:  # same run: repaint the figure in place (the Play button's frames)
            fig = drawn["drawing"].update(tokens, positions, weights, t, first_weight, current, title)
        else:
            fig = plot.CacheStepDrawing(
                tokens,
                positions,
                weights,
                t,
                first_weight,
                r["ppl"],
                r["reference"],
                sinks=r["sinks"],
                current_slot=current,
                evicted_at=evicted,
                trained_at=r["trained_at"] if v["policy"] == "dense" else None,
                policy=name.split(",")[0],
                reference=f"recompute over the last {v['cache']}",
                title=title,
                titles_in_figure=False,
            )
            drawn.update(run=run_key, drawing=fig)
        numbers = {
            "step": t,
            "kept entries": kept,
            "slot of each position": [r["layout"].ring_slot(int(e)) for e in kept],
            "weights": w,
            "weight on position 0": float(w[0]),
            "running ppl": float(r["ppl"][t]),
            "running ppl, recompute": float(r["reference"][t]),
            "first eviction": evicted,
        }
        return fig, numbers

    ex = Explorer("Cache explorer (streaming models)", controls, draw, sync, extras=[play])
    ex.play, ex.play_link = play, link
    return ex
