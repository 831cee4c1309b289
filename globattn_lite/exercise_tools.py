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
    python -m globattn_lite.exercise_tools nbgrader OUT            # solution notebooks for nbgrader
    python -m globattn_lite.exercise_tools gradescope-zip OUT.zip  # a Gradescope autograder
    python -m globattn_lite.exercise_tools release --student DIR   # what learners get
    python -m globattn_lite.exercise_tools release --instructor DIR

``nbgrader OUT`` writes each solution notebook with nbgrader cell metadata, ready for
``OUT`` to be a course's ``source/<assignment>/``: solution regions become nbgrader's own
``### BEGIN/END SOLUTION`` regions (the hints stay above them as comments; a top-level answer
starts as ``name = None``), each check cell becomes a graded test cell worth ``--points``
(default 1) whose value is the partial credit (``check(...).points_out_of(points)``), and
every other cell is locked. Free-text answers are not autograded (read them in the notebook).

``gradescope-zip`` bundles ``setup.sh`` (installs the course with its pinned versions),
``run_autograder`` (runs ``python -m globattn_lite.grade --format gradescope`` on
``/autograder/submission``; ``AUTOGRADER_ROOT`` and ``AUTOGRADER_PYTHON`` override the paths,
for tests) and the course source, optionally with instructor checks (``--tests``) and points.

``release --student DIR`` copies what learners get: lessons, exercises and the package with
its public checks (the notebooks' ``check`` needs them), without solutions, the grader or
instructor checks. ``release --instructor DIR`` adds the solutions, the grader, the tests and
(``--tests``) the instructor checks.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import shutil
import stat
import sys
import textwrap
import zipfile
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
    return [f"{indent}raise NotImplementedError("] + [f"{indent}    {piece!r}" for piece in pieces] + [f"{indent})"]


def _stub(region: list[str], indent: str, where: str) -> list[str]:
    """The exercise lines that replace one solution region."""
    hints = [line.strip()[len(HINT) :].strip() for line in region if line.strip().startswith(HINT)]
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
        line.strip() == BEGIN for cell in nb.cells if cell.cell_type == "code" for line in cell.source.split("\n")
    )


def build_exercise(solution_nb, name: str = "notebook"):
    """The exercise notebook for a solution notebook (a new object; the input is unchanged)."""
    if not isinstance(solution_nb, nbformat.NotebookNode):
        raise TypeError(
            f"solution_nb must be a notebook read with nbformat (version 4), got {type(solution_nb).__name__}"
        )
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


# ---- nbgrader ---------------------------------------------------------------------------

_CHECK_CELL = re.compile(r'^check\("(\w+)", (\w+)\);?$')


def _nbgrader_source(source: str, where: str) -> str:
    """A solution cell's source in nbgrader's form: each region keeps its solution between
    the markers, the hints move above the region as comments, and a top-level answer starts
    as ``name = None`` before it (nbgrader replaces the region by a stub)."""
    out: list[str] = []
    region: list[str] | None = None
    indent = ""
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif marker == END:
            hints = [x.strip()[len(HINT) :].strip() for x in region if x.strip().startswith(HINT)]
            code = [x for x in region if not x.strip().startswith(HINT)]
            out += textwrap.wrap(
                " ".join(hints), width=88, initial_indent=f"{indent}# Hint: ", subsequent_indent=f"{indent}#       "
            )
            if not indent:  # the answers start as None, as in the exercise notebook
                out += [x for x in _stub(region, "", where) if not x.startswith("#")]
            out += [f"{indent}{BEGIN}", *code, f"{indent}{END}"]
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    return "\n".join(out)


def nbgrader_notebook(solution_nb, name: str = "notebook", points: dict[str, float] | None = None):
    """The solution notebook with nbgrader cell metadata (a new object)."""
    from globattn_lite.checks import specs

    build_exercise(solution_nb, name)  # validates the markers
    nb = copy.deepcopy(solution_nb)
    points = points or {}
    for index, cell in enumerate(nb.cells):
        meta = {
            "schema_version": 3,
            "grade_id": f"{name}-cell-{index}",
            "locked": True,
            "solution": False,
            "grade": False,
        }
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            lines = [line.strip() for line in cell.source.split("\n") if line.strip()]
            checks = [_CHECK_CELL.match(line) for line in lines]
            if BEGIN in cell.source:
                cell.source = _nbgrader_source(cell.source, f"{name}, cell {index}")
                meta.update(locked=False, solution=True)
            elif checks and all(m and m.group(1) in specs() for m in checks):
                # free-text answers are worth 0 here: they are read, not autograded
                worth = {
                    m.group(1): 0.0 if specs()[m.group(1)].free_text else float(points.get(m.group(1), 1.0))
                    for m in checks
                }
                if sum(worth.values()) > 0:
                    calls = [
                        f'check("{m.group(1)}", {m.group(2)}).points_out_of({worth[m.group(1)]:g})' for m in checks
                    ]
                    cell.source = calls[0] if len(calls) == 1 else "(\n    " + "\n    + ".join(calls) + "\n)"
                    meta.update(grade=True, points=sum(worth.values()), grade_id=f"check-{checks[0].group(1)}")
        cell.metadata["nbgrader"] = meta
    return nb


def write_nbgrader(solutions: Path, out: Path, points: dict[str, float] | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(solutions).glob("*.ipynb")):
        nb = nbgrader_notebook(nbformat.read(path, as_version=4), path.stem, points)
        (out / path.name).write_text(render(nb), encoding="utf-8", newline="\n")
        written.append(out / path.name)
    return written


# ---- Gradescope -------------------------------------------------------------------------

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image: it installs the
# course (the package and its pinned dependencies) from /autograder/source into a venv.
set -euo pipefail
apt-get install -y python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install -c /autograder/source/constraints.txt /autograder/source
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. It grades every notebook or .py file in
# submission/ with the course's grader and writes results/results.json. The student's
# random check inputs are seeded from Gradescope's submission_metadata.json.
# AUTOGRADER_ROOT (default /autograder) and AUTOGRADER_PYTHON override the paths (tests).
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$ROOT/results"
cd "$ROOT"
STUDENT=$("$PYTHON" -c 'import json, sys
try:
    users = json.load(open(sys.argv[1])).get("users") or [{}]
    print(users[0].get("email") or users[0].get("id") or "")
except Exception:
    print("")' "$ROOT/submission_metadata.json")
extra=()
if [ -d "$ROOT/source/instructor_tests" ]; then extra+=(--tests "$ROOT/source/instructor_tests"); fi
if [ -f "$ROOT/source/points.json" ]; then extra+=(--points "$ROOT/source/points.json"); fi
if ! "$PYTHON" -m globattn_lite.grade "$ROOT/submission" --format gradescope \\
        --out "$ROOT/results/results.json" --seed-salt "globattn-lite-gradescope/$STUDENT" \\
        ${extra[@]+"${extra[@]}"}; then
    "$PYTHON" -c 'import json, sys
json.dump({"score": 0.0, "output": "the grader failed on this submission; please contact the course staff",
           "tests": []}, open(sys.argv[1], "w"))' "$ROOT/results/results.json"
fi
"""

_SOURCE_FILES = ("README.md", "pyproject.toml", "constraints.txt")
_SOURCE_FOLDERS = ("globattn_lite", "jupyter-config")


def _ignore_caches(folder, names):
    return [n for n in names if n == "__pycache__" or n.startswith(".")]


def gradescope_zip(repo: Path, out: Path, tests_dir: Path | None = None, points: Path | None = None) -> Path:
    """Write the Gradescope autograder bundle ``out`` (a .zip); returns it."""
    repo, out = Path(repo), Path(out)

    def add_file(zf, content, arcname: str, executable: bool = False):  # content: a Path or bytes
        info = zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, content.read_bytes() if isinstance(content, Path) else content)

    with zipfile.ZipFile(out, "w") as zf:
        add_file(zf, SETUP_SH.encode(), "setup.sh", executable=True)
        add_file(zf, RUN_AUTOGRADER.encode(), "run_autograder", executable=True)
        for name in _SOURCE_FILES:
            add_file(zf, repo / name, name)
        for folder in _SOURCE_FOLDERS:
            for path in sorted((repo / folder).rglob("*")):
                parts = path.relative_to(repo).parts
                if path.is_file() and not any(p == "__pycache__" or p.startswith(".") for p in parts):
                    add_file(zf, path, "/".join(parts))
        if tests_dir is not None:
            for path in sorted(Path(tests_dir).glob("*.py")):
                add_file(zf, path, f"instructor_tests/{path.name}")
        if points is not None:
            add_file(zf, Path(points), "points.json")
    return out


# ---- releases ---------------------------------------------------------------------------

_PUBLIC_FILES = ("README.md", "pyproject.toml", "constraints.txt", "environment.yml", "course.py")
_PUBLIC_FOLDERS = ("notebooks", "exercises", "jupyter-config")
_INSTRUCTOR_ONLY = ("grading", "grade.py", "exercise_tools.py")


def release(repo: Path, target: Path, instructor: bool, tests_dir: Path | None = None) -> Path:
    """Copy a student (or instructor) release of the course into ``target`` (which must not
    exist yet); returns ``target``."""
    repo, target = Path(repo), Path(target)
    if target.exists():
        raise ValueError(f"{target} already exists: give a new folder")
    target.mkdir(parents=True)
    for name in _PUBLIC_FILES:
        if (repo / name).exists():
            shutil.copy2(repo / name, target / name)
    for folder in _PUBLIC_FOLDERS + (("solutions", "tests", "tools") if instructor else ()):
        if (repo / folder).is_dir():
            shutil.copytree(repo / folder, target / folder, ignore=_ignore_caches)
    package = repo / "globattn_lite"

    def ignore(folder, names):
        private = [] if instructor or Path(folder) != package else [n for n in names if n in _INSTRUCTOR_ONLY]
        return _ignore_caches(folder, names) + private

    shutil.copytree(package, target / "globattn_lite", ignore=ignore)
    if tests_dir is not None:
        if not instructor:
            raise ValueError("instructor checks (--tests) belong in the instructor release only")
        shutil.copytree(tests_dir, target / "instructor_tests", ignore=_ignore_caches)
    return target


def _repo_root(solutions: Path) -> Path:
    return Path(solutions).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m globattn_lite.exercise_tools",
        description="Generate exercises/ from solutions/ (solution regions become stubs), check that "
        "exercises/ is up to date, export for nbgrader or Gradescope, or make a release. "
        "Run from the repository root.",
    )
    parser.add_argument(
        "command",
        choices=["build", "check", "nbgrader", "gradescope-zip", "release"],
        help="build: write exercises/; check: exit 1 if exercises/ is stale; nbgrader OUT; "
        "gradescope-zip OUT.zip; release --student DIR | --instructor DIR",
    )
    parser.add_argument(
        "target", nargs="?", type=Path, default=None, help="nbgrader: output folder; gradescope-zip: the .zip to write"
    )
    parser.add_argument(
        "--solutions", type=Path, default=Path("solutions"), help="folder of solution notebooks (default: ./solutions)"
    )
    parser.add_argument(
        "--exercises", type=Path, default=Path("exercises"), help="folder of exercise notebooks (default: ./exercises)"
    )
    parser.add_argument(
        "--points",
        type=Path,
        default=None,
        help="nbgrader, gradescope-zip: JSON {exercise name: points} (default 1 each)",
    )
    parser.add_argument(
        "--tests", type=Path, default=None, help="gradescope-zip, release --instructor: a folder of instructor checks"
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--student", type=Path, default=None, help="release: folder for the learners' release")
    who.add_argument("--instructor", type=Path, default=None, help="release: folder for the instructors' release")
    args = parser.parse_args(argv)
    if not args.solutions.is_dir() or not any(args.solutions.glob("*.ipynb")):
        parser.error(f"no solution notebooks in {args.solutions}/ (run from the repository root or pass --solutions)")
    if args.command in ("nbgrader", "gradescope-zip") and args.target is None:
        parser.error(f"{args.command} needs an output: {args.command} OUT")
    if args.command == "release" and args.student is None and args.instructor is None:
        parser.error("release needs --student DIR or --instructor DIR")
    if args.tests is not None and not args.tests.is_dir():
        parser.error(f"--tests {args.tests}: not a folder")
    try:
        points = json.loads(args.points.read_text(encoding="utf-8")) if args.points else None
    except (OSError, ValueError) as exc:
        parser.error(f"--points {args.points}: not a readable JSON object ({exc})")
    try:
        if args.command == "build":
            changed = build(args.solutions, args.exercises)
            for path in changed:
                print(f"wrote {path}")
            print(f"{len(changed)} exercise notebook(s) updated" if changed else "exercises are up to date")
            return 0
        if args.command == "nbgrader":
            for path in write_nbgrader(args.solutions, args.target, points):
                print(f"wrote {path}")
            return 0
        if args.command == "gradescope-zip":
            print(f"wrote {gradescope_zip(_repo_root(args.solutions), args.target, args.tests, args.points)}")
            return 0
        if args.command == "release":
            target = release(
                _repo_root(args.solutions),
                args.student or args.instructor,
                instructor=args.instructor is not None,
                tests_dir=args.tests,
            )
            print(f"wrote {target}")
            return 0
        problems = stale_exercises(args.solutions, args.exercises)
    except (MarkerError, ValueError) as exc:
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
