"""Figures for the course: masks, weights, softmax, receptive fields, KV-cache budgets, scaling.

Every function returns a :class:`matplotlib.figure.Figure` and accepts an optional ``ax`` to draw
into an existing Axes (``plot_scaling`` takes a pair). Without ``ax`` a standalone figure is
made: this module never imports ``pyplot`` and never touches global state (rcParams, the current
figure), so it is safe inside widget callbacks running on any thread. Such a figure is a
:class:`CourseFigure`, a Figure that shows itself as a PNG when it ends a notebook cell (no
``%matplotlib`` or pyplot needed); ``figure_png(fig)`` gives the PNG bytes, ``fig.savefig(path)``
saves it.

Style: one small dict, :data:`STYLE`, applied to each figure as it is drawn (not via rcParams);
colour-blind-safe colours throughout: ``viridis``/``cividis`` for heatmaps and the Okabe-Ito
palette (:data:`OKABE_ITO`) for lines and bars. Conventions: 0-based positions, ``mask[q, k]``
True = query q may attend to key k; rows are queries (y axis), columns are keys (x axis).
"""

from __future__ import annotations

import base64
import io
import numbers
import struct
import textwrap
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize, PowerNorm, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from globattn_lite import costs, patterns, softmax_tools
from globattn_lite._validate import choice_arg, float_arg, int_arg, real_array

__all__ = [
    "CourseFigure",
    "figure_png",
    "captioned_png",
    "alt_text",
    "STYLE",
    "OKABE_ITO",
    "plot_mask",
    "plot_attention",
    "plot_model_attention",
    "plot_softmax",
    "plot_receptive_field",
    "plot_kv_budget",
    "plot_cache_step",
    "plot_scaling",
]

#: The course's figure style, applied per figure (never through rcParams).
STYLE = {
    "figsize": (6.4, 4.8),  # inches; 640 x 480 px at the dpi below fits a 1024 px screen
    "dpi": 100,
    "title_size": 10,
    "label_size": 9,
    "tick_size": 8,
    "legend_size": 8,
    "line_width": 1.8,
    "heatmap_cmap": "viridis",  # weights, layers
    "mask_cmap": "cividis",  # allowed (yellow) / masked (dark blue)
    "missing": "#d9d9d9",  # cells that never connect
}

#: Okabe-Ito colour-blind-safe palette (orange, sky blue, green, blue, vermillion, purple, yellow, black).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
HIGHLIGHT = "#D55E00"  # vermillion: the highlighted query and its index set G

#: ``plot_mask`` draws every cell (with grid lines) up to this n ...
GRID_MAX_N = 64
#: ... and above ``MAX_CELLS`` it aggregates blocks of tokens so at most MAX_CELLS x MAX_CELLS cells are
#: drawn (a 480 px figure has fewer pixels than that across its axes).
MAX_CELLS = 256

GIB = 2**30
MIB = 2**20


# --------------------------------------------------------------------------- helpers


def figure_png(fig) -> bytes:
    """PNG bytes of a Figure, drawn by the Agg canvas (no pyplot, no display needed)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def _lines(title):
    """Lines of a title ("" has none)."""
    return title.count("\n") + 1 if title else 0


def _text_height(lines, size):
    """Inches that ``lines`` lines of text at ``size`` points take (1.3 line spacing)."""
    return lines * size * 1.3 / 72


def _png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _fast_png(rgba, dpi) -> bytes:
    """PNG bytes of an (h, w, 4) uint8 RGBA array: unfiltered rows, zlib level 1 (the widget path).

    Encodes 3-4x faster than matplotlib's PNG writer (PIL's adaptive row filters at level 6) and,
    on the course's flat-coloured figures, comes out no larger; it decodes to the same pixels.
    Stores the dpi (pHYs) as :func:`figure_png` does.
    """
    rgba = np.asarray(rgba)
    assert rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4, (rgba.dtype, rgba.shape)
    h, w, _ = rgba.shape
    rows = np.zeros((h, 1 + 4 * w), np.uint8)  # each row: filter type 0 (none), then its pixels
    rows[:, 1:] = rgba.reshape(h, 4 * w)
    per_metre = round(dpi / 0.0254)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)),  # 8-bit RGBA
            _png_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_dpi(png) -> int:
    """The dpi a PNG stores (its pHYs chunk, in pixels per metre), else STYLE's."""
    at = png.find(b"pHYs", 8)
    if at >= 4:
        x, _, unit = struct.unpack(">IIB", png[at + 4 : at + 13])
        if unit == 1 and round(x * 0.0254) >= 1:
            return round(x * 0.0254)
    return STYLE["dpi"]


def captioned_png(png, lines) -> bytes:
    """PNG bytes of the picture ``png`` with ``lines`` of text drawn above it (the first in bold),
    each wrapped, as measured by the renderer, to the picture's width; no lines: ``png`` unchanged.

    The explorers' static picture (nbconvert, GitHub, the course site) where their figure leaves its
    titles and numbers to the text beside it (``ModelAttentionDrawing(..., titles_in_figure=False)``).
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.image import imread

    if isinstance(lines, str):
        raise TypeError("lines must be a list of strings, got a single string")
    lines = list(lines)
    if not all(isinstance(line, str) for line in lines):
        raise TypeError("lines must be a list of strings")
    if not lines:
        return png
    picture = np.round(imread(io.BytesIO(png), format="png") * 255).astype(np.uint8)  # 8-bit in, exact
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)
    if picture.shape[2] == 3:
        picture = np.concatenate([picture, np.full(picture.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    dpi = _png_dpi(png)
    size, margin = STYLE["label_size"], 0.1  # points, inches
    renderer = FigureCanvasAgg(Figure(dpi=dpi)).get_renderer()
    room = picture.shape[1] - 2 * margin * dpi  # pixels a line may take
    rows = []  # (text, bold)
    for i, line in enumerate(lines):
        weight = "bold" if i == 0 else "normal"
        prop = FontProperties(size=size, weight=weight)

        def fits(text, prop=prop):
            return renderer.get_text_width_height_descent(text, prop, ismath=False)[0] <= room

        current = ""
        for word in line.split(" "):
            candidate = f"{current} {word}" if current else word
            if fits(candidate) or not current.strip():
                current = candidate
            else:
                rows.append((current, weight))
                current = "   " + word
        rows.append((current, weight))
    step = _text_height(1, size)
    width, height = picture.shape[1] / dpi, 2 * margin + _text_height(len(rows), size)
    fig = Figure(figsize=(width, height), dpi=dpi)
    for i, (text, weight) in enumerate(rows):
        y = 1 - (margin + i * step) / height
        fig.text(margin / width, y, text, va="top", ha="left", fontsize=size, fontweight=weight, parse_math=False)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    caption = np.asarray(canvas.buffer_rgba())[:, : picture.shape[1]]
    return _fast_png(np.concatenate([caption, picture]), dpi)


class _TickMarks:
    """The tick marks (and grid lines) of an Axis as one layer of :class:`_LayeredPNG`, its tick labels
    and axis label left in the background: the marks touch the image and outlines at the axes' edge and
    must be drawn after them; the labels, a tick's pad away, share no pixels with them and cost the time.

    ``set_visible(False)`` hides the lines of every tick (for the background's draw); ``draw`` draws
    the axis with its texts hidden, so the same ticks as in a full draw are drawn at the same places.
    """

    def __init__(self, axis):
        self.axis = axis
        self.hidden = None  # while hidden: [(tick line, its visibility)] to restore

    def _ticks(self):
        return self.axis.get_major_ticks() + self.axis.get_minor_ticks()  # creates every tick a draw uses

    def get_visible(self):
        return self.hidden is None

    def set_visible(self, visible):
        if not visible and self.hidden is None:
            lines = [line for t in self._ticks() for line in (t.gridline, t.tick1line, t.tick2line)]
            self.hidden = [(line, line.get_visible()) for line in lines]
            for line in lines:
                line.set_visible(False)
        elif visible and self.hidden is not None:
            for line, shown in self.hidden:
                line.set_visible(shown)
            self.hidden = None

    def draw(self, renderer):
        axis = self.axis
        texts = [x for t in self._ticks() for x in (t.label1, t.label2)] + [axis.label, axis.offsetText]
        shown = [(x, x.get_visible()) for x in texts]
        placed = [(x, x.get_position()) for x in (axis.label, axis.offsetText)]
        for x in texts:
            x.set_visible(False)
        try:
            axis.draw(renderer)
        finally:
            for x, visible in shown:
                x.set_visible(visible)
            for x, position in placed:  # the draw placed them as if no tick label were shown
                x.set_position(position)


class _LayeredPNG:
    """PNG bytes of a figure that is repainted in place: a cached picture of every artist but the
    ``dynamic`` ones (what an update may change), then the dynamic artists drawn over it.

    This equals a full draw, pixel for pixel, if no other artist drawn after a dynamic one shares
    pixels with it: so ``dynamic`` lists, in draw order, whole axes, or what an axes draws after its
    images (its patches, the marks of its axes as :class:`_TickMarks`, lines, spines, texts, title),
    leaving in the background what lies apart from those (tick labels, axis labels); the tests compare
    with fresh figures. The PNG is encoded by :func:`_fast_png`: the pixels of :func:`figure_png`.
    """

    def __init__(self, fig, dynamic):
        self.fig, self.dynamic = fig, list(dynamic)
        self.canvas = FigureCanvasAgg(fig)
        self.background = None  # the figure drawn without the dynamic artists

    def png(self) -> bytes:
        if self.fig.canvas is not self.canvas:  # figure_png(fig) gave the figure a canvas of its own
            self.fig.set_canvas(self.canvas)
        if self.background is None:
            shown = [a for a in self.dynamic if a.get_visible()]
            for artist in shown:
                artist.set_visible(False)
            try:
                self.canvas.draw()
            finally:
                for artist in shown:
                    artist.set_visible(True)
            self.background = self.canvas.copy_from_bbox(self.fig.bbox)
        else:
            self.canvas.restore_region(self.background)
        renderer = self.canvas.get_renderer()
        for artist in self.dynamic:
            artist.draw(renderer)
        return _fast_png(self.canvas.buffer_rgba(), self.fig.dpi)


def alt_text(fig) -> str:
    """A text alternative for a figure, made from what it draws: for each Axes (colour bars
    left out) the kind of chart, its title (the plotted numbers: pairs, keys, weights, bytes)
    and its axis labels. Screen readers and the course website use it as the image's alt text."""
    parts = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        kind = "heatmap" if ax.images else "bar chart" if ax.containers else "line chart" if ax.lines else "chart"
        title = "; ".join(" ".join(line.split()) for line in ax.get_title().splitlines() if line.strip())
        axes = "; ".join(
            f"{name} axis: {' '.join(label.split())}"
            for name, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel()))
            if label
        )
        parts.append(f"{kind}: {title}." + (f" {axes}." if axes else ""))
    return " ".join(parts) or "empty figure"


class CourseFigure(Figure):
    """A matplotlib Figure that IPython/Jupyter displays as a PNG without pyplot (``_repr_png_``),
    with its :func:`alt_text` in the output's metadata (``{"image/png": {"alt": ...}}``)."""

    def _repr_png_(self):
        return figure_png(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"image/png": base64.b64encode(figure_png(self)).decode("ascii"), "text/plain": repr(self)}
        return data, {"image/png": {"alt": alt_text(self)}}


def _root_figure(ax):
    """The top-level Figure holding ``ax`` (also inside a SubFigure). ``ax.figure.figure``
    works on every matplotlib >= 3.7; ``ax.get_figure(root=True)`` needs 3.10."""
    return ax.figure.figure


def _figure_and_axes(ax, figsize=None):
    """(figure, axes, own): a new standalone Figure with one Axes (own=True), or the Figure of ``ax``."""
    if ax is None:
        fig = CourseFigure(figsize=figsize or STYLE["figsize"], dpi=STYLE["dpi"])
        return fig, fig.add_subplot(), True
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return _root_figure(ax), ax, False


def _fit(fig, own, colorbar=False, **extra):
    """Fixed margins, in inches, for a figure made here (a layout engine would double the drawing time).

    The top margin fits the longest title of the figure's axes.
    """
    if not own:
        return
    width, height = fig.get_size_inches()
    lines = max(_lines(ax.get_title()) for ax in fig.axes)  # an untitled figure keeps 0.2 in
    top = 0.2 + lines * STYLE["title_size"] * 1.25 / 72
    right = 0.95 if colorbar else 0.25
    fig.subplots_adjust(left=0.8 / width, right=1 - right / width, bottom=0.55 / height, top=1 - top / height, **extra)


def _decorate(ax, title, xlabel, ylabel, positions=None):
    """Title, axis labels and tick sizes from STYLE; ``positions=n``: integer token-position ticks."""
    for axis in (ax.xaxis, ax.yaxis) if positions is not None else ():
        if positions <= 16:
            axis.set_ticks(range(positions))
        else:
            axis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # few ticks draw fast
    # a fixed y skips matplotlib's search for overlapping top tick labels (a fifth of the draw time)
    ax.set_title(title, fontsize=STYLE["title_size"], y=1.0)
    ax.set_xlabel(xlabel, fontsize=STYLE["label_size"])
    ax.set_ylabel(ylabel, fontsize=STYLE["label_size"])
    ax.tick_params(labelsize=STYLE["tick_size"])


def _colorbar(fig, mappable, ax, label, ticks=None, ticklabels=None):
    cbar = fig.colorbar(mappable, ax=ax, shrink=0.85, pad=0.02)
    cbar.set_label(label, fontsize=STYLE["label_size"])
    if ticks is not None:
        cbar.set_ticks(ticks, labels=ticklabels)
    cbar.ax.tick_params(labelsize=STYLE["tick_size"])
    return cbar


def _wrap(text, width=70):
    return "\n".join(textwrap.wrap(text, width)) or text


def _name(pattern_or_mask):
    return str(pattern_or_mask) if isinstance(pattern_or_mask, patterns.Pattern) else "mask"


def _mask_arg(pattern_or_mask, n):
    """(mask, n) from a Pattern and its length, or from an (n, n) bool array (n optional)."""
    mask = patterns.as_mask(pattern_or_mask, n)
    return mask, mask.shape[0]


def _query_arg(query, n):
    return None if query is None else int_arg("query", query, minimum=0, maximum=n - 1)


def _block_fraction(mask, cells):
    """Aggregate an (n, n) bool mask into blocks of b x b tokens, at most ``cells`` per side.

    Returns (fraction, b): fraction[i, j] = share of allowed pairs among the real (q, k) in
    block (i, j) (the last block row/column may be partial), b = tokens per block side.
    """
    n = mask.shape[0]
    b = -(-n // cells)
    m = -(-n // b)
    pad = m * b - n
    padded = np.pad(mask, ((0, pad), (0, pad))) if pad else mask
    counts = padded.reshape(m, b, m, b).sum(axis=(1, 3), dtype=np.int64)
    sizes = np.full(m, b)
    sizes[-1] = b - pad
    return counts / np.outer(sizes, sizes), b


# --------------------------------------------------------------------------- masks


def plot_mask(pattern_or_mask, n=None, query=None, ax=None):
    """Draw an attention mask: allowed pairs (q, k) in yellow, masked pairs in dark blue (cividis).

    ``pattern_or_mask``: a Pattern (then ``n`` is required) or an (n, n) bool array.
    ``query``: optional 0-based query whose row and index set G = {k : mask[query, k]} are
    outlined and painted vermillion. The title gives the pattern, the number of allowed
    pairs, the density (pairs / n^2) and |G| for the query (or the min-max keys per query).

    Up to n = 64 every cell is drawn with grid lines. Above MAX_CELLS (256) tokens, blocks
    of b x b tokens become one cell coloured by the fraction of allowed pairs in it, so at
    most 256 x 256 cells are drawn (n = 4096 uses 16 x 16 blocks, about one screen pixel each);
    the highlighted query row then paints the blocks that contain at least one key of G.
    """
    mask, n = _mask_arg(pattern_or_mask, n)
    query = _query_arg(query, n)
    fig, ax, own = _figure_and_axes(ax)

    counts = mask.sum(axis=1)
    pairs = int(counts.sum())
    if n > MAX_CELLS:
        image, b = _block_fraction(mask, MAX_CELLS)
        # a power scale keeps sparse blocks (a thin window: a few allowed pairs per block) visible
        norm = PowerNorm(0.3, vmin=0, vmax=1)
    else:
        image, b, norm = mask, 1, Normalize(0, 1)
    m = image.shape[0]
    extent = (-0.5, m * b - 0.5, m * b - 0.5, -0.5)  # in token units whatever the block size
    im = ax.imshow(image.astype(float), cmap=STYLE["mask_cmap"], norm=norm, interpolation="nearest", extent=extent)
    if b > 1:
        _colorbar(
            fig, im, ax, f"fraction of allowed pairs per {b} x {b} block (power scale)", ticks=[0, 0.01, 0.1, 0.5, 1]
        )
    # a two-colour image needs no colour bar (it would cost a quarter of the drawing time)
    xlabel = "key position k" + ("" if b > 1 else "   (yellow: may attend, blue: masked)")

    lines = [_wrap(_name(pattern_or_mask)), f"n={n}: {pairs:,} pairs, density {pairs / n**2:.4g}"]
    if query is None:
        lines.append(f"keys per query: {int(counts.min())} to {int(counts.max())}")
    else:
        G = np.flatnonzero(mask[query])
        shown = "" if len(G) > 8 else " G = {" + ", ".join(map(str, G)) + "}"
        lines.append(f"query {query}: {len(G)} keys{shown}")
        row_cells = np.zeros(m, dtype=bool)
        row_cells[G // b] = True
        overlay = np.zeros((1, m, 4))
        overlay[0, row_cells] = to_rgba(HIGHLIGHT, 1.0)
        top = (query // b) * b - 0.5
        ax.imshow(overlay, interpolation="nearest", extent=(-0.5, m * b - 0.5, top + b, top))
        ax.add_patch(Rectangle((-0.5, top), n, b, fill=False, edgecolor=HIGHLIGHT, linewidth=1.5, clip_on=False))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    if 1 < n <= GRID_MAX_N:  # one line collection each way: much faster than minor-tick grids
        edges = np.arange(0.5, n - 1)
        width = 0.4 if n > 16 else 0.8
        ax.vlines(edges, -0.5, n - 0.5, colors="white", linewidth=width)
        ax.hlines(edges, -0.5, n - 0.5, colors="white", linewidth=width)
    _decorate(ax, "\n".join(lines), xlabel, "query position q", positions=n)
    _fit(fig, own, colorbar=b > 1)
    return fig


# --------------------------------------------------------------------------- weights


def _finite_array(name, x, ndim, what):
    """``x`` as a finite float64 array with ``ndim`` axes and no empty axis, or raise naming ``name``."""
    arr = real_array(name, x, float64=True, finite=True)
    if arr.ndim != ndim or 0 in arr.shape:
        raise ValueError(f"{name} must be {ndim}-D ({what}) and non-empty, got shape {arr.shape}")
    return arr


def _tick_labels(axis_set_ticks, labels):
    """Label every position up to 64 tokens, else every k-th so at most ~32 labels show."""
    step = 1 if len(labels) <= 64 else -(-len(labels) // 32)
    pos = np.arange(0, len(labels), step)
    axis_set_ticks(pos, labels=[labels[i] for i in pos])


def plot_attention(weights, tokens=None, ax=None):
    """Heatmap of attention weights, rows = queries, columns = keys (``viridis``, 0 = dark).

    ``weights``: (n_queries, n_keys) array of non-negative numbers (e.g. the second output of
    ``attention.attention``); masked pairs have weight exactly 0. ``tokens``: optional labels of
    the keys (a sequence of n_keys strings); for a square matrix they label the queries too.
    Up to 12 x 12 each cell also prints its weight. The title gives the shape, the largest
    weight and the number of zero weights.
    """
    w = _finite_array("weights", weights, 2, "queries x keys")
    if (w < 0).any():
        raise ValueError(f"weights must be non-negative, got a minimum of {w.min():.3g}")
    nq, nk = w.shape
    if tokens is not None:
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise TypeError(f"tokens must be a sequence of {nk} strings (one per key), got {type(tokens).__name__}")
        if len(tokens) != nk:
            raise ValueError(f"tokens must have one label per key ({nk}), got {len(tokens)}")
        tokens = [str(t) for t in tokens]
    fig, ax, own = _figure_and_axes(ax)
    top = float(w.max())
    im = ax.imshow(w, cmap=STYLE["heatmap_cmap"], vmin=0, vmax=top if top > 0 else 1, interpolation="nearest")
    _colorbar(fig, im, ax, "attention weight")
    if nq * nk <= 144:
        for (q, k), value in np.ndenumerate(w):
            ax.text(
                k,
                q,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=STYLE["tick_size"] - 1,
                color="black" if value > 0.6 * top else "white",
            )
    if tokens is not None:
        _tick_labels(ax.set_xticks, tokens)
        ax.tick_params(axis="x", labelrotation=90)
        if nq == nk:
            _tick_labels(ax.set_yticks, tokens)
    zeros = int((w == 0).sum())
    title = f"attention weights: {nq} queries x {nk} keys\nmax weight {top:.3g}, {zeros} zero weights"
    _decorate(
        ax,
        title,
        "key" + (" token" if tokens else " position k"),
        "query" + (" token" if tokens is not None and nq == nk else " position q"),
    )
    _fit(fig, own, colorbar=True)
    return fig


def _panel_figure(width, height, rects):
    """A standalone figure (inches ``width`` x ``height``) with axes at fixed rects (figure fractions):
    fixed rects instead of a layout engine, which would double the drawing time."""
    fig = CourseFigure(figsize=(width, height), dpi=STYLE["dpi"])
    return fig, [fig.add_axes(rect) for rect in rects]


def _title_top(title, height):
    """Figure fraction where an axes must end so ``title`` fits above it (figure ``height`` inches)."""
    lines = title.count("\n") + 1
    return 1 - (0.15 + _text_height(lines, STYLE["title_size"])) / height


def _model_attention_args(weights, mask, query, n_global, numbers, title):
    """Checked arguments of plot_model_attention: (w, mask, query, g, numbers, title lines)."""
    w = _finite_array("weights", weights, 2, "queries x keys")
    mask = patterns.as_mask(mask, name="mask")
    if mask.shape != w.shape or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights and mask must both be square and of one shape, got {w.shape} and {mask.shape}")
    if (w < 0).any():
        raise ValueError(f"weights must be non-negative, got a minimum of {w.min():.3g}")
    if (w[~mask] != 0).any():
        raise ValueError("weights must be 0 on every pair the mask forbids (mask False)")
    n = w.shape[0]
    query = _query_arg(query, n)
    g = int_arg("n_global", n_global, minimum=0, maximum=n)
    numbers = {} if numbers is None else dict(numbers)
    if not isinstance(title, str):
        raise TypeError(f"title must be a string, got {type(title).__name__}")
    lines = [title] if title else []
    lines.append(f"{n} positions ({g} prepended), {int(mask.sum()):,} allowed pairs; grey = masked")
    return w, mask, query, g, numbers, lines


def _attention_image(w, mask):
    """(RGBA image, norm, cmap) of plot_model_attention: viridis on a square-root scale, masked pairs grey
    (one image coloured here: a second, overlaid image would cost as much again)."""
    norm, cmap = PowerNorm(0.5, vmin=0, vmax=float(w.max()) or 1.0), colormaps[STYLE["heatmap_cmap"]]
    rgba = cmap(norm(w))
    rgba[~mask] = to_rgba(STYLE["missing"], 1.0)
    return rgba, norm, cmap


def _outline_rows(ax, n, g, query):
    """The prepended tokens' row and column in blue dashes, the scored query's row in vermillion."""
    if g:
        for rect in ((-0.5, -0.5, n, g), (-0.5, -0.5, g, n)):
            ax.add_patch(
                Rectangle(rect[:2], rect[2], rect[3], fill=False, edgecolor=OKABE_ITO[1], linestyle="--", linewidth=1.3)
            )
    if query is not None:
        ax.add_patch(
            Rectangle((-0.5, query - 0.5), n, 1, fill=False, edgecolor=HIGHLIGHT, linewidth=1.6, clip_on=False)
        )


def _attention_ticks(w):
    return [t for t in (0, 0.01, 0.1, 0.5, 1) if t <= float(w.max())]


def _numbers_text(numbers):
    return "\n".join(textwrap.fill(f"{k}: {v}", 32, subsequent_indent="   ") for k, v in numbers.items())


def _caption(lines, numbers=None):
    """The lines a drawing leaves to its caller (``titles_in_figure=False``): title lines, then "label: value"."""
    return [line for text in lines for line in text.splitlines()] + [f"{k}: {v}" for k, v in (numbers or {}).items()]


class _RepaintedDrawing:
    """What the figures repainted in place share (``ModelAttentionDrawing`` and the like): ``png()`` through
    their ``_LayeredPNG``, a title drawn or kept as ``.caption``, and arguments prepared once for a
    ``fits`` and the ``update`` that follows it."""

    titles_in_figure = True

    def png(self) -> bytes:
        """PNG bytes of the current figure: the same picture as ``figure_png(self.figure)``, drawn faster."""
        return self._layers.png()

    def _show_title(self, title):
        """The title on the axes, or (``titles_in_figure=False``) as the caption's lines."""
        if self.titles_in_figure:
            self.ax.set_title(title, fontsize=STYLE["title_size"], y=1.0)
        else:
            self.caption = _caption([title])

    def _prepared(self, prepare, *args):
        """``prepare(*args)``, reused when called again with the very same argument objects (the explorer
        asks ``fits`` and then ``update``: the receptive field's hop matrix took 19 ms at n = 256)."""
        memo = getattr(self, "_memo", None)
        if memo is not None and memo[0] is prepare and len(memo[1]) == len(args):
            if all(a is b for a, b in zip(memo[1], args, strict=True)):
                return memo[2]
        result = prepare(*args)
        self._memo = (prepare, args, result)
        return result


class ModelAttentionDrawing(_RepaintedDrawing):
    """The standalone figure of :func:`plot_model_attention` (``.figure``), kept to be redrawn for
    another layer, head or input of the same layout (the attention explorer): ``update`` repaints the
    heatmap, colour bar, title and numbers (or ``.caption``) in place (building the figure's axes
    anew cost a third of a redraw), ``png()`` draws it on a kept canvas. ``fits(...)`` says whether
    an update keeps the layout (same n, prepended tokens, query and number of title lines);
    arguments as :func:`plot_model_attention`.

    ``titles_in_figure=False`` (the explorer): the title and the numbers are not drawn but kept in
    ``.caption``, a list of lines the caller shows as text beside the picture; the figure is the
    heatmap and its colour bar alone, and the number of title lines no longer constrains an update.
    Drawing those texts took over half of a redraw.
    """

    def __init__(self, weights, mask, query=None, n_global=0, numbers=None, title="", titles_in_figure=True):
        w, mask, query, g, numbers, lines = _model_attention_args(weights, mask, query, n_global, numbers, title)
        n = w.shape[0]
        self.titles_in_figure = bool(titles_in_figure)
        self.layout = (n, g, query, _lines("\n".join(lines)) if self.titles_in_figure else None)
        if self.titles_in_figure:
            top = _title_top("\n".join(lines), 4.8)
            rects = [(0.07, 0.1, 0.5, top - 0.1), (0.585, 0.1, 0.015, top - 0.1)]
            self.figure, (ax, cax) = _panel_figure(8.0, 4.8, rects)
        else:
            self.figure, (ax, cax) = _panel_figure(5.2, 4.4, [(0.11, 0.1, 0.7, 0.86), (0.84, 0.1, 0.022, 0.86)])
        self.ax = ax
        rgba, norm, cmap = _attention_image(w, mask)
        self.image = ax.imshow(rgba, interpolation="nearest")
        self.mappable = ScalarMappable(norm=norm, cmap=cmap)
        _outline_rows(ax, n, g, query)
        self.colorbar = self.figure.colorbar(self.mappable, cax=cax, ticks=_attention_ticks(w))
        self.colorbar.set_label("attention weight (square-root scale)", fontsize=STYLE["label_size"])
        self.colorbar.ax.tick_params(labelsize=STYLE["tick_size"])
        _decorate(ax, "", "key position k", "query position q", positions=n)
        self.text, self.caption = None, []
        if self.titles_in_figure:
            ax.set_title("\n".join(lines), fontsize=STYLE["title_size"], y=1.0)
            # the numbers: figure text, no axes (an axes would cost a tenth of the time)
            self.text = self.figure.text(
                0.69, top, _numbers_text(numbers), va="top", ha="left", fontsize=STYLE["label_size"]
            )
        else:
            self.caption = _caption(lines, numbers)
        # redrawn: what the heatmap draws over or after its image (outlines, tick marks, spines, and the
        # title if drawn), the colour bar (its ticks follow the top weight) and the numbers if drawn; the
        # tick and axis labels stay
        self._layers = _LayeredPNG(
            self.figure,
            [self.image, *ax.patches, _TickMarks(ax.xaxis), _TickMarks(ax.yaxis), *ax.spines.values()]
            + ([ax.title, cax, self.text] if self.titles_in_figure else [cax]),
        )

    def fits(self, weights, query=None, n_global=0, title=""):
        """Whether ``update`` can show these: the same layout (n, prepended tokens, query, and title lines
        if the title is drawn)."""
        n = np.shape(weights)[0]
        return self.layout == (n, n_global, query, _lines(title) + 1 if self.titles_in_figure else None)

    def update(self, weights, mask, query=None, n_global=0, numbers=None, title=""):
        """Show other weights (another layer, head or input) in the same layout, see ``fits``."""
        w, mask, query, g, numbers, lines = _model_attention_args(weights, mask, query, n_global, numbers, title)
        layout = (w.shape[0], g, query, _lines("\n".join(lines)) if self.titles_in_figure else None)
        if layout != self.layout:
            parts = 4 if self.titles_in_figure else 3
            raise ValueError(
                f"update needs the layout ({', '.join(['n', 'n_global', 'query', 'title lines'][:parts])}) "
                f"{self.layout[:parts]}, got {layout[:parts]}; draw a new figure instead"
            )
        rgba, norm, _ = _attention_image(w, mask)
        self.image.set_data(rgba)
        self.mappable.set_clim(norm.vmin, norm.vmax)
        self.colorbar.set_ticks(_attention_ticks(w))
        if self.titles_in_figure:
            self.ax.set_title("\n".join(lines), fontsize=STYLE["title_size"], y=1.0)
            self.text.set_text(_numbers_text(numbers))
        else:
            self.caption = _caption(lines, numbers)
        return self


def plot_model_attention(weights, mask, query=None, n_global=0, numbers=None, title="", ax=None):
    """A trained model's attention weights on one input: rows = queries, columns = keys.

    ``weights``: (n, n), non-negative, zero wherever ``mask`` (the (n, n) bool pattern the model ran
    under) is False. Drawn as one RGBA image: ``viridis`` on a square-root scale (``PowerNorm(0.5)``),
    so small weights stay visible, and the pairs the pattern masks in light grey, so "masked" and
    "allowed but small" (dark) differ.
    ``query``: the row outlined in vermillion (the query the task scores). ``n_global``: positions
    0..n_global-1 are prepended (global or sink) tokens; their row and column are outlined in blue
    dashes. ``numbers``: ``{label: text}`` shown in a panel beside the heatmap (added to the title
    when ``ax`` is given). ``title``: first title line(s), e.g. the model, layer and head.
    """
    if ax is None:
        return ModelAttentionDrawing(weights, mask, query, n_global, numbers, title).figure
    w, mask, query, g, numbers, lines = _model_attention_args(weights, mask, query, n_global, numbers, title)
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    n = w.shape[0]
    lines = _caption(lines, numbers)
    ax.imshow(_attention_image(w, mask)[0], interpolation="nearest")
    _outline_rows(ax, n, g, query)
    _decorate(ax, "\n".join(lines), "key position k", "query position q", positions=n)
    return _root_figure(ax)


# --------------------------------------------------------------------------- softmax


def _softmax_series(scores, sink_logit=None, keep=None):
    """Checked arguments of plot_softmax and what it draws: (n, series, share, evicted, title), series =
    [(label, weights, stats)], share = the sink's share or None, evicted = the evicted keys' indices."""
    s = _finite_array("scores", scores, 1, "one query's scores over its keys")
    n = s.size
    plain = softmax_tools.softmax(s)
    H_plain = softmax_tools.entropy(plain)
    series = [("softmax", plain, f"H = {H_plain:.3f} nats")]
    notes = []
    share = None
    if sink_logit is not None:
        b = float_arg("sink_logit", sink_logit)
        share = softmax_tools.sink_weight(s, b)
        H_full = softmax_tools.entropy(softmax_tools.sink_distribution(s, b))
        series.append(
            (
                f"with sink (logit {b:g})",
                softmax_tools.softmax_with_sink(s, b),
                f"keys get 1 - s = {1 - share:.3f}, H incl. sink = {H_full:.3f} nats",
            )
        )
        notes.append(f"sink takes {share:.3f} of the mass; keys renormalised = the softmax (H {H_plain:.3f})")
    evicted = np.zeros(0, dtype=int)
    if keep is not None:
        keep = np.asarray(keep)
        if keep.dtype != np.bool_:
            raise TypeError(f"keep must be a boolean array (True = key stays), got dtype {keep.dtype}")
        if keep.shape != s.shape:
            raise ValueError(f"keep must have the same shape as scores {s.shape}, got {keep.shape}")
        if not keep.any():
            raise ValueError("keep must keep at least one key: a softmax over no keys is undefined")
        evicted = np.flatnonzero(~keep)
        after = softmax_tools.evict(s, keep)
        series.append(
            (f"after evicting {len(evicted)} of {n} keys", after, f"H = {softmax_tools.entropy(after):.3f} nats")
        )
        notes.append(f"kept weights grow x{softmax_tools.eviction_renormalisation(s, keep):.3f}")

    notes.insert(0, f"uniform would be H = ln {n} = {np.log(n):.3f}")
    return n, series, share, evicted, "\n".join([f"softmax over {n} keys"] + notes)


def _softmax_top(series, share):
    """The y limit of plot_softmax: 1.7 x the top bar (head room for the legend and notes)."""
    top = max(float(w.max()) for _, w, _ in series)
    return 1.7 * (top if share is None else max(top, share))


def _series_label(label, w, stats):
    return f"{label}: {stats}, max {w.max():.3f}"


def plot_softmax(scores, sink_logit=None, keep=None, ax=None):
    """Bars of one query's softmax weights over its keys, and how a sink or eviction changes them.

    Always drawn: ``softmax(scores)``. With ``sink_logit`` b: ``softmax_with_sink`` (weights
    exp(s_i) / (exp(b) + sum_j exp(s_j)) = (1 - s) softmax(scores), summing to 1 - s); the sink's
    share s is drawn as its own hatched bar left of key 0. With ``keep`` (bool array, same length,
    at least one True): ``evict(scores, keep)``, the softmax over the kept keys only (evicted keys
    are marked x); every kept weight grows by ``eviction_renormalisation``.

    Each series' legend gives its max weight and the entropy of a real distribution, labelled:
    H of the softmax (and of the evicted softmax); for the sink, H of the full distribution with
    the sink counted as an outcome (``sink_distribution``). The sink's weights on the real keys,
    renormalised, are the plain softmax, so their entropy is the plain one (the title says so).
    """
    if ax is None:
        return SoftmaxDrawing(scores, sink_logit, keep).figure
    n, series, share, evicted, title = _softmax_series(scores, sink_logit, keep)
    fig, ax, _ = _figure_and_axes(ax)  # checks ax
    _draw_softmax(ax, n, series, share, evicted, title)
    return fig


def _draw_softmax(ax, n, series, share, evicted, title):
    """Draw plot_softmax into ``ax``: returns (bar containers, sink bar, sink label, evicted marks), None if absent."""
    x = np.arange(n)
    width = 0.8 / len(series)
    bars = [
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            w,
            width,
            label=_series_label(label, w, stats),
            color=OKABE_ITO[i + 1],
        )
        for i, (label, w, stats) in enumerate(series)
    ]
    left, sink_bar, sink_label, marks = -0.6, None, None, None
    if share is not None:  # the sink's share, its own bar (a patch, not one of the key series)
        sink_bar = ax.add_patch(Rectangle((-1.5, 0), 0.8, share, facecolor="white", edgecolor=OKABE_ITO[2], hatch="//"))
        sink_label = ax.text(-1.1, share, f"sink\n{share:.2f}", ha="center", va="bottom", fontsize=STYLE["legend_size"])
        left = -1.7
    if len(evicted):
        (marks,) = ax.plot(evicted, np.zeros(len(evicted)), "x", color=OKABE_ITO[7], label="evicted key")
    ax.set_ylim(0, _softmax_top(series, share))
    ax.set_xlim(left, n - 0.4)
    if n <= 32:
        ax.set_xticks(x)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.legend(loc="upper left", fontsize=STYLE["legend_size"], framealpha=0.85)
    _decorate(ax, title, "key position k", "attention weight (probability)")
    return bars, sink_bar, sink_label, marks


class SoftmaxDrawing(_RepaintedDrawing):
    """The standalone figure of :func:`plot_softmax` (``.figure``), kept to be redrawn for other scores,
    sink logit or evicted keys of the same layout (the softmax explorer's sliders): ``update`` resets the
    bars, the sink bar, the marks, the y range, the legend's labels and the title in place, ``png()``
    draws only those over a cached picture of the rest (a new figure per change took over 100 ms).
    ``fits(...)`` says whether an update keeps the layout: the same number of keys, with or without a
    sink, the same kind of eviction (none, none of the kept keys, some) and as many title lines.
    ``titles_in_figure=False`` (the explorer): the title is not drawn but kept in ``.caption`` (lines
    the caller shows as text), as for :class:`ModelAttentionDrawing`.
    """

    def __init__(self, scores, sink_logit=None, keep=None, titles_in_figure=True):
        n, series, share, evicted, title = _softmax_series(scores, sink_logit, keep)
        self.titles_in_figure = bool(titles_in_figure)
        self.layout = self._layout(n, share, keep, evicted, title)
        self.figure = CourseFigure(figsize=STYLE["figsize"], dpi=STYLE["dpi"])
        self.ax = ax = self.figure.add_subplot()
        ax.set_axisbelow("line")  # the draw order the repainted layers follow, whatever the style says
        ax.grid(False)
        shown = title if self.titles_in_figure else ""
        self.bars, self.sink_bar, self.sink_label, self.marks = _draw_softmax(ax, n, series, share, evicted, shown)
        self.caption = [] if self.titles_in_figure else _caption([title])
        _fit(self.figure, True)
        self.legend = ax.get_legend()
        shown = {t.get_text(): t for t in self.legend.get_texts()}  # matplotlib puts the marks' entry first
        self.series_texts = [shown[_series_label(*item)] for item in series]
        # redrawn: the axes' content in its draw order (zorder): the bars and the sink bar, the tick marks
        # of x and the whole y axis (its range follows the top bar), the marks, the spines, the sink label,
        # the title, the legend; the x tick labels and x label stay
        self._layers = _LayeredPNG(
            self.figure,
            [rect for bars in self.bars for rect in bars]
            + [a for a in (self.sink_bar,) if a is not None]
            + [_TickMarks(ax.xaxis), ax.yaxis]
            + [a for a in (self.marks,) if a is not None]
            + [*ax.spines.values()]
            + [a for a in (self.sink_label,) if a is not None]
            + ([ax.title] if self.titles_in_figure else [])
            + [self.legend],
        )

    def _layout(self, n, share, keep, evicted, title):
        return (
            n,
            share is not None,
            keep is not None,
            len(evicted) > 0,
            _lines(title) if self.titles_in_figure else None,
        )

    def fits(self, scores, sink_logit=None, keep=None):
        """Whether ``update`` can show these (see the class docstring); bad arguments raise as in plot_softmax."""
        n, _, share, evicted, title = self._prepared(_softmax_series, scores, sink_logit, keep)
        return self._layout(n, share, keep, evicted, title) == self.layout

    def update(self, scores, sink_logit=None, keep=None):
        """Show other scores, sink logit or eviction in the same layout, see ``fits``."""
        n, series, share, evicted, title = self._prepared(_softmax_series, scores, sink_logit, keep)
        layout = self._layout(n, share, keep, evicted, title)
        if layout != self.layout:
            raise ValueError(
                f"update needs the layout (keys, sink, eviction, evicted keys, title lines) {self.layout}, "
                f"got {layout}; draw a new figure instead"
            )
        for bars, text, (label, w, stats) in zip(self.bars, self.series_texts, series, strict=True):
            for rect, height in zip(bars, w, strict=True):
                rect.set_height(height)
            text.set_text(_series_label(label, w, stats))
        if self.sink_bar is not None:
            self.sink_bar.set_height(share)
            self.sink_label.set_position((-1.1, share))
            self.sink_label.set_text(f"sink\n{share:.2f}")
        if self.marks is not None:
            self.marks.set_data(evicted, np.zeros(len(evicted)))
        self.ax.set_ylim(0, _softmax_top(series, share))
        self._show_title(title)
        return self


# --------------------------------------------------------------------------- receptive field


def _receptive_field_args(pattern, n, layers, query):
    """Checked arguments of plot_receptive_field and what it draws: (n, layers, query, first, colours, ticks, title)."""
    if isinstance(pattern, patterns.Pattern):
        n = int_arg("n", n, minimum=1)
    else:
        _, n = _mask_arg(pattern, n)
    layers = int_arg("layers", layers, minimum=1)
    query = n - 1 if query is None else _query_arg(query, n)
    first = costs.hop_matrix(pattern, n, layers)
    cmap = ListedColormap(_viridis_colours(layers + 1)).with_extremes(bad=STYLE["missing"])
    step = max(1, -(-(layers + 1) // 10))
    reached = int((first[query] >= 0).sum())
    hops = costs.hops(pattern, n, 0, query)
    connected = int((first >= 0).sum())
    lines = [
        _wrap(f"{_name(pattern)}, n={n}, {layers} layer{'s' if layers > 1 else ''}"),
        f"query {query} reaches {reached} of {n} keys; key 0 -> query {query}: "
        + ("never" if hops is None else f"{hops} hop{'s' if hops != 1 else ''}"),
        f"{connected:,} of {n * n:,} (q, k) pairs connected ({100 * connected / n**2:.1f}%); grey = not reached",
    ]
    return n, layers, query, np.ma.masked_less(first, 0), cmap, list(range(0, layers + 1, step)), "\n".join(lines)


def plot_receptive_field(pattern, n, layers, ax=None, *, query=None):
    """Heatmap of the first layer at which each key k reaches each query q through stacked layers.

    ``pattern``: a Pattern or an (n, n) bool mask. Each layer lets a query read the keys it
    attends to and itself (residual), so after L layers q has seen k if there is a path of at
    most L hops. Colour = first layer 0..layers (0 on the diagonal), grey = not reached within
    ``layers``. ``query`` (default n - 1, the last token) is outlined; the title gives how many
    keys it reaches and the fewest hops from key 0 to it (``costs.hops``, not limited by layers).
    """
    if ax is None:
        return ReceptiveFieldDrawing(pattern, n, layers, query=query).figure
    args = _receptive_field_args(pattern, n, layers, query)
    fig, ax, _ = _figure_and_axes(ax)  # checks ax
    _draw_receptive_field(ax, *args)
    return fig


def _draw_receptive_field(ax, n, layers, query, first, cmap, ticks, title):
    """Draw plot_receptive_field into ``ax``: returns (image, colour bar, query outline)."""
    fig = _root_figure(ax)
    im = ax.imshow(first, cmap=cmap, vmin=-0.5, vmax=layers + 0.5, interpolation="nearest")
    cbar = _colorbar(fig, im, ax, "first layer at which key k reaches query q (0 = itself)", ticks=ticks)
    outline = ax.add_patch(
        Rectangle((-0.5, query - 0.5), n, 1, fill=False, edgecolor=HIGHLIGHT, linewidth=1.5, clip_on=False)
    )
    _decorate(ax, title, "key position k (source)", "query position q (destination)", positions=n)
    return im, cbar, outline


class ReceptiveFieldDrawing(_RepaintedDrawing):
    """The standalone figure of :func:`plot_receptive_field` (``.figure``), kept to be redrawn for another
    pattern, number of layers or query over the same n (the receptive-field explorer): ``update`` resets
    the heatmap, its colours, the colour bar, the query's outline and the title in place, ``png()`` draws
    only those over a cached picture of the rest (a new figure per change took over 100 ms). ``fits``
    says whether an update keeps the layout: the same n and as many title lines.
    ``titles_in_figure=False`` (the explorer): the title is not drawn but kept in ``.caption`` (lines
    the caller shows as text), as for :class:`ModelAttentionDrawing`.
    """

    def __init__(self, pattern, n, layers, *, query=None, titles_in_figure=True):
        self.titles_in_figure = bool(titles_in_figure)
        *args, title = _receptive_field_args(pattern, n, layers, query)
        self.layout = self._layout(args[0], title)
        self.figure = CourseFigure(figsize=STYLE["figsize"], dpi=STYLE["dpi"])
        self.ax = ax = self.figure.add_subplot()
        ax.set_axisbelow("line")  # the draw order the repainted layers follow, whatever the style says
        ax.grid(False)
        shown = title if self.titles_in_figure else ""
        self.image, self.colorbar, self.outline = _draw_receptive_field(ax, *args, shown)
        self.caption = [] if self.titles_in_figure else _caption([title])
        _fit(self.figure, True, colorbar=True)
        # redrawn, in draw order: the heatmap's image, outline, tick marks, spines and title, then the
        # colour bar's axes (its colours and ticks follow the layers); the heatmap's tick labels stay
        self._layers = _LayeredPNG(
            self.figure,
            [self.image, self.outline, _TickMarks(ax.xaxis), _TickMarks(ax.yaxis), *ax.spines.values()]
            + ([ax.title] if self.titles_in_figure else [])
            + [self.colorbar.ax],
        )

    def _layout(self, n, title):
        return (n, _lines(title) if self.titles_in_figure else None)

    def fits(self, pattern, n, layers, *, query=None):
        """Whether ``update`` can show these: the same n (and number of title lines if the title is drawn)."""
        args = self._prepared(_receptive_field_args, pattern, n, layers, query)
        return self._layout(args[0], args[-1]) == self.layout

    def update(self, pattern, n, layers, *, query=None):
        """Show another pattern, number of layers or query in the same layout, see ``fits``."""
        n, layers, query, first, cmap, ticks, title = self._prepared(_receptive_field_args, pattern, n, layers, query)
        if self._layout(n, title) != self.layout:
            raise ValueError(
                f"update needs the layout (n, title lines) {self.layout}, got {self._layout(n, title)}; "
                "draw a new figure instead"
            )
        self.image.set_data(first)
        self.image.set_cmap(cmap)
        self.image.set_clim(-0.5, layers + 0.5)
        self.colorbar.update_normal(self.image)
        self.colorbar.set_ticks(ticks)
        self.outline.set_y(query - 0.5)
        self._show_title(title)
        return self


def _viridis_colours(count):
    return colormaps[STYLE["heatmap_cmap"]].resampled(max(count, 2))(np.linspace(0, 1, max(count, 2)))[:count]


# --------------------------------------------------------------------------- KV cache


POLICIES = costs.POLICIES  # ("dense", "window", "sinks"): the eviction policies drawn by default
ALL_POLICIES = POLICIES + ("native",)
DEFAULT_WINDOW = 4096  # Mistral-7B's sliding window; used when the preset has none


def _preset_arg(preset):
    if isinstance(preset, costs.ModelPreset):
        return preset
    if isinstance(preset, str):
        return costs.PRESETS[choice_arg("preset", preset, costs.PRESETS)]
    raise TypeError(f"preset must be a ModelPreset or one of {sorted(costs.PRESETS)}, got {preset!r}")


def _policies_arg(policies):
    if isinstance(policies, str):
        policies = (policies,)
    if not isinstance(policies, Sequence) or not policies:
        raise ValueError(f"policies must be a non-empty sequence drawn from {list(ALL_POLICIES)}, got {policies!r}")
    out = tuple(choice_arg("policies", p, ALL_POLICIES) for p in policies)
    if len(set(out)) != len(out):
        raise ValueError(f"policies must not repeat, got {list(out)}")
    return out


def _policy_label(policy, preset, window, sinks, sinks_window=None):
    native = f"the model's own window {preset.sliding_window:,}" if preset.sliding_window else "no window"
    recent = window if sinks_window is None else sinks_window
    return {
        "dense": "dense (every token)",
        "window": f"window (last {window:,})",
        "sinks": f"sinks ({sinks} + last {recent:,})",
        "native": f"native ({native})",
    }[policy]


def _policy_kwargs(policy, window, sinks, sinks_window=None):
    """The window/sinks arguments ``ModelPreset.kv_bytes`` accepts for a policy."""
    if policy == "native":
        return {}
    if policy == "sinks":
        return {"window": window if sinks_window is None else sinks_window, "sinks": sinks}
    return {"window": window, "sinks": 0}


def _stacks_arg(preset, stacks):
    """``{label: stack}`` checked against the preset; each value is (stack, needs_retraining)."""
    if stacks is None:
        return {}
    if not isinstance(stacks, Mapping):
        raise TypeError(f"stacks must be a dict {{label: stack}} (one entry per layer), got {stacks!r}")
    return {str(label): (stack, bool(preset.stack_problems(stack))) for label, stack in stacks.items()}


def plot_kv_budget(
    preset,
    max_tokens,
    policies=POLICIES,
    window=None,
    sinks=4,
    batch=1,
    bytes_per_element=2,
    budget_bytes=None,
    ax=None,
    sinks_window=None,
    stacks=None,
):
    """KV-cache size (GiB) against tokens in context for each cache policy, with a budget line.

    ``preset``: a ``costs.ModelPreset`` or a name in ``costs.PRESETS``. Bytes are
    ``preset.kv_bytes(t, policy, window, sinks, batch, bytes_per_element)`` for the whole batch:
    each layer keeps ``costs.kv_entries(policy, t, window, sinks)`` tokens (dense: all t; window:
    the last ``window``, default the preset's sliding window, else 4096; sinks: ``sinks`` first
    tokens plus the last ``sinks_window``, default ``window``), and a layer with its own sliding
    window never keeps more than it. ``"native"`` (not drawn by default) is the model as built
    (Gemma 2: half its layers local). ``bytes_per_element`` may be 4, 2, 1 or 0.5 (4-bit).
    ``stacks``: ``{label: stack}`` extra curves from ``preset.stack_kv_bytes`` (one entry per layer:
    None, W or (W, S)); a stack the released model cannot run is labelled "needs retraining".
    Tokens beyond the preset's ``max_context`` are shaded and the title says so.
    With ``budget_bytes``, a dashed line marks the budget and the title says how many sequences
    of ``max_tokens`` tokens fit, ``budget_bytes // bytes of one sequence``, per policy.
    """
    preset = _preset_arg(preset)
    max_tokens = int_arg("max_tokens", max_tokens, minimum=1)
    policies = _policies_arg(policies) if policies or not stacks else ()
    if window is None:
        window = preset.sliding_window or DEFAULT_WINDOW
    window = int_arg("window", window, minimum=1)
    sinks = int_arg("sinks", sinks, minimum=0)
    if sinks_window is not None:
        sinks_window = int_arg("sinks_window", sinks_window, minimum=1)
    batch = int_arg("batch", batch, minimum=1)
    bytes_per_element = costs.element_bytes(bytes_per_element)  # checks it: 4, 2, 1, 0.5 ...
    if budget_bytes is not None:
        budget_bytes = float_arg("budget_bytes", budget_bytes, strictly_positive=True)
    stacks = _stacks_arg(preset, stacks)

    # every curve is piecewise linear with kinks only where a window fills up: sample those exactly
    kinks = [
        window,
        window + sinks,
        (sinks_window or window) + sinks,
        preset.sliding_window or 1,
        preset.max_context or 1,
    ]
    kinks += [
        int(e) for stack, _ in stacks.values() for e in costs.layer_stack_entries(stack, max_tokens) if e < max_tokens
    ]  # a windowed layer stops growing at W + S
    tokens = np.unique(np.clip(np.r_[np.linspace(1, max_tokens, 64).round(), kinks], 1, max_tokens).astype(np.int64))
    fig, ax, own = _figure_and_axes(ax)
    curves = []  # (name, label, bytes at each t, bytes of one sequence at max_tokens, style)
    for policy in policies:
        kwargs = _policy_kwargs(policy, window, sinks, sinks_window)
        size = np.array(
            [
                preset.kv_bytes(int(t), policy, batch=batch, bytes_per_element=bytes_per_element, **kwargs)
                for t in tokens
            ],
            dtype=float,
        )
        one = preset.kv_bytes(max_tokens, policy, batch=1, bytes_per_element=bytes_per_element, **kwargs)
        # colour and dash both differ, and the window line is wider, so overlapping policies stay visible
        i = ALL_POLICIES.index(policy)
        style = dict(
            color=OKABE_ITO[[4, 2, 3, 5][i]],
            linestyle=["-", "-", "--", ":"][i],
            linewidth=STYLE["line_width"] * (1.8 if policy == "window" else 1),
        )
        curves.append((policy, _policy_label(policy, preset, window, sinks, sinks_window), size, one, style))
    for j, (label, (stack, retrain)) in enumerate(stacks.items()):
        size = np.array(
            [preset.stack_kv_bytes(stack, int(t), batch, bytes_per_element, retrained=True) for t in tokens],
            dtype=float,
        )
        one = preset.stack_kv_bytes(stack, max_tokens, 1, bytes_per_element, retrained=True)
        name = label + (" (needs retraining)" if retrain else "")
        style = dict(color=OKABE_ITO[[0, 1, 6][j % 3]], linestyle="-.", linewidth=STYLE["line_width"] * 1.4)
        curves.append((name, f"stack {name}: {costs.describe_stack(stack)}", size, one, style))
    summary, top = [], 0.0
    for name, label, size, one, style in curves:
        ax.plot(tokens, size / GIB, label=label, **style)
        top = max(top, size.max())
        line = f"{name}: {size[-1] / GIB:.2f} GiB"
        if budget_bytes is not None:
            fits = int(budget_bytes // one)
            line += f" ({fits:,} sequence{'s' if fits != 1 else ''} fit)"
        summary.append(line)
    if budget_bytes is not None:
        ax.axhline(
            budget_bytes / GIB,
            color=OKABE_ITO[7],
            linestyle="-.",
            linewidth=1.2,
            label=f"budget {budget_bytes / GIB:.1f} GiB",
        )
        top = max(top, budget_bytes)
    beyond = preset.beyond_context(max_tokens)
    if beyond:
        ax.axvspan(
            preset.max_context,
            max_tokens,
            color="0.85",
            zorder=0,
            label=f"beyond its trained context ({preset.max_context:,})",
        )
    ax.set_xlim(0, max_tokens)
    ax.set_ylim(0, 1.08 * top / GIB)
    ax.legend(loc="upper left", fontsize=STYLE["legend_size"])
    shape = (
        f"latent {preset.kv_latent_dim} per layer"
        if preset.kv_latent_dim
        else f"{preset.kv_heads} KV heads x {preset.head_dim} dims"
    )
    head = f"{preset.name} KV cache ({preset.layers} layers x {shape}, {bytes_per_element:g} B/element)"
    if beyond:  # the warning gets the line, each policy its own line below it
        title = [head, f"at {max_tokens:,} tokens, batch {batch} (beyond its {preset.max_context:,}-token context):"]
        title += summary
    else:
        title = [head, f"at {max_tokens:,} tokens, batch {batch}: " + "; ".join(summary[:1])] + summary[1:]
    _decorate(ax, "\n".join(title), "tokens in context", "KV cache (GiB, whole batch)")
    _fit(fig, own)
    return fig


class CacheStepDrawing(_RepaintedDrawing):
    """The figure of :func:`plot_cache_step` (``.figure``), kept to be redrawn for another step,
    layer or head of the same run (the cache explorer's slider and Play button): ``update`` repaints
    the slots and moves the step's marks in place, ``png()`` draws only those over a cached picture
    of the rest (a full redraw would take most of a 100 ms frame).

    Arguments as :func:`plot_cache_step`; ``update`` takes the ones a step, layer or head changes,
    for the same number of slots and steps and a title with as many lines.

    ``titles_in_figure=False`` (the explorer): the three titles (the given one, the weight curve's and
    the perplexity curves') are not drawn but kept in ``.caption``, a list of lines the caller shows as
    text beside the picture, and the title's lines no longer constrain an update. Drawing those texts
    took over half of a redraw.
    """

    def __init__(
        self,
        slot_tokens,
        slot_positions,
        slot_weights,
        step,
        first_weight,
        policy_ppl,
        reference_ppl,
        sinks=0,
        current_slot=None,
        evicted_at=None,
        trained_at=None,
        policy="policy",
        reference="recompute",
        title="",
        titles_in_figure=True,
    ):
        weights = self._slot_weights(slot_tokens, slot_positions, slot_weights)
        curves = [
            _finite_array(name, x, 1, "one value per step")
            for name, x in (
                ("first_weight", first_weight),
                ("policy_ppl", policy_ppl),
                ("reference_ppl", reference_ppl),
            )
        ]
        self.steps = steps = len(curves[0])
        if any(len(c) != steps for c in curves):
            raise ValueError(
                f"first_weight, policy_ppl and reference_ppl must have one value per step, "
                f"got lengths {[len(c) for c in curves]}"
            )
        self.slots = C = len(weights)
        self.sinks = int_arg("sinks", sinks, minimum=0, maximum=C)
        self.per_row = per_row = 16 if C <= 64 else 32
        rows = -(-C // per_row)
        self.titles_in_figure = bool(titles_in_figure)
        self.title_lines = _lines(title) if self.titles_in_figure else None
        self.caption, self._captions = [], {}
        self.ppl, self.reference_ppl = curves[1], curves[2]
        self.evicted_at, self.trained_at, self.policy, self.reference = evicted_at, trained_at, policy, reference

        # fixed layout in inches, top to bottom: title, slots, two curves (with their titles if drawn), x label
        if self.titles_in_figure:
            title_h = 0.15 + _text_height(self.title_lines, STYLE["title_size"]) if title else 0.2
            gap = 0.62
        else:
            title_h, gap = 0.1, 0.2
        slot_h = rows * (0.5 if per_row == 16 else 0.26)
        curve_h, bottom = 1.1, 0.5
        height = title_h + slot_h + 2 * (gap + curve_h) + bottom
        y_slots = 1 - (title_h + slot_h) / height
        y_w = (bottom + curve_h + gap) / height
        self.figure, (ax, cax, ax_w, ax_p) = _panel_figure(
            8.4,
            height,
            [
                (0.07, y_slots, 0.83, slot_h / height),
                (0.915, y_slots, 0.015, slot_h / height),
                (0.07, y_w, 0.88, curve_h / height),
                (0.07, bottom / height, 0.88, curve_h / height),
            ],
        )
        self.ax, self.ax_w, self.ax_p = ax, ax_w, ax_p
        cmap = colormaps[STYLE["heatmap_cmap"]].with_extremes(bad=STYLE["missing"])
        self.image = ax.imshow(
            np.full((rows, per_row), np.nan), cmap=cmap, vmin=0, vmax=1.0, interpolation="nearest", aspect="auto"
        )
        self.colorbar = self.figure.colorbar(self.image, cax=cax, ticks=[0])
        self.colorbar.set_label("weight", fontsize=STYLE["label_size"])
        self.colorbar.ax.tick_params(labelsize=STYLE["tick_size"])
        ax.set_xticks([])
        ax.set_yticks([])
        # the slots' labels (up to 64 slots) and outlines (the sinks, then the newest slot), made once and
        # restyled by update, in slot order (making them anew took a tenth of a redraw)
        self.labels = [
            ax.text(i % per_row, i // per_row, "", ha="center", va="center", fontsize=STYLE["tick_size"] - 1.5)
            for i in range(C if C <= 64 else 0)
        ]
        self.outlines = [
            ax.add_patch(Rectangle((i % per_row - 0.48, i // per_row - 0.48), 0.96, 0.96, fill=False, linewidth=1.6))
            for i in range(self.sinks + 1)
        ]
        x = np.arange(steps)
        (self.first_line,) = ax_w.plot(x, curves[0], color=OKABE_ITO[3], linewidth=STYLE["line_width"] * 0.7)
        (self.marker,) = ax_w.plot([0], [curves[0][0]], "o", color=HIGHLIGHT)
        ax_w.set_ylim(0, 1.02)
        ax_w.set_yticks([0, 0.5, 1])
        ax_w.tick_params(labelbottom=False)  # same steps as the perplexity axes below (few labels draw fast)
        ax_p.plot(x, curves[1], color=OKABE_ITO[2], linewidth=STYLE["line_width"], label=policy)
        ax_p.plot(
            x, curves[2], color=OKABE_ITO[7], linestyle="--", linewidth=STYLE["line_width"] * 0.7, label=reference
        )
        low, high = float(min(curves[1].min(), curves[2].min())), float(max(curves[1].max(), curves[2].max()))
        ax_p.set_ylim(max(0.0, low - 0.1 * (high - low) - 0.05), high + 0.1 * (high - low) + 0.05)
        ax_p.yaxis.set_major_locator(MaxNLocator(nbins=4))
        self.step_lines, marks = [], []
        for a in (ax_w, ax_p):
            self.step_lines.append(a.axvline(0, color="0.3", linewidth=1))
            if evicted_at is not None:
                marks.append(a.axvline(evicted_at, color=HIGHLIGHT, linestyle=":", linewidth=1.4))
            if trained_at is not None:
                marks.append(a.axvline(trained_at, color=OKABE_ITO[5], linestyle=":", linewidth=1.4))
            a.set_xlim(-0.5, steps - 0.5)
            a.tick_params(labelsize=STYLE["tick_size"])
        ax_w.set_ylabel("weight", fontsize=STYLE["label_size"])
        ax_p.set_xlabel("decoding step t (token t predicts token t + 1)", fontsize=STYLE["label_size"])
        ax_p.set_ylabel("perplexity", fontsize=STYLE["label_size"])
        self.update(slot_tokens, slot_positions, slot_weights, step, curves[0], current_slot, title)

        # what an update changes, in draw order: the slot panel and its colour bar, then in each curve
        # panel what is drawn after its ticks (lines, spines, title); the perplexity curves stay
        def tail(a, lines):
            return [*lines, *[m for m in marks if m.axes is a], *a.spines.values()] + self._titles(a)

        self._layers = _LayeredPNG(
            self.figure,
            [
                self.image,  # the slot panel draws no ticks: its image, outlines, spines, labels and title
                *self.outlines,
                *ax.spines.values(),
                *self.labels,
                *self._titles(ax),
                cax,
                *tail(ax_w, [self.first_line, self.marker, self.step_lines[0]]),
                *tail(ax_p, [self.step_lines[1]]),
            ],
        )

    @staticmethod
    def _slot_weights(slot_tokens, slot_positions, slot_weights):
        weights = np.asarray(slot_weights, dtype=float)
        positions = np.asarray(slot_positions)
        if weights.ndim != 1 or len(weights) == 0 or len(positions) != len(weights) or len(slot_tokens) != len(weights):
            raise ValueError(
                "slot_tokens, slot_positions and slot_weights must be 1-D, non-empty and of one "
                f"length, got {len(slot_tokens)}, {len(positions)}, {len(weights)}"
            )
        return weights

    def update(self, slot_tokens, slot_positions, slot_weights, step, first_weight, current_slot=None, title=""):
        """Show another step (or layer, head) of the same run: new slots, weight curve, step and title."""
        weights = self._slot_weights(slot_tokens, slot_positions, slot_weights)
        positions = np.asarray(slot_positions)
        first = _finite_array("first_weight", first_weight, 1, "one value per step")
        lines = _lines(title) if self.titles_in_figure else None
        if len(weights) != self.slots or len(first) != self.steps or lines != self.title_lines:
            titled = self.titles_in_figure
            raise ValueError(
                f"update needs {self.slots} slots, {self.steps} steps"
                + (f" and a title of {self.title_lines} line(s)" if titled else "")
                + f" (the figure's layout), got {len(weights)}, {len(first)}"
                + (f" and {lines}" if titled else "")
                + "; draw a new figure instead"
            )
        step = int_arg("step", step, minimum=0, maximum=self.steps - 1)
        C, per_row, ax = self.slots, self.per_row, self.ax
        grid = np.full(self.image.get_array().size, np.nan)
        grid[:C] = weights
        vmax = float(np.nanmax(weights)) if np.isfinite(weights).any() else 1.0
        self.image.set_data(grid.reshape(-1, per_row))
        self.image.set_clim(0, vmax or 1.0)
        self.colorbar.set_ticks([0, np.floor(100 * vmax) / 100] if vmax >= 0.01 else [0])
        for i, label in enumerate(self.labels):
            shown = bool(positions[i] >= 0)
            dark = shown and np.isfinite(weights[i]) and weights[i] > 0.6 * vmax
            label.set_text(f"{slot_tokens[i]}\np{positions[i]}" if shown else "")
            label.set_color("black" if dark else "white")
            label.set_visible(shown)
        # sink slots in orange, the newest slot in vermillion (a sink slot while the sinks fill)
        for i, outline in enumerate(self.outlines[:-1]):
            outline.set_edgecolor(HIGHLIGHT if i == current_slot else OKABE_ITO[0])
        newest = self.outlines[-1]
        newest.set_visible(current_slot is not None and self.sinks <= current_slot < C)
        if newest.get_visible():
            r, c = divmod(current_slot, per_row)
            newest.set_xy((c - 0.48, r - 0.48))
            newest.set_edgecolor(HIGHLIGHT)
        self._title(ax, title, STYLE["title_size"])
        self.first_line.set_ydata(first)
        self.marker.set_data([step], [first[step]])
        for line in self.step_lines:
            line.set_xdata([step, step])
        ppl, ref = self.ppl[step], self.reference_ppl[step]
        marks = [f"{self.policy} (solid) {ppl:.3f}, {self.reference} (dashed) {ref:.3f}", "grey line: this step"]
        if self.evicted_at is not None:
            marks.append(f"dotted vermillion: first eviction (step {self.evicted_at})")
        if self.trained_at is not None:
            marks.append(f"dotted purple: past the training length (step {self.trained_at})")
        self._title(self.ax_w, f"weight of each step's query on the entry at position 0 (now {first[step]:.3f})")
        # the title names the lines (a legend would cost a fifth of the drawing time)
        self._title(
            self.ax_p,
            f"running perplexity after step {step}: " + "\n".join(["; ".join(marks[:1]), "; ".join(marks[1:])]).strip(),
        )
        if not self.titles_in_figure:  # the panels named, as their titles would place them
            panels = [(ax, ""), (self.ax_w, "middle: "), (self.ax_p, "bottom: ")]
            self.caption = _caption([name + self._captions[a] for a, name in panels if self._captions[a]])
        return self

    def _title(self, ax, text, size=None):
        """A panel's title: drawn, or kept for ``.caption`` (``titles_in_figure=False``)."""
        if self.titles_in_figure:
            ax.set_title(text, fontsize=size or STYLE["label_size"], y=1.0)
        else:
            self._captions[ax] = text

    def _titles(self, ax):
        """The title artist of ``ax`` if titles are drawn: a layer of the repainted picture."""
        return [ax.title] if self.titles_in_figure else []


def plot_cache_step(
    slot_tokens,
    slot_positions,
    slot_weights,
    step,
    first_weight,
    policy_ppl,
    reference_ppl,
    sinks=0,
    current_slot=None,
    evicted_at=None,
    trained_at=None,
    policy="policy",
    reference="recompute",
    title="",
):
    """One decoding step with a KV cache: the cache's slots, then two curves over all steps.

    Top: the ``C`` slots of the cache as stored (``slot_*`` arrays of length C, in slot order; the
    first ``sinks`` are sink slots, outlined orange; ``current_slot`` holds the token just added,
    outlined vermillion), coloured by the current query's attention weight on each slot
    (``slot_weights``, NaN for an empty slot, painted grey); up to 64 slots each shows its token
    (``slot_tokens``, strings) and its position id (``slot_positions``, -1 for empty).
    Middle: ``first_weight[t]``, the weight step t's query puts on the entry at position 0.
    Bottom: running perplexities ``policy_ppl`` and ``reference_ppl`` (label ``policy``/``reference``).
    A vertical line marks ``step``; dotted ones ``evicted_at``, the first step that evicted an entry,
    and ``trained_at``, the first step whose query sits at a position beyond the training length.
    Always a standalone figure of four panels (no ``ax``), 8.4 inches wide.
    """
    return CacheStepDrawing(
        slot_tokens,
        slot_positions,
        slot_weights,
        step,
        first_weight,
        policy_ppl,
        reference_ppl,
        sinks,
        current_slot,
        evicted_at,
        trained_at,
        policy,
        reference,
        title,
    ).figure


# --------------------------------------------------------------------------- scaling


def _scaling_rows(table):
    """Rows (dicts) of a scaling table given as a list of dicts or a dict of equal-length lists."""
    if isinstance(table, Mapping):
        missing = [key for key in ("n", "method", "seconds") if key not in table]
        if missing:
            raise ValueError(f"table must have the columns n, method, seconds (peak_bytes optional); missing {missing}")
        lengths = {key: len(col) for key, col in table.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"table's columns must all have the same length, got {lengths}")
        keys = list(table)
        rows = [dict(zip(keys, values, strict=True)) for values in zip(*(table[k] for k in keys), strict=True)]
    elif isinstance(table, Sequence) and not isinstance(table, str):
        rows = list(table)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(f"table[{i}] must be a dict with keys n, method, seconds, got {type(row).__name__}")
    else:
        raise TypeError(f"table must be a list of dicts or a dict of lists, got {type(table).__name__}")
    if not rows:
        raise ValueError("table must have at least one row")
    out = []
    for i, row in enumerate(rows):
        for key in ("n", "method", "seconds"):
            if key not in row:
                raise ValueError(f"table[{i}] is missing the key {key!r} (needs n, method, seconds)")
        method = row["method"]
        if not isinstance(method, str):
            raise TypeError(f"table[{i}]['method'] must be a string, got {method!r}")
        peak = row.get("peak_bytes")
        if peak is not None and not (isinstance(peak, numbers.Real) and np.isnan(peak)):
            peak = float_arg(f"table[{i}]['peak_bytes']", peak, strictly_positive=True)
        else:
            peak = None
        out.append(
            {
                "n": int_arg(f"table[{i}]['n']", row["n"], minimum=1),
                "method": method,
                "seconds": float_arg(f"table[{i}]['seconds']", row["seconds"], strictly_positive=True),
                "peak_bytes": peak,
            }
        )
    return out


def plot_scaling(table, ax=None):
    """Time and peak memory against sequence length N, log-log, one line per method.

    ``table`` (the format ``benchmarks/`` scripts write), either
      - a list of dicts: ``[{"n": 1024, "method": "dense", "seconds": 0.012, "peak_bytes": 4.2e6}, ...]``
      - or a dict of equal-length lists: ``{"n": [...], "method": [...], "seconds": [...], "peak_bytes": [...]}``
    ``n`` (int >= 1, tokens), ``method`` (str), ``seconds`` (> 0, time per call) are required;
    ``peak_bytes`` (> 0) is optional per row (missing, None or NaN = not measured); other keys
    are ignored. Repeated (method, n) rows are combined by their median. On log axes a slope
    of 1 is linear in N and a slope of 2 quadratic.

    ``ax``: None, or a pair of Axes (time, memory). Returns the Figure.
    """
    rows = _scaling_rows(table)
    if ax is None:
        fig, own = CourseFigure(figsize=(10, 4.2), dpi=STYLE["dpi"]), True
        ax_time, ax_mem = fig.subplots(1, 2)
    else:
        pair = list(np.ravel(ax)) if isinstance(ax, np.ndarray) else ax  # fig.subplots(1, 2) gives an array
        if not (isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(a, Axes) for a in pair)):
            raise TypeError("ax must be None or a pair of matplotlib Axes (time, memory)")
        ax_time, ax_mem = pair
        fig, own = _root_figure(ax_time), False
    methods = list(dict.fromkeys(row["method"] for row in rows))
    markers = "osD^vP*X"
    any_memory = False
    for i, method in enumerate(methods):
        mine = [r for r in rows if r["method"] == method]
        ns = sorted({r["n"] for r in mine})
        secs = [np.median([r["seconds"] for r in mine if r["n"] == n]) for n in ns]
        style = dict(
            color=OKABE_ITO[i % len(OKABE_ITO)],
            marker=markers[i % len(markers)],
            linewidth=STYLE["line_width"],
            label=method,
        )
        ax_time.plot(ns, secs, **style)
        mem = [
            (n, np.median([r["peak_bytes"] for r in mine if r["n"] == n and r["peak_bytes"] is not None]))
            for n in ns
            if any(r["n"] == n and r["peak_bytes"] is not None for r in mine)
        ]
        if mem:
            any_memory = True
            ax_mem.plot([m[0] for m in mem], [m[1] / MIB for m in mem], **style)
    for a in (ax_time, ax_mem):
        a.set_xscale("log", base=2)
        a.grid(True, which="major", color="0.9")
    ax_time.set_yscale("log")
    ax_time.legend(fontsize=STYLE["legend_size"])
    _decorate(
        ax_time, f"time per call vs N ({len(methods)} methods)", "sequence length N (tokens)", "time per call (s)"
    )
    if any_memory:
        ax_mem.set_yscale("log")
        ax_mem.legend(fontsize=STYLE["legend_size"])
    else:
        ax_mem.text(0.5, 0.5, "no peak memory measured", transform=ax_mem.transAxes, ha="center")
    _decorate(ax_mem, "peak memory vs N", "sequence length N (tokens)", "peak memory (MiB)")
    _fit(fig, own, wspace=0.3)
    return fig
