"""Every lesson notebook runs top to bottom, and is committed in a state that renders anywhere.

The execution test runs each notebook in a fresh kernel on a temporary copy (the committed
file is never rewritten), with the notebook's own folder as working directory, through
``tools/execute_notebooks.py``: any cell error fails the test. The hygiene tests read the
committed files: executed in order, no error outputs, no stored widget state (GitHub shows
a blank or refuses the notebook), and every explorer carries a static PNG fallback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _load_tool():
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "tools" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs(nb):
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for output in cell.outputs:
                yield index, output


def _assert_no_widget_state(nb, name):
    assert "widgets" not in nb.metadata, f"{name}: notebook metadata stores widget state"
    for index, cell in enumerate(nb.cells):
        assert "widgets" not in cell.metadata, f"{name}: cell {index} stores widget state"


def _assert_widget_fallbacks(nb, name):
    for index, output in _outputs(nb):
        data = output.get("data", {})
        if WIDGET_MIME in data:
            assert "image/png" in data, f"{name}: the explorer in cell {index} has no image/png fallback"


def test_lesson_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    for expected in ("00_start_here.ipynb", "01_dense_attention.ipynb",
                     "02_sparse_attention.ipynb", "03_sliding_window.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    _assert_no_widget_state(nb, path.name)
    _assert_widget_fallbacks(nb, path.name)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts, f"{path.name} has no code cells"
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name} is not committed executed top to bottom in a fresh kernel "
        f"(execution counts {counts}); run tools/execute_notebooks.py {path.relative_to(ROOT)}")
    for index, output in _outputs(nb):
        assert output.output_type != "error", f"{path.name}: cell {index} is committed with an error"


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    tool = _load_tool()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)

    tool.execute(copy, timeout=170, cwd=path.parent, write=True)  # raises on any cell error

    executed = nbformat.read(copy, as_version=4)
    _assert_no_widget_state(executed, path.name)
    _assert_widget_fallbacks(executed, path.name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "the committed notebook was modified"
