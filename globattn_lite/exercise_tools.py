"""Generate the exercise notebooks from the solution notebooks, and check they are up to date.

``solutions/`` is the single source. In a solution notebook, each answer sits between two
marker lines, with at least one hint line inside::

    def causal_mask(n):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        ### HINT: compare a column of query indices with a row of key indices.
        q = np.arange(n)[:, None]
        ...
        ### END SOLUTION

The exercise notebook gets, in place of the region,

* inside a function (the markers are indented): ``raise NotImplementedError("<hint>")``;
* at the top level of a cell (the markers are not indented; the region may only assign
  names, e.g. ``kv_pairs_at_500 = 4``): ``kv_pairs_at_500 = None  # your answer``, with the
  hint as a comment above. The checks fail on ``None``, so an untouched exercise never passes.

Everything else (prose, other code, check cells, cell ids) is kept; outputs and execution
counts are dropped, and widget state is removed, so the exercises are committed clean.

Commands (run from the repository root)::

    python -m globattn_lite.exercise_tools build   # write exercises/ from solutions/
    python -m globattn_lite.exercise_tools check   # exit 1 if exercises/ is stale
"""

from __future__ import annotations

import argparse
import ast
import copy
import sys
import textwrap
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"


class MarkerError(ValueError):
    """A solution region is malformed (unbalanced markers, no hint, bad top-level code)."""


def _raise_stub(hint: str, indent: str) -> list[str]:
    """``raise NotImplementedError("hint")``, the hint wrapped into adjacent literals."""
    pieces = textwrap.wrap(hint, width=max(30, 84 - len(indent)), drop_whitespace=False)
    if len(pieces) == 1:
        return [f"{indent}raise NotImplementedError({hint!r})"]
    return ([f"{indent}raise NotImplementedError("]
            + [f"{indent}    {piece!r}" for piece in pieces] + [f"{indent})"])


def _stub(region: list[str], indent: str, where: str) -> list[str]:
    """The exercise lines that replace one solution region."""
    hints = [line.strip()[len(HINT):].strip() for line in region if line.strip().startswith(HINT)]
    code = [line for line in region if not line.strip().startswith(HINT)]
    if not hints or not all(hints):
        raise MarkerError(f"{where}: a solution region needs a non-empty '{HINT} ...' line")
    hint = " ".join(hints)
    if indent:  # inside a function body
        return _raise_stub(hint, indent)
    try:
        tree = ast.parse("\n".join(code))
    except SyntaxError as exc:
        raise MarkerError(f"{where}: the top-level solution region is not valid Python: {exc}") from None
    names = []
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or not all(isinstance(t, ast.Name) for t in targets):
            raise MarkerError(f"{where}: a top-level solution region may only assign names (name = ...)")
        names += [t.id for t in targets if t.id not in names]
    if not names:
        raise MarkerError(f"{where}: the top-level solution region assigns nothing")
    lines = textwrap.wrap(hint, width=86, initial_indent="# Hint: ", subsequent_indent="#       ")
    return lines + [f"{name} = None  # your answer" for name in names]


def exercise_source(source: str, where: str = "cell") -> str:
    """Replace every marked solution region of one code cell by its stub."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a code cell's text (str), got {type(source).__name__}")
    out: list[str] = []
    region: list[str] | None = None
    indent = ""
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if region is not None:
                raise MarkerError(f"{where}, line {number}: {BEGIN} inside another solution region")
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif marker == END:
            if region is None:
                raise MarkerError(f"{where}, line {number}: {END} without {BEGIN}")
            out += _stub(region, indent, f"{where}, line {number}")
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise MarkerError(f"{where}: {BEGIN} without {END}")
    return "\n".join(out)


def count_regions(nb) -> int:
    return sum(
        line.strip() == BEGIN
        for cell in nb.cells if cell.cell_type == "code"
        for line in cell.source.split("\n")
    )


def build_exercise(solution_nb, name: str = "notebook"):
    """The exercise notebook for a solution notebook (a new object; the input is unchanged)."""
    if not isinstance(solution_nb, nbformat.NotebookNode):
        raise TypeError(f"solution_nb must be a notebook read with nbformat (version 4), got {type(solution_nb).__name__}")
    nb = copy.deepcopy(solution_nb)
    if count_regions(nb) == 0:
        raise MarkerError(f"{name}: no '{BEGIN}' regions: is this a solution notebook?")
    nb.metadata.pop("widgets", None)
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        cell.metadata.pop("widgets", None)
        if cell.cell_type == "code":
            cell.source = exercise_source(cell.source, f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
        elif BEGIN in cell.source or END in cell.source:
            raise MarkerError(f"{name}, cell {index}: solution markers are only allowed in code cells")
    return nb


def render(nb) -> str:
    """The exact text written to disk (nbformat's layout, trailing newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def expected_exercises(solutions: Path) -> dict[str, str]:
    """File name -> exercise notebook text, for every solution notebook."""
    result = {}
    for path in sorted(Path(solutions).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        result[path.name] = render(build_exercise(nb, path.name))
    return result


def stale_exercises(solutions: Path, exercises: Path) -> list[str]:
    """Problems that make ``exercises/`` differ from what ``build`` would write ([] if none)."""
    solutions, exercises = Path(solutions), Path(exercises)
    problems = []
    expected = expected_exercises(solutions)
    for name, text in expected.items():
        target = exercises / name
        if not target.exists():
            problems.append(f"{target}: missing")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"{target}: out of date with {solutions / name}")
    for extra in sorted(exercises.glob("*.ipynb")):
        if extra.name not in expected:
            problems.append(f"{extra}: has no solution notebook in {solutions}")
    return problems


def build(solutions: Path, exercises: Path) -> list[Path]:
    """Write the exercise notebooks; returns the files that changed."""
    exercises = Path(exercises)
    exercises.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in expected_exercises(solutions).items():
        target = exercises / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8", newline="\n")
            changed.append(target)
    return changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m globattn_lite.exercise_tools",
        description="Generate exercises/ from solutions/ (solution regions become stubs), or check "
                    "that exercises/ is up to date. Run from the repository root.")
    parser.add_argument("command", choices=["build", "check"],
                        help="build: write exercises/; check: exit 1 if exercises/ is stale")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"),
                        help="folder of solution notebooks (default: ./solutions)")
    parser.add_argument("--exercises", type=Path, default=Path("exercises"),
                        help="folder of exercise notebooks (default: ./exercises)")
    args = parser.parse_args(argv)
    if not args.solutions.is_dir() or not any(args.solutions.glob("*.ipynb")):
        parser.error(f"no solution notebooks in {args.solutions}/ (run from the repository root "
                     "or pass --solutions)")
    try:
        if args.command == "build":
            changed = build(args.solutions, args.exercises)
            for path in changed:
                print(f"wrote {path}")
            print(f"{len(changed)} exercise notebook(s) updated" if changed else "exercises are up to date")
            return 0
        problems = stale_exercises(args.solutions, args.exercises)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        print("run: python -m globattn_lite.exercise_tools build", file=sys.stderr)
        return 1
    print("exercises are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
