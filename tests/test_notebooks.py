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


# Cells whose outputs measure the machine or the run (timings, the environment check) carry this
# tag; every other cell must show exactly what a fresh run of the committed code shows, so a
# notebook committed with stale numbers fails.
MEASURED_TAG = "measured"
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _text_outputs(nb):
    """{cell index: [text of each output]} for untagged code cells (images are left out: font
    rendering differs between machines; widget views are left out: their model ids are random)."""
    texts = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or MEASURED_TAG in cell.metadata.get("tags", []):
            continue
        found = []
        for output in cell.outputs:
            if output.output_type == "stream":
                found.append(f"{output.name}: {output.text}")
            elif output.output_type in ("execute_result", "display_data"):
                data = output.get("data", {})
                if WIDGET_MIME in data:
                    continue
                found.extend(f"{mime}: {data[mime]}" for mime in TEXT_MIMES if mime in data)
            elif output.output_type == "error":
                found.append(f"error: {output.ename}: {output.evalue}")
        texts[index] = found
    return texts


def _assert_same_outputs(committed, executed, name):
    old, new = _text_outputs(committed), _text_outputs(executed)
    for index in old:
        assert old[index] == new.get(index), (
            f"{name}: cell {index} shows something else than a fresh run of the committed code.\n"
            f"committed: {old[index]!r}\nfresh run: {new.get(index)!r}\n"
            f"Re-execute it with tools/execute_notebooks.py; if the cell shows a measurement that "
            f"varies from run to run (a timing), tag the cell {MEASURED_TAG!r}."
        )


def test_lesson_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    for expected in (
        "00_start_here.ipynb",
        "01_dense_attention.ipynb",
        "02_sparse_attention.ipynb",
        "03_sliding_window.ipynb",
        "04_global_tokens.ipynb",
        "05_softmax_smoothing_and_sinks.ipynb",
        "06_global_memory_tradeoffs.ipynb",
        "07_kv_cache_and_cost.ipynb",
        "08_design_studio.ipynb",
    ):
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
        f"(execution counts {counts}); run tools/execute_notebooks.py {path.relative_to(ROOT)}"
    )
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
    _assert_same_outputs(nbformat.read(path, as_version=4), executed, path.name)
    _assert_no_widget_state(executed, path.name)
    _assert_widget_fallbacks(executed, path.name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "the committed notebook was modified"
