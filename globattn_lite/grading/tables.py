"""What the grader writes: the detail table, the per-student summary, Gradescope's
``results.json`` and an LMS gradebook CSV; and what it reads: a roster and a points file.

All files are written to a temporary file next to the target and renamed over it
(``os.replace``), readable by the group (mode 0644).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

DETAIL_FIRST = ["student", "name", "id", "submission", "exercise_set", "status"]
DETAIL_LAST = ["total", "points", "max_points", "needs_review", "seconds", "seed", "flags", "reasons"]
ROSTER_COLUMNS = ("student", "name", "id", "sis_id", "login", "email", "section")
LMS_FORMATS = ("canvas", "moodle")
#: Gradescope's results.json fields (https://gradescope-autograders.readthedocs.io/en/latest/specs/)
GRADESCOPE_TOP = {
    "score",
    "execution_time",
    "output",
    "output_format",
    "test_output_format",
    "test_name_format",
    "visibility",
    "stdout_visibility",
    "extra_data",
    "tests",
    "leaderboard",
}
GRADESCOPE_TEST = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}


# ---- inputs --------------------------------------------------------------------------


def read_roster(path: Path) -> dict[str, dict]:
    """A roster CSV: one row per student, a ``student`` column (the name the submissions'
    folders or LMS file names carry) and optionally name, id (LMS user id), sis_id, login,
    email, section. Returns {student: row}. Raises ValueError naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--roster {path}: cannot read it ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "student" not in reader.fieldnames:
        raise ValueError(f"--roster {path}: needs a 'student' column (found {reader.fieldnames})")
    roster = {}
    for number, row in enumerate(reader, 2):
        key = (row.get("student") or "").strip()
        if not key:
            raise ValueError(f"--roster {path}, line {number}: empty student")
        if key in roster:
            raise ValueError(f"--roster {path}, line {number}: student {key!r} appears twice")
        roster[key] = {c: (row.get(c) or "").strip() for c in ROSTER_COLUMNS}
    return roster


def read_points(path: Path, names) -> dict[str, float]:
    """Points per exercise name from a JSON object {name: points}; names not in it get 1
    (free-text answers 0: they are reviewed by hand). Raises ValueError."""
    from globattn_lite.checks import specs

    default = {n: 0.0 if n in specs() and specs()[n].free_text else 1.0 for n in names}
    if path is None:
        return default
    try:
        given = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--points {path}: not a readable JSON object ({exc})") from None
    if not isinstance(given, dict):
        raise ValueError(f"--points {path}: expected a JSON object {{name: points}}")
    for name, value in given.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"--points {path}: points of {name!r} must be a number >= 0, got {value!r}")
    return {**default, **{n: float(v) for n, v in given.items() if n in default}}


# ---- tables --------------------------------------------------------------------------


def add_points(rows: list[dict], columns: list[str], points: dict[str, float], roster: dict | None) -> None:
    """Fill each row's points, max_points, name/id (from the roster) and needs_review text."""
    for row in rows:
        entry = (roster or {}).get(row["student"], {})
        row["name"] = entry.get("name", "")
        row["id"] = entry.get("id", "") or row.get("lms_id", "")
        scored = [n for n in columns if n in row and not _is_free_text(n)]
        for n in columns:
            if _is_free_text(n):
                row.pop(n, None)  # recorded for review, never a score
        row["points"] = round(sum(points.get(n, 1.0) * float(row[n] or 0.0) for n in scored), 4)
        row["max_points"] = sum(points.get(n, 1.0) for n in scored)
        review = row.get("needs_review") or {}
        if isinstance(review, dict):
            row["needs_review"] = " | ".join(f"{n}: {text}" for n, text in review.items())


def _is_free_text(name: str) -> bool:
    from globattn_lite.checks import specs

    return name in specs() and specs()[name].free_text


def detail_header(columns: list[str]) -> list[str]:
    """The detail table's columns: free-text answers have none (they are in needs_review)."""
    return [*DETAIL_FIRST, *(c for c in columns if not _is_free_text(c)), *DETAIL_LAST]


def summary_rows(rows: list[dict], columns: list[str], points: dict[str, float]) -> tuple[list[str], list[dict]]:
    """One row per student: points per exercise set (the counted submission of each), total
    points of the sets graded in this run, statuses and flags. Rows of unknown students
    (no name could be derived) are left out: they stay in the detail table."""
    from globattn_lite.checks import EXERCISE_SETS

    sets = [s for s in EXERCISE_SETS if any(n in columns for n in EXERCISE_SETS[s])]
    set_max = {
        s: sum(points.get(n, 1.0) for n in EXERCISE_SETS[s] if n in columns and not _is_free_text(n)) for s in sets
    }
    students: dict[str, dict] = {}
    for row in rows:
        if not row["student"]:
            continue
        entry = students.setdefault(
            row["student"],
            {
                "student": row["student"],
                "name": row.get("name", ""),
                "id": row.get("id", ""),
                "statuses": [],
                "flags": [],
                "needs_review": 0,
                **{s: 0.0 for s in sets},
            },
        )
        if row["status"] == "missing":
            entry["statuses"].append("no submission")
            continue
        label = row["exercise_set"] or Path(row["submission"]).name
        entry["statuses"].append(f"{label}: {row['status']}")
        if row.get("flags"):
            entry["flags"].append(row["flags"])
        if row["exercise_set"] in set_max and row.get("counted", True):
            entry[row["exercise_set"]] = row["points"]
            entry["needs_review"] += bool(row.get("needs_review"))
    total_max = sum(set_max.values())
    out = []
    for entry in sorted(students.values(), key=lambda e: e["student"]):
        got = round(sum(entry[s] for s in sets), 4)
        out.append(
            {
                **entry,
                "points": got,
                "max_points": total_max,
                "percent": round(100 * got / total_max, 1) if total_max else 0.0,
                "statuses": "; ".join(entry["statuses"]),
                "flags": " | ".join(sorted(set(entry["flags"]))),
                "needs_review": entry["needs_review"] or "",
            }
        )
    header = ["student", "name", "id", *sets, "points", "max_points", "percent", "needs_review", "statuses", "flags"]
    return header, out


def lms_table(summary: list[dict], roster: dict | None, lms: str, title: str) -> tuple[list[str], list[list]]:
    """A gradebook CSV an LMS imports: ``canvas`` (the columns of Canvas's gradebook export:
    Student, ID, SIS User ID, SIS Login ID, Section, then the assignment) or ``moodle``
    (an identifier column for Moodle's "Import grades from CSV" to map, then the grade).
    Points come from the summary; the identifiers from the roster."""
    if lms not in LMS_FORMATS:
        raise ValueError(f"lms must be one of {LMS_FORMATS}, got {lms!r}")
    rows = []
    for entry in summary:
        info = (roster or {}).get(entry["student"], {})
        if lms == "canvas":
            rows.append(
                [
                    info.get("name") or entry["student"],
                    info.get("id") or entry.get("id", ""),
                    info.get("sis_id", ""),
                    info.get("login", ""),
                    info.get("section", ""),
                    entry["points"],
                ]
            )
        else:
            rows.append(
                [
                    info.get("email", ""),
                    info.get("sis_id") or info.get("id") or entry["student"],
                    info.get("name") or entry["student"],
                    entry["points"],
                ]
            )
    header = (
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title]
        if lms == "canvas"
        else ["Email address", "ID number", "Full name", title]
    )
    return header, rows


def gradescope_results(rows: list[dict], columns: list[str], points: dict[str, float], seconds: float) -> dict:
    """Gradescope's results.json for one student's submission folder: one test per exercise
    function or answer of each graded file, and the total score."""
    from globattn_lite.checks import EXERCISE_SETS

    tests = []
    for row in rows:
        if row["status"] == "missing":
            continue
        if row["status"] in ("unknown set", "malformed") or not row["exercise_set"]:
            tests.append(
                {
                    "name": Path(row["submission"]).name,
                    "score": 0.0,
                    "max_score": 0.0,
                    "status": "failed",
                    "output": row["reasons"],
                    "visibility": "visible",
                }
            )
            continue
        reasons = _reasons_by_name(row["reasons"])
        review = row.get("needs_review") or ""
        in_set = EXERCISE_SETS.get(row["exercise_set"], ())
        for name in columns:
            if name not in row and not (_is_free_text(name) and name in in_set):
                continue
            if _is_free_text(name):
                text = next((part[len(name) + 2 :] for part in review.split(" | ") if part.startswith(f"{name}: ")), "")
                tests.append(
                    {
                        "name": f"{name} ({row['exercise_set']})",
                        "score": 0.0,
                        "max_score": 0.0,
                        "status": "passed" if text else "failed",
                        "visibility": "visible",
                        "output": ("recorded for your instructor to read: " + text)
                        if text
                        else reasons.get(name, "not answered"),
                    }
                )
                continue
            worth = points.get(name, 1.0)
            score = float(row.get(name) or 0.0)
            tests.append(
                {
                    "name": f"{name} ({row['exercise_set']})",
                    "score": round(score * worth, 4),
                    "max_score": worth,
                    "status": "passed" if score == 1.0 else "failed",
                    "output": reasons.get(name, "all checks passed"),
                    "visibility": "visible",
                }
            )
    total = round(sum(t["score"] for t in tests), 4)
    statuses = sorted({row["status"] for row in rows})
    output = (
        f"{len(rows)} file(s) graded ({', '.join(statuses)})"
        if rows
        else "no notebook or .py file in the submission matches an exercise set"
    )
    return {
        "score": total,
        "execution_time": round(seconds, 1),
        "output": output,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def validate_gradescope(results: dict) -> list[str]:
    """Problems with a results.json against the fields Gradescope documents ([] if none)."""
    problems = []
    if not isinstance(results, dict):
        return ["results must be a JSON object"]
    problems += [f"unknown top-level field {k!r}" for k in results if k not in GRADESCOPE_TOP]
    if "score" not in results and not all("score" in t for t in results.get("tests", [])):
        problems.append("a total score, or a score on every test, is required")
    for number, test in enumerate(results.get("tests", [])):
        problems += [f"test {number}: unknown field {k!r}" for k in test if k not in GRADESCOPE_TEST]
        for key in ("score", "max_score"):
            if key in test and (not isinstance(test[key], (int, float)) or isinstance(test[key], bool)):
                problems.append(f"test {number}: {key} must be a number")
        if test.get("status") not in (None, "passed", "failed"):
            problems.append(f"test {number}: status must be 'passed' or 'failed'")
        if "max_score" in test and "score" in test and test["score"] > test["max_score"]:
            problems.append(f"test {number}: score above max_score")
    if results.get("visibility") not in (None, "hidden", "after_due_date", "after_published", "visible"):
        problems.append("visibility must be hidden, after_due_date, after_published or visible")
    return problems


def _reasons_by_name(text: str) -> dict[str, str]:
    out = {}
    for part in (text or "").split(" | "):
        name, sep, reason = part.partition(": ")
        if sep and name.isidentifier():
            out.setdefault(name, reason)
    return out


# ---- writing -------------------------------------------------------------------------


def cell_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " | ".join(f"{k}: {v}" for k, v in value.items())
    return "" if value is None else str(value)


def _write_atomic(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; grades are read by the course team
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_csv_atomic(path: Path, header: list[str], rows: list) -> None:
    """Write a table (rows: dicts by column, or lists) to a temporary file next to ``path``,
    then rename it over ``path``."""

    def write(f):
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            values = [row.get(c) for c in header] if isinstance(row, dict) else row
            writer.writerow([cell_text(v) for v in values])

    _write_atomic(path, write)


def write_json_atomic(path: Path, data) -> None:
    _write_atomic(path, lambda f: json.dump(data, f, indent=2))


def check_output_path(option: str, path: Path) -> str | None:
    """Why ``path`` cannot be written as an output file (None if it can): checked before
    grading starts, so that hours of grading are never lost to a typo."""
    path = Path(path)
    if path.is_dir():
        return f"{option} {path}: is a folder; give a file name, e.g. {path / 'scores.csv'}"
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"{option} {path}: folder {parent} does not exist"
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{option} {path}: not writable"
    return None


def closing_summary(rows: list[dict], skipped: int, slowest: int = 3) -> str:
    """Counts by status, files that matched no set, and the slowest submissions."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines = ["status counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    if skipped:
        lines.append(f"{skipped} file(s) matched no exercise set (rows with status 'unknown set')")
    timed = sorted((r for r in rows if isinstance(r.get("seconds"), (int, float))), key=lambda r: -r["seconds"])
    if timed:
        lines.append("slowest: " + ", ".join(f"{r['submission']} ({r['seconds']:g} s)" for r in timed[:slowest]))
    return "\n".join(lines)
