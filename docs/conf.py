"""Sphinx configuration of the course website (built by tools/build_site.py; see its docstring).

The executed, committed notebooks are rendered as they are (myst-nb, no execution). The
explorers' static PNGs stand in for live widgets, every figure gets its alt text from the
notebook output that drew it, MathJax is served from the site itself, and each page has
launch buttons to Colab and Binder built from the repository setting in pyproject.toml.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

from docutils import nodes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import notebook_headers  # noqa: E402  (the one place the repository URL and version are read)

SETTINGS = notebook_headers.read_settings(REPO)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

project = "globattn-lite"
author = "the globattn-lite authors"
copyright = "the globattn-lite authors (MIT licence)"
version = release = SETTINGS.version

extensions = ["myst_nb", "sphinx-mathjax-offline"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
nb_execution_mode = "off"  # the committed outputs are the course's, from a real run
nb_ipywidgets_js = {}  # no widget manager from a CDN: the static PNG is shown
nb_mime_priority_overrides = [("html", WIDGET_VIEW, None)]
myst_enable_extensions = ["dollarmath", "amsmath"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = f"globattn-lite {SETTINGS.version}"
html_copy_source = False
html_show_sourcelink = False
html_context = {"default_mode": "light"}  # an unset mode makes the theme log a console error
html_theme_options = {
    "repository_url": SETTINGS.repository,
    "repository_branch": SETTINGS.branch,
    "path_to_docs": "",
    "use_repository_button": True,
    "use_issues_button": True,
    "use_download_button": False,  # the sources are not copied: the repository button has them
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
}


def figure_alt_texts(srcdir: Path) -> dict[str, str]:
    """sha256 of each PNG output -> its alt text: the ``alt`` the figure put in the output's
    metadata (globattn_lite.plot.alt_text), or for an explorer its text (title and live counts)."""
    alts = {}
    for path in sorted(srcdir.rglob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                png = data.get("image/png")
                if png is None:
                    continue
                alt = output.get("metadata", {}).get("image/png", {}).get("alt")
                if not alt and WIDGET_VIEW in data:
                    alt = "".join(data.get("text/plain", ""))
                if alt:
                    digest = hashlib.sha256(base64.b64decode("".join(png))).hexdigest()
                    alts[digest] = " ".join(alt.split())
    return alts


def _load_alt_texts(app):
    app.env.figure_alt_texts = figure_alt_texts(Path(app.srcdir))


def _apply_alt_texts(app, doctree, docname):
    """myst-nb names each output image by the sha256 of its bytes: look its alt text up."""
    alts = getattr(app.env, "figure_alt_texts", {})
    for image in doctree.findall(nodes.image):
        alt = alts.get(Path(image["uri"]).stem)
        if alt:
            image["alt"] = alt


def setup(app):
    app.connect("builder-inited", _load_alt_texts)
    app.connect("doctree-resolved", _apply_alt_texts)
