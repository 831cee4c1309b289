"""Submissions: which files, which exercise set, which student, and their code cells.

Everything here reads submissions as data; nothing executes them.

Student names (``--student-from``):

* ``folder`` (default): the folder right under the folder you named holds one student's files
  (``class/alice/ex1_dense.ipynb`` is alice's); a file directly in it belongs to the name after
  the set (``ex1_dense_bob.ipynb`` is bob's), else to no one known.
* ``canvas``: Canvas's download names ``name_12345_67890_file.ipynb`` (also ``name_LATE_...``):
  the student is ``name``, the LMS user id ``12345``, and ``file`` names the exercise set
  (Canvas appends ``-1``, ``-2`` to resubmitted file names: still the same set).
* ``regex:PATTERN``: a regular expression with a group ``(?P<student>...)``, searched in the
  path relative to the folder you named (``/`` separators).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".ipynb", ".py")
MAX_SUBMISSION_BYTES = 20 * 2**20
_CANVAS = re.compile(r"^(?P<student>[^_]+)_(?:LATE_)?(?P<lms_id>\d+)_(?P<submission_id>\d+)_(?P<file>.+)$")


@dataclass
class Submission:
    """One submitted file: where, which set (None: matches none), whose."""

    path: Path
    exercise_set: str | None
    student: str = ""
    lms_id: str = ""


class MalformedSubmission(Exception):
    """The submission cannot be read as a notebook or a Python file."""


def exercise_set_for(path: Path) -> str | None:
    """The exercise set a file belongs to, from its name (``ex1_dense...``), or None."""
    from globattn_lite.checks import EXERCISE_SETS

    canvas = _CANVAS.match(path.name)
    stem = Path(canvas["file"]).stem.lower() if canvas else path.stem.lower()
    for name in sorted(EXERCISE_SETS, key=len, reverse=True):
        if stem == name or (stem.startswith(name) and not stem[len(name)].isalnum()):
            return name
    return None


def student_for(path: Path, root: Path | None, rule: str, set_name: str | None) -> tuple[str, str]:
    """(student, LMS id) of a file under ``root`` (None: a file named on its own) by ``rule``."""
    if rule == "canvas":
        match = _CANVAS.match(path.name)
        return (match["student"], match["lms_id"]) if match else ("", "")
    relative = path.relative_to(root).as_posix() if root is not None else path.name
    if rule.startswith("regex:"):
        match = re.search(rule[len("regex:") :], relative)
        return (match["student"] if match and match["student"] else "", "")
    parts = relative.split("/")
    if len(parts) > 1:
        return parts[0], ""
    stem = path.stem
    if set_name and stem.lower().startswith(set_name) and len(stem) > len(set_name) + 1:
        return stem[len(set_name) + 1 :].strip("_- "), ""
    return "", ""


def check_student_rule(rule: str) -> str:
    """The rule itself, or ValueError saying what is accepted."""
    if rule in ("folder", "canvas"):
        return rule
    if rule.startswith("regex:"):
        try:
            pattern = re.compile(rule[len("regex:") :])
        except re.error as exc:
            raise ValueError(f"--student-from {rule!r}: not a regular expression ({exc})") from None
        if "student" not in pattern.groupindex:
            raise ValueError(f"--student-from {rule!r}: the pattern needs a group (?P<student>...)")
        return rule
    raise ValueError(f"--student-from must be 'folder', 'canvas' or 'regex:PATTERN', got {rule!r}")


def discover(paths, student_from: str = "folder") -> tuple[list[Submission], list[str]]:
    """Every submission-like file (``.ipynb``/``.py``, not hidden) in files and folders,
    sorted, without duplicates; those matching no exercise set are kept (their set is None),
    so that they get a row. Returns (submissions, notes)."""
    rule = check_student_rule(student_from)
    found: list[Submission] = []
    notes: list[str] = []
    seen = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = []
            for p in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts)
                if p.suffix in SUFFIXES and p.is_file() and not hidden:
                    candidates.append((p, path))
        elif path.is_file():
            candidates = [(path, None)]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        for p, root in candidates:
            key = p.resolve()
            if key in seen:
                continue
            seen.add(key)
            set_name = exercise_set_for(p)
            student, lms_id = student_for(p, root, rule, set_name)
            found.append(Submission(p, set_name, student, lms_id))
            if set_name is None:
                notes.append(f"{p}: its name matches no exercise set")
    return found, notes


PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")  # their body is Python: run it once


def strip_magics(source: str) -> str | None:
    """Drop IPython syntax the sandbox cannot run: None for a non-Python ``%%`` cell magic
    (``%%bash``, ``%%html``...), else the source with ``%line`` and ``!shell`` lines replaced
    by ``pass`` (keeps indentation); ``%%time``/``%%timeit``/``%%capture`` lose only that line."""
    stripped_source = source.lstrip()
    if stripped_source.startswith("%%"):
        first, _, rest = stripped_source.partition("\n")
        if first.split()[0] not in PYTHON_CELL_MAGICS:
            return None
        source = rest
    lines = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass  # IPython magic removed by the grader"
        lines.append(line)
    return "\n".join(lines)


def _notebook_sources(text: str) -> tuple[list[str], list[str]]:
    """Code cell sources of a notebook: through nbformat (any version it knows), or read
    leniently from the JSON when nbformat refuses a notebook whose cells are still readable."""
    import nbformat

    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedSubmission(f"not valid notebook JSON ({textwrap.shorten(str(exc), 120)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        raise MalformedSubmission("not a notebook (no list of cells)")
    if isinstance(data.get("nbformat"), int):
        try:
            nb = nbformat.reads(text, as_version=4, capture_validation_error={})
            return [c.source for c in nb.cells if c.cell_type == "code"], []
        except Exception:  # noqa: BLE001 - e.g. missing keys: try the lenient reading below
            pass
    sources = []
    for cell in data.get("cells") or []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = cell.get("source", "")
            if isinstance(src, list) and all(isinstance(line, str) for line in src):
                src = "".join(src)
            if not isinstance(src, str):
                raise MalformedSubmission("a code cell's source is neither text nor a list of lines")
            sources.append(src)
    return sources, ["the notebook is not valid nbformat; its code cells were read leniently"]


def load_cells(path: Path) -> tuple[list[str], list[str]]:
    """The submission's code cells (magics stripped) and notes. Raises MalformedSubmission."""
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise MalformedSubmission(f"file too large ({size} bytes)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedSubmission("not UTF-8 text") from None
    if path.suffix == ".ipynb":
        sources, notes = _notebook_sources(text)
    else:
        sources, notes, current = [], [], []
        for line in text.split("\n"):
            if line.startswith("# %%"):
                sources.append("\n".join(current))
                current = []
            else:
                current.append(line)
        sources.append("\n".join(current))
    cells = []
    for src in sources:
        stripped = strip_magics(src)
        if stripped is None:
            notes.append("a %% cell magic was skipped")
        cells.append(stripped if stripped is not None else "")
    return cells, notes
