"""The explorers in a real browser: JupyterLab + Debian Chromium, driven by playwright-python.

Installs nothing. The test command's set-up provides /usr/bin/chromium (tools/install_browser.sh),
playwright-python and JupyterLab in this venv, and the package's JupyterLab settings override.
Without Chromium the test is skipped on a laptop but fails in CI (CI set). Screenshots go to
test-artifacts/browser/. The driver (server, browser, page helpers) is tools/labdriver.py.

Why the override matters: JupyterLab sends widget comm messages to kernel subshells by default
(`commsOverSubshells: "perCommTarget"`), which ipykernel 7 runs on their own thread, concurrently
with cell execution; matplotlib is not thread-safe, and figures come out with missing axes
(jupyterlab/jupyterlab#19719, matplotlib/ipympl#610, the lock in ipympl PR #603). The package
draws without pyplot under a lock, and the override sets `commsOverSubshells` to "disabled".
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tests" / "browser" / "explorers_demo.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
EXPLORERS = [
    "mask_explorer",
    "softmax_explorer",
    "receptive_field_explorer",
    "kv_budget_explorer",
    "attention_explorer",
    "cache_explorer",
]
PLAYERS = ["cache_explorer"]  # explorers with a Play button that steps a slider
# explorers whose titles (and numbers) are text above the picture
CAPTIONED = ["softmax_explorer", "receptive_field_explorer", "attention_explorer", "cache_explorer"]
# Smallest fraction of an explorer image's rows and of its columns that hold something drawn: a
# figure with axes spans most of both; the broken 'title only' figures of the subshell race
# (jupyterlab/jupyterlab#19719) cover a thin band of rows.
MIN_COVERAGE = 0.3


def _load_driver():
    spec = importlib.util.spec_from_file_location("labdriver", REPO / "tools" / "labdriver.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("labdriver", module)
    spec.loader.exec_module(module)
    return module


lab = _load_driver()


def _require_chromium():
    if lab.CHROMIUM.exists():
        return
    reason = (
        f"{lab.CHROMIUM} not found: run tools/install_browser.sh "
        "(apt-get install chromium) to enable the real-browser test"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the browser test is required: {reason}")
    pytest.skip(reason)


@pytest.fixture
def lab_server(tmp_path):
    """JupyterLab serving a temp copy of the demo notebook; always stopped afterwards."""
    _require_chromium()
    overrides = lab.read_overrides()
    assert overrides.get(lab.KERNEL_SETTINGS, {}).get("commsOverSubshells") == "disabled", overrides
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(DEMO, root / DEMO.name)
    server = lab.LabServer(root, tmp_path / "jupyter", ARTIFACTS / "jupyterlab.log")
    try:
        server.start(timeout=60)
        yield server
    finally:
        server.stop()
    assert server.proc is None


def test_missing_chromium_skips_on_a_laptop_but_fails_in_ci(monkeypatch):
    monkeypatch.setattr(lab, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromium not found: run tools/install_browser\.sh"):
        _require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so the browser test is required"):
        _require_chromium()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(360)
def test_explorers_render_and_respond_in_jupyterlab(lab_server, tmp_path):
    from playwright.sync_api import sync_playwright

    # The server really uses the override: widget messages on the kernel's main thread.
    schema = lab_server.get_json(f"/lab/api/settings/{lab.KERNEL_SETTINGS}")["schema"]
    assert schema["properties"]["commsOverSubshells"]["default"] == "disabled"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):  # no stale pictures from an earlier run
        old.unlink()
    shots = []
    with sync_playwright() as pw:
        context = lab.launch_chromium(pw, tmp_path / "chromium-profile")
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        try:
            nb = lab.NotebookPage(page, lab_server, DEMO.name)
            nb.open()

            run = nb.run_all(timeout_ms=120_000)
            cells = [c for c in nb.cells() if c["type"] == "code"]
            errors = [(c["index"], c["errors"]) for c in cells if c["errors"]]
            assert not errors, f"cells raised: {errors}"
            stderr = [(c["index"], c["stderr"]) for c in cells if c["stderr"]]
            assert not stderr, f"cells wrote to stderr (a learner would see it): {stderr}"
            assert run["ok"], f"run-all failed: {run}"
            assert all(c["executionCount"] for c in cells), "some code cells did not run"

            widget_cells = [c for c in cells if c["widgetViews"]]
            names = [lab.explorer_name(c["source"], c["index"]) for c in widget_cells]
            assert names == EXPLORERS, f"the demo should show the {len(EXPLORERS)} explorers in order: {names}"

            for cell in widget_cells:
                nb.wait_rendered(cell["index"])
            page.wait_for_timeout(1000)  # settle: let any redraw caused by showing a widget land
            for cell, name in zip(widget_cells, names, strict=True):
                i = cell["index"]
                shots.append(nb.screenshot_cell(i, ARTIFACTS / f"{name}-before.png"))
                lab.check_explorer_state(nb.state(i), name, MIN_COVERAGE)
                # Showing an explorer must not change it: the browser's first picture is the
                # kernel's initial figure, also stored as the static image/png fallback.
                fallback = nb.matches_fallback(i)
                assert fallback["fallback"], f"{name}: no static image/png next to the widget view"
                assert fallback["matches"], (
                    f"{name}: displaying it in the browser redrew its figure (the front end sent "
                    "back a control value, e.g. a float slider's rounding), so the page differs "
                    "from the kernel's initial figure"
                )
                # the trained-model explorers write their caption as text and store it drawn above the
                # figure in the fallback: the page's picture is the fallback's lower part
                assert fallback["captioned"] == (name in CAPTIONED), (name, fallback)

            for cell, name in zip(widget_cells, names, strict=True):
                i = cell["index"]
                before, after = nb.nudge_slider(i)
                assert after["now"] > before["now"], f"{name}: slider {before['label']!r} did not move"
                lab.check_explorer_state(nb.state(i), name, MIN_COVERAGE)
                shots.append(nb.screenshot_cell(i, ARTIFACTS / f"{name}-after.png"))
                print(f"{name}: slider {before['label']!r} {before['readout']} -> {after['readout']}: new image")
                for label in nb.toggle_checkboxes(i):  # e.g. the KV explorer's "sinks inside W"
                    lab.check_explorer_state(nb.state(i), name, MIN_COVERAGE)
                    print(f"{name}: checkbox {label!r} ticked: new image")

            for cell, name in zip(widget_cells, names, strict=True):
                if name in PLAYERS:  # Play advances the step slider in the page (jslink), each step redraws
                    before, after = nb.press_play(cell["index"])
                    assert after["now"] > before["now"], f"{name}: Play moved {before['label']!r} backwards"
                    lab.check_explorer_state(nb.state(cell["index"]), name, MIN_COVERAGE)
                    shots.append(nb.screenshot_cell(cell["index"], ARTIFACTS / f"{name}-played.png"))
                    print(f"{name}: Play moved {before['label']!r} {before['readout']} -> {after['readout']}")

            page.wait_for_timeout(1000)  # settle: a late redraw must not leave anything blank
            for cell, name in zip(widget_cells, names, strict=True):
                lab.check_explorer_state(nb.state(cell["index"]), name, MIN_COVERAGE)
            page_errors = [m for m in nb.console if m.startswith("pageerror")]
            assert not page_errors, page_errors
        except BaseException:
            try:
                page.screenshot(path=str(ARTIFACTS / "failure.png"), timeout=10_000)
                shots.append(ARTIFACTS / "failure.png")
            except Exception as exc:  # noqa: BLE001 - keep the original failure, not this one
                print("no failure screenshot:", exc)
            print("JupyterLab log:", lab_server.log_path.relative_to(REPO))
            raise
        finally:
            context.close()
            for shot in shots:
                print("screenshot:", shot.relative_to(REPO))
