"""Drive a real JupyterLab in the system Chromium through playwright-python.

Used by tests/test_browser.py; also runnable by hand on any widget notebook:

    .venv/bin/python tools/labdriver.py notebooks/some_lesson.ipynb

The recipe: Debian's /usr/bin/chromium (never `playwright install`: it downloads a browser), a
persistent context in a fresh profile dir (Playwright refuses `--user-data-dir` as an argument),
JupyterLab on 127.0.0.1 with a random token and isolated config/settings/runtime dirs,
`notebook:run-all-cells` run through `window.jupyterapp` (needs
`--LabApp.expose_app_in_browser=True`; JupyterLab 4 has no default shortcut for it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = Path("/usr/bin/chromium")
# Chromium flags that keep a headless run working on a closed network, as root, without a GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Tall enough that a whole explorer cell fits, for element screenshots that are not clipped.
VIEWPORT = {"width": 1280, "height": 1400}
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
OVERRIDES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
KERNEL_SETTINGS = "@jupyterlab/apputils-extension:kernels-settings"
# User settings written into the isolated settings dir: no news/update toast over the page.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def read_overrides() -> dict:
    """The JupyterLab settings override the package installs; AssertionError if it is missing."""
    assert OVERRIDES.is_file(), (
        f"{OVERRIDES} is missing: install the package into this environment "
        "(it ships jupyter-config/overrides.json there)"
    )
    return json.loads(OVERRIDES.read_text())


def free_port() -> int:
    """A TCP port that was free a moment ago (the server is told not to retry others)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`jupyter lab` serving `root_dir`, with every Jupyter dir isolated under `work_dir`.

    start() waits on /api/status; stop() ends the whole process group by its id (SIGTERM, then
    SIGKILL) and is safe to call twice or after a failed start.
    """

    def __init__(self, root_dir: Path, work_dir: Path, log_path: Path):
        self.root_dir = Path(root_dir)
        self.work_dir = Path(work_dir)
        self.log_path = Path(log_path)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _environment(self) -> dict:
        dirs = {
            name: self.work_dir / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for rel, value in USER_SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ)
        # A learner's kernel has no MPLBACKEND: let ipykernel choose its inline backend.
        env.pop("MPLBACKEND", None)
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            IPYTHONDIR=str(dirs["ipython"]),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        return cmd

    def start(self, timeout: float = 60.0) -> LabServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.root_dir,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() can end all of it
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status = self.get_json("/api/status")
                if "started" in status:
                    return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def get_json(self, path: str) -> dict:
        req = urllib.request.Request(self.base_url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def lab_url(self, notebook: str) -> str:
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # The server's own SIGTERM handler shuts its kernels down; SIGKILL if it hangs.
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue


def launch_chromium(playwright, profile_dir: Path):
    """A persistent Chromium context in a fresh profile dir (Playwright refuses --user-data-dir)."""
    return playwright.chromium.launch_persistent_context(
        str(profile_dir),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
        timeout=60_000,
    )


# Page-side helpers, installed once as window.__gl.  Cells are addressed by their index in the
# notebook; every cell node is tagged data-gl-cell=<index> so Playwright locators can find it.
_PAGE_HELPERS = r"""
(widgetMime) => {
  const panelFor = (path) => {
    for (const w of window.jupyterapp.shell.widgets('main')) {
      if (w.context && w.context.path === path) return w;
    }
    return null;
  };
  const fnv = (s) => {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }
    return (h >>> 0).toString(16) + ':' + s.length;
  };
  const cellNode = (path, i) => {
    const cell = panelFor(path).content.widgets[i];
    cell.node.dataset.glCell = String(i);
    return cell.node;
  };
  // The top-level view of each widget output (ipywidgets' renderer sets no data-mime-type).
  const VIEW_ROOT = '.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output > .jupyter-widgets';
  const outputsOf = (node) => node.querySelector('.jp-Cell-outputWrapper') || node;
  // How much of an image is drawn: pixels that differ from its corner (background) colour, as a
  // fraction of all pixels (ink) and the fractions of rows and columns holding any of them
  // (coverage).  A blank image has 0; a figure that lost its axes keeps ink in a thin title band.
  const inkOf = (img) => {
    const w = Math.min(img.naturalWidth, 400);
    const h = Math.max(1, Math.round(img.naturalHeight * w / img.naturalWidth));
    const canvas = document.createElement('canvas');
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(img, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    const bg = [d[0], d[1], d[2], d[3]];
    const rows = new Uint8Array(h), cols = new Uint8Array(w);
    let differ = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = 4 * (y * w + x);
        if (Math.abs(d[p] - bg[0]) > 24 || Math.abs(d[p + 1] - bg[1]) > 24 ||
            Math.abs(d[p + 2] - bg[2]) > 24 || Math.abs(d[p + 3] - bg[3]) > 24) {
          differ++; rows[y] = 1; cols[x] = 1;
        }
      }
    }
    const sum = (a) => a.reduce((s, v) => s + v, 0);
    return { ink: differ / (w * h), rows: sum(rows) / h, cols: sum(cols) / w };
  };
  window.__gl = {
    ready: async (path) => {
      const panel = panelFor(path);
      if (!panel) return false;
      await panel.context.ready;
      await panel.sessionContext.ready;
      const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
      if (!kernel) return false;
      await kernel.info;
      window.jupyterapp.shell.activateById(panel.id);
      return true;
    },
    runAll: (path) => {
      window.__glRun = { done: false };
      window.jupyterapp.shell.activateById(panelFor(path).id);
      window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        (ok) => { window.__glRun = { done: true, ok: ok !== false }; },
        (err) => { window.__glRun = { done: true, ok: false, error: String(err) }; });
    },
    runDone: () => window.__glRun && window.__glRun.done,
    // Summary of the notebook model: which code cells ran, which hold widget views, errors.
    cells: (path) => {
      const panel = panelFor(path);
      return panel.content.widgets.map((cell, i) => {
        cellNode(path, i);
        const model = cell.model;
        if (model.type !== 'code') return { index: i, type: model.type };
        const outputs = model.outputs.toJSON();
        return {
          index: i, type: 'code',
          source: model.sharedModel.getSource(),
          executionCount: model.executionCount,
          widgetViews: outputs.filter((o) => o.data && o.data[widgetMime]).length,
          errors: outputs.filter((o) => o.output_type === 'error')
                         .map((o) => `${o.ename}: ${o.evalue}`),
          stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr')
                         .map((o) => [].concat(o.text).join('')),
        };
      });
    },
    viewCount: (path, i) => cellNode(path, i).querySelectorAll(VIEW_ROOT).length,
    // Cheap signature of the images in a cell, for waiting on a change.
    imageSignature: (path, i) => {
      const imgs = [...outputsOf(cellNode(path, i)).querySelectorAll('img')];
      if (imgs.length === 0) return '';
      if (!imgs.every((im) => im.complete && im.naturalWidth > 0)) return '';
      return imgs.map((im) => fnv(im.src)).join('|');
    },
    // Does a widget image show exactly the static image/png the kernel put next to the widget
    // view (the explorer's initial figure)?  Differs when merely showing the widget changed it.
    // An explorer with a caption stores it drawn above its figure (Explorer.static_png): then the
    // widget image must equal the fallback's bottom rows, pixel for pixel.
    matchesFallback: async (path, i) => {
      const cell = panelFor(path).content.widgets[i];
      const bundle = cell.model.outputs.toJSON().find((o) => o.data && o.data[widgetMime]);
      const png = bundle && bundle.data['image/png'];
      if (!png) return { fallback: false, matches: false };
      const expected = (Array.isArray(png) ? png.join('') : png).replace(/\s/g, '');
      for (const im of outputsOf(cellNode(path, i)).querySelectorAll('img')) {
        let b64;
        if (im.src.startsWith('data:')) {
          b64 = im.src.slice(im.src.indexOf(',') + 1);
        } else {
          const bytes = new Uint8Array(await (await fetch(im.src)).arrayBuffer());
          let bin = '';
          for (let k = 0; k < bytes.length; k += 0x8000) {
            bin += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
          }
          b64 = btoa(bin);
        }
        if (b64 === expected) return { fallback: true, matches: true, captioned: false };
      }
      const load = (src) => new Promise((resolve, reject) => {
        const im = new Image();
        im.onload = () => resolve(im);
        im.onerror = reject;
        im.src = src;
      });
      const pixels = (im) => {
        const canvas = document.createElement('canvas');
        canvas.width = im.naturalWidth;
        canvas.height = im.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(im, 0, 0);
        return context.getImageData(0, 0, canvas.width, canvas.height);
      };
      const whole = pixels(await load('data:image/png;base64,' + expected));
      for (const im of outputsOf(cellNode(path, i)).querySelectorAll('img')) {
        const live = pixels(await load(im.src));
        if (live.width !== whole.width || live.height >= whole.height) continue;
        const bottom = whole.data.subarray((whole.height - live.height) * whole.width * 4);
        if (bottom.every((v, k) => v === live.data[k])) return { fallback: true, matches: true, captioned: true };
      }
      return { fallback: true, matches: false };
    },
    // Everything a test asserts on about one cell's rendered widget.
    state: async (path, i) => {
      const node = cellNode(path, i);
      const out = outputsOf(node);
      const text = out.textContent || '';
      const roots = [...node.querySelectorAll(VIEW_ROOT)];
      const images = [];
      for (const im of out.querySelectorAll('img')) {
        let decoded = true;
        try { await im.decode(); } catch (e) { decoded = false; }
        const r = im.getBoundingClientRect();
        images.push({
          signature: fnv(im.src), kind: im.src.split(':')[0],
          decoded, complete: im.complete,
          naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight,
          width: r.width, height: r.height,
          drawn: decoded && im.naturalWidth > 0 ? inkOf(im) : { ink: 0, rows: 0, cols: 0 },
        });
      }
      const sliders = [...out.querySelectorAll('.noUi-handle')].map((h, j) => {
        const box = h.closest('.widget-slider, .jupyter-widgets');
        const label = box && box.querySelector('.widget-label');
        const readout = box && box.querySelector('.widget-readout');
        return {
          handle: j,
          label: label ? label.textContent.trim() : '',
          readout: readout ? (readout.value || readout.textContent || '').trim() : '',
          now: parseFloat(h.getAttribute('aria-valuenow')),
          min: parseFloat(h.getAttribute('aria-valuemin')),
          max: parseFloat(h.getAttribute('aria-valuemax')),
          disabled: !!(box && box.querySelector('[disabled]')) || h.closest('[disabled]') !== null,
        };
      });
      return {
        index: i,
        errorDisplaying: text.includes('Error displaying widget'),
        loading: text.includes('Loading widget'),
        text: text.slice(0, 4000),
        views: roots.length,
        roots: roots.map((r) => {
          if (!r) return null;
          const b = r.getBoundingClientRect();
          return { width: b.width, height: b.height, attached: r.isConnected };
        }),
        images, sliders,
      };
    },
  };
  return true;
}
"""


@dataclass
class Explorer:
    """One code cell whose output is a widget view, as found in the page."""

    index: int
    name: str
    shots: list[Path] = field(default_factory=list)


def explorer_name(source: str, index: int) -> str:
    """A readable name for a widget cell: the last call in its source (`mask_explorer()`)."""
    calls = re.findall(r"(\w+)\s*\(", source)
    return calls[-1] if calls else f"cell{index}"


class NotebookPage:
    """A JupyterLab page with one notebook open, and the waits/assertions the tests need."""

    def __init__(self, page, server: LabServer, notebook: str):
        self.page = page
        self.server = server
        self.notebook = notebook
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, timeout_ms: int = 60_000) -> None:
        page = self.page
        page.goto(self.server.lab_url(self.notebook), wait_until="domcontentloaded", timeout=timeout_ms)
        page.wait_for_function(
            "p => !!(window.jupyterapp && [...window.jupyterapp.shell.widgets('main')]"
            ".some(w => w.context && w.context.path === p))",
            arg=self.notebook,
            timeout=timeout_ms,
        )
        page.evaluate(_PAGE_HELPERS, WIDGET_MIME)
        assert page.evaluate("p => window.__gl.ready(p)", self.notebook), "no kernel for the notebook"

    def run_all(self, timeout_ms: int = 90_000) -> dict:
        self.page.evaluate("p => window.__gl.runAll(p)", self.notebook)
        self.page.wait_for_function("() => window.__gl.runDone()", timeout=timeout_ms, polling=200)
        return self.page.evaluate("() => window.__glRun")

    def cells(self) -> list[dict]:
        return self.page.evaluate("p => window.__gl.cells(p)", self.notebook)

    def state(self, index: int) -> dict:
        self.cell(index).scroll_into_view_if_needed()
        return self.page.evaluate("([p, i]) => window.__gl.state(p, i)", [self.notebook, index])

    def screenshot_cell(self, index: int, path: Path) -> Path:
        """Scroll the cell to the top of the notebook and save a picture of it."""
        self.page.evaluate(
            "i => document.querySelector(`[data-gl-cell=\"${i}\"]`).scrollIntoView({block: 'start'})", index
        )
        self.cell(index).screenshot(path=str(path))
        return path

    def cell(self, index: int):
        return self.page.locator(f'[data-gl-cell="{index}"]')

    def matches_fallback(self, index: int) -> dict:
        return self.page.evaluate("([p, i]) => window.__gl.matchesFallback(p, i)", [self.notebook, index])

    def image_signature(self, index: int) -> str:
        return self.page.evaluate("([p, i]) => window.__gl.imageSignature(p, i)", [self.notebook, index])

    def wait_rendered(self, index: int, timeout_ms: int = 30_000) -> None:
        """Wait until the cell's widget view is attached and its images are loaded."""
        self.page.wait_for_function(
            """([p, i]) => {
                 const cell = document.querySelector(`[data-gl-cell="${i}"]`);
                 if (!cell) return false;
                 const text = cell.textContent;
                 if (text.includes('Error displaying widget')) return true;  // reported by state()
                 if (text.includes('Loading widget')) return false;
                 return window.__gl.viewCount(p, i) > 0 && window.__gl.imageSignature(p, i) !== '';
               }""",
            arg=[self.notebook, index],
            timeout=timeout_ms,
            polling=100,
        )

    def nudge_slider(self, index: int, timeout_ms: int = 30_000) -> tuple[dict, dict]:
        """Press ArrowRight on the first slider of the cell that can still move right; wait for
        a new, loaded image. Returns (slider before, slider after)."""
        state = self.state(index)
        movable = [s for s in state["sliders"] if not s["disabled"] and s["now"] < s["max"]]
        assert movable, f"cell {index}: no slider that can move right: {state['sliders']}"
        slider = movable[0]
        before = self.image_signature(index)
        handle = self.cell(index).locator(".noUi-handle").nth(slider["handle"])
        handle.scroll_into_view_if_needed()
        handle.focus()
        handle.press("ArrowRight")
        try:
            self.page.wait_for_function(
                "([p, i, old]) => { const s = window.__gl.imageSignature(p, i); return s !== '' && s !== old; }",
                arg=[self.notebook, index, before],
                timeout=timeout_ms,
                polling=50,
            )
            changed = True
        except PlaywrightTimeoutError:
            changed = False
        after = [s for s in self.state(index)["sliders"] if s["handle"] == slider["handle"]][0]
        assert changed, (
            f"cell {index}: slider {slider['label']!r} moved {slider['readout']} -> "
            f"{after['readout']} but no new image appeared within {timeout_ms / 1000:.0f} s"
        )
        return slider, after

    def toggle_checkboxes(self, index: int, timeout_ms: int = 30_000) -> list[str]:
        """Click every enabled checkbox of the cell, waiting each time for a new, loaded image.
        Returns the checkboxes' labels."""
        boxes = self.cell(index).locator(".widget-checkbox input[type=checkbox]:not([disabled])")
        labels = []
        for k in range(boxes.count()):
            box = boxes.nth(k)
            label = box.locator("xpath=..").text_content().strip()
            before = self.image_signature(index)
            box.scroll_into_view_if_needed()
            box.click()
            try:
                self.page.wait_for_function(
                    "([p, i, old]) => { const s = window.__gl.imageSignature(p, i); return s !== '' && s !== old; }",
                    arg=[self.notebook, index, before],
                    timeout=timeout_ms,
                    polling=50,
                )
            except PlaywrightTimeoutError:
                raise AssertionError(
                    f"cell {index}: ticking checkbox {label!r} brought no new image within {timeout_ms / 1000:.0f} s"
                ) from None
            labels.append(label)
        return labels

    def press_play(self, index: int, changes: int = 2, timeout_ms: int = 30_000) -> tuple[dict, dict]:
        """Click the cell's Play button (ipywidgets.Play), wait for ``changes`` new, loaded images
        in a row, then click pause. Returns (step slider before, step slider after): the slider the
        Play button drives is the one whose value moved."""
        before_sliders = self.state(index)["sliders"]
        button = self.cell(index).locator("button:has(.fa-play)").first
        button.scroll_into_view_if_needed()
        button.click()
        try:
            for _ in range(changes):
                old = self.image_signature(index)
                self.page.wait_for_function(
                    "([p, i, old]) => { const s = window.__gl.imageSignature(p, i); return s !== '' && s !== old; }",
                    arg=[self.notebook, index, old],
                    timeout=timeout_ms,
                    polling=50,
                )
        finally:
            self.cell(index).locator("button:has(.fa-pause)").first.click()
        after_sliders = self.state(index)["sliders"]
        moved = [(b, a) for b, a in zip(before_sliders, after_sliders, strict=True) if a["now"] != b["now"]]
        assert moved, f"cell {index}: Play changed the picture but no slider moved: {after_sliders}"
        return moved[0]


# What an explorer shows in its status line when a redraw raised (globattn_lite.widgets).
REDRAW_FAILED = "Cannot draw"


def check_explorer_state(state: dict, name: str, min_coverage: float = 0.3) -> None:
    """Assert one widget cell shows a live widget with decoded, painted, non-blank images."""
    where = f"{name} (cell {state['index']})"
    assert not state["errorDisplaying"], f"{where}: Error displaying widget: {state['text']}"
    assert REDRAW_FAILED not in state["text"], f"{where}: a redraw failed: {state['text']}"
    assert not state["loading"], f"{where}: still 'Loading widget' : {state['text']}"
    assert state["views"] >= 1, f"{where}: no widget view in the output"
    for root in state["roots"]:
        assert root and root["attached"] and root["width"] > 0 and root["height"] > 0, (
            f"{where}: widget view not attached or zero size: {state['roots']}"
        )
    assert state["images"], f"{where}: the widget shows no image"
    for img in state["images"]:
        assert img["decoded"] and img["complete"], f"{where}: image not decoded: {img}"
        assert img["naturalWidth"] > 0 and img["naturalHeight"] > 0, f"{where}: empty image: {img}"
        assert img["width"] > 0 and img["height"] > 0, f"{where}: image not painted: {img}"
        drawn = img["drawn"]
        assert drawn["ink"] > 0.001, f"{where}: image is blank: {img}"
        assert min(drawn["rows"], drawn["cols"]) >= min_coverage, (
            f"{where}: image drawn only in a band (axes or data missing?): {img}"
        )


def main(argv: list[str]) -> int:
    """Open a notebook in JupyterLab + Chromium, run it, print each widget cell's state."""
    import tempfile

    from playwright.sync_api import sync_playwright

    notebook = Path(argv[1]).resolve()
    out_dir = Path(argv[2]) if len(argv) > 2 else Path("test-artifacts/browser/manual")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gl-lab-") as tmp:
        tmp = Path(tmp)
        (tmp / "root").mkdir()
        shutil.copy(notebook, tmp / "root" / notebook.name)
        server = LabServer(tmp / "root", tmp / "jupyter", out_dir / "jupyterlab.log")
        try:
            server.start()
            with sync_playwright() as pw:
                ctx = launch_chromium(pw, tmp / "profile")
                try:
                    nb = NotebookPage(ctx.pages[0] if ctx.pages else ctx.new_page(), server, notebook.name)
                    nb.open()
                    print("run-all:", nb.run_all())
                    for cell in nb.cells():
                        if cell.get("widgetViews"):
                            nb.wait_rendered(cell["index"])
                            print(json.dumps(nb.state(cell["index"]), indent=1))
                    nb.page.screenshot(path=str(out_dir / "page.png"))
                    print("screenshot:", out_dir / "page.png")
                finally:
                    ctx.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
