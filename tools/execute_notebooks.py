"""Execute course notebooks top to bottom in a fresh kernel, as "Restart and run all" would.

    python tools/execute_notebooks.py notebooks/01_dense_attention.ipynb ...   # write outputs in place
    python tools/execute_notebooks.py notebooks/                                # every *.ipynb in a folder
    python tools/execute_notebooks.py --check notebooks/                        # execute only, write nothing

Each notebook runs with nbclient in a new ``python3`` kernel of the current environment (the
kernelspec's ``python`` is this interpreter), with the notebook's own folder as working
directory (``--cwd`` overrides it, e.g. when a test executes a temporary copy).

Committed notebooks carry no widget state: nbclient is told not to store it and any
``metadata.widgets`` is removed, because GitHub refuses to render notebooks whose widget
metadata lacks its state, and live widgets need a kernel anyway (each explorer's output also
holds a static PNG). Cell timing metadata is not recorded and consecutive stream outputs are
merged, so re-executing gives small diffs.

Exit status: 0 when every notebook ran without an error, 1 otherwise (the error is printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError


def notebook_paths(args: list[str]) -> list[Path]:
    """The notebooks named on the command line; a folder stands for its *.ipynb files, sorted."""
    paths = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            paths.extend(sorted(x for x in p.glob("*.ipynb") if not x.name.startswith(".")))
        elif p.suffix == ".ipynb" and p.is_file():
            paths.append(p)
        else:
            raise SystemExit(f"execute_notebooks: {arg!r} is neither a notebook (.ipynb) nor a folder")
    return paths


def strip_widget_state(nb) -> None:
    """Remove stored widget state: the notebook-level ``metadata.widgets`` and any per-cell copy."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)


def execute(path: Path, *, timeout: int = 300, cwd: Path | None = None, write: bool = True) -> float:
    """Run one notebook in a fresh kernel; return the wall time in seconds.

    Raises ``CellExecutionError`` (with the failing cell and traceback) on the first error.
    With ``write=True`` the executed notebook, outputs included, replaces the file.
    """
    nb = nbformat.read(path, as_version=4)
    workdir = Path(cwd) if cwd is not None else path.resolve().parent
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        store_widget_state=False,
        record_timing=False,
        coalesce_streams=True,  # one stdout output per cell, however the kernel chunked it
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    strip_widget_state(nb)
    nbformat.validate(nb)
    if write:
        nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="notebooks or folders of notebooks")
    parser.add_argument("--check", action="store_true", help="execute only; do not write outputs")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    parser.add_argument(
        "--cwd", type=Path, default=None, help="working directory for the kernel (default: each notebook's folder)"
    )
    args = parser.parse_args(argv)

    failures = 0
    for path in notebook_paths(args.paths):
        try:
            seconds = execute(path, timeout=args.timeout, cwd=args.cwd, write=not args.check)
        except (CellExecutionError, CellTimeoutError) as err:
            failures += 1
            print(f"FAILED {path}\n{err}", file=sys.stderr)
            continue
        action = "checked" if args.check else "executed and written"
        print(f"{path}: {action} in {seconds:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
