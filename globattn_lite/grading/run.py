"""Grading: one submission in its own trusted process, and a whole class folder.

:func:`grade_submission` runs in a per-submission process (``--_grade-one``): it starts the
sandbox, runs the cells, then the genuine checks (``globattn_lite.checks.run_check``, with
the submission's seed) and the instructor checks on the submission's functions, and returns
plain data. :func:`grade` discovers the submissions, grades them ``jobs`` at a time, and
returns one row per file, plus a row for every rostered student without a submission.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from globattn_lite._validate import float_arg, int_arg
from globattn_lite.checks import DEFAULT_BUDGET, DEFAULT_TIMEOUT
from globattn_lite.grading.submissions import MalformedSubmission, Submission, discover, load_cells

DEFAULT_SALT = "globattn-lite"


@dataclass
class Limits:
    """Time limits (seconds) and sandbox resources for one submission. The per-call limit
    and the per-check budget default to the notebook checks' own (``checks.DEFAULT_TIMEOUT``,
    ``checks.DEFAULT_BUDGET``), so both give the same verdict for the same code."""

    cell_timeout: float = 30.0
    call_timeout: float = DEFAULT_TIMEOUT
    submission_timeout: float = 300.0
    memory_mb: int = 2048
    check_budget: float = DEFAULT_BUDGET

    def __post_init__(self):
        for name in ("cell_timeout", "call_timeout", "submission_timeout", "check_budget"):
            setattr(self, name, float_arg(name, getattr(self, name), strictly_positive=True))
        self.memory_mb = int_arg("memory_mb", self.memory_mb, minimum=1)


def seed_for(who: str, set_name: str, salt: str = DEFAULT_SALT) -> int:
    """The seed of a submission's random check inputs: a hash of (salt, student, set), so
    each student gets other inputs than the notebook's public ones and than each other."""
    digest = hashlib.sha256(f"{salt}\0{who}\0{set_name}".encode()).hexdigest()
    return int(digest[:8], 16)


def names_for(set_name: str, extra: dict[str, str]) -> list[str]:
    from globattn_lite.checks import EXERCISE_SETS

    return list(EXERCISE_SETS[set_name]) + sorted(n for n, s in extra.items() if s == set_name)


def grade_submission(
    path: Path,
    set_name: str,
    cells: list[str],
    limits: Limits,
    public_root: Path,
    tests_dir: Path | None = None,
    seed: int | None = None,
) -> dict:
    """Grade one submission: {"status", "scores", "reasons", "needs_review", "grader_errors"}."""
    from globattn_lite.checks import USES_COURSE_CODE, run_check, specs
    from globattn_lite.grading.instructor import load_instructor_checks, run_instructor_check
    from globattn_lite.grading.sandbox import RemoteFunction, Sandbox

    instructor, extra = load_instructor_checks(tests_dir) if tests_dir else ({}, {})
    all_specs = specs()
    scores: dict[str, float] = {}
    reasons: list[str] = []
    needs_review: dict[str, str] = {}
    grader_errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="globattn-grade-") as tmp:
        workdir = Path(tmp)
        shutil.copyfile(path, workdir / path.name)  # the sandbox sees a copy only
        sandbox = Sandbox(cells, workdir, limits, public_root)
        try:
            sandbox.run_all_cells()
            for name in names_for(set_name, extra):
                spec = all_specs.get(name)
                kind, value = sandbox.kind(name)
                if kind in ("missing", "unavailable"):
                    if not (spec is not None and spec.free_text):
                        scores[name] = 0.0
                    reasons.append(f"{name}: " + ("not defined" if kind == "missing" else str(value)))
                    continue
                candidate = RemoteFunction(sandbox, name) if kind == "callable" else value
                passed, total, why = 0.0, 0.0, ""
                if spec is not None:
                    result = run_check(
                        name,
                        candidate,
                        timeout=limits.call_timeout,
                        budget=limits.check_budget,
                        seed=None if spec.is_answer else seed,
                    )
                    if spec.free_text:  # recorded for the instructor, never a score
                        if result.needs_review is not None:
                            needs_review[name] = result.needs_review
                        else:
                            reasons.append(f"{name}: {result.short_reason()}")
                        continue
                    passed, total, why = result.points, result.max_points, result.short_reason()
                    borrowed = [f.reason for f in result.failures if f.reason.startswith(USES_COURSE_CODE)]
                    if borrowed:
                        scores[name] = 0.0  # no credit at all, not even for the checks run before
                        reasons.append(f"{name}: {borrowed[0]}")
                        continue
                for label, fn in instructor.get(name, []):
                    verdict = run_instructor_check(fn, candidate)
                    if verdict.broken:
                        grader_errors.append(
                            f"instructor check {label} raised {textwrap.shorten(verdict.failure, 140)}"
                        )
                        continue
                    total += 1
                    if verdict.failure is None:
                        passed += 1
                    elif not why:
                        why = f"instructor check {label}: {textwrap.shorten(verdict.failure, 140)}"
                scores[name] = passed / total if total else 0.0
                if passed < total:
                    reasons.append(f"{name}: {why or 'failed'}")
        finally:
            sandbox.stop()
    status = sandbox.status
    if grader_errors and status == "graded":
        status = "grader error"
    cell_notes = sandbox.notes[:3] + (
        [f"... and {len(sandbox.notes) - 3} more cell problems"] if len(sandbox.notes) > 3 else []
    )
    return {
        "status": status,
        "scores": scores,
        "reasons": grader_errors + cell_notes + reasons,
        "needs_review": needs_review,
    }


def child_main(job_path: str) -> int:
    """The per-submission process (``python -m globattn_lite.grade --_grade-one JOB``)."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    result = grade_submission(
        Path(job["path"]),
        job["set"],
        job["cells"],
        Limits(**job["limits"]),
        Path(job["public_root"]),
        Path(job["tests"]) if job["tests"] else None,
        job["seed"],
    )
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def _row(sub: Submission | None, status: str, scores: dict, reasons: list[str], **extra) -> dict:
    values = list(scores.values())
    row = {
        "student": sub.student if sub else "",
        "lms_id": sub.lms_id if sub else "",
        "submission": str(sub.path) if sub else "",
        "exercise_set": (sub.exercise_set or "") if sub else "",
        "status": status,
        "total": sum(values) / len(values) if values else 0.0,
    }
    row.update(scores)
    row["reasons"] = " | ".join(" ".join(r.split()) for r in reasons)
    row.update(extra)
    return row


def _grade_in_child(sub: Submission, cells, notes, limits: Limits, tests_dir, names, public_root, seed) -> dict:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="globattn-job-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job = {
            "path": str(sub.path.resolve()),
            "set": sub.exercise_set,
            "cells": cells,
            "limits": asdict(limits),
            "tests": str(tests_dir.resolve()) if tests_dir else None,
            "result": str(result_path),
            "public_root": str(public_root),
            "seed": seed,
        }
        job_path.write_text(json.dumps(job), encoding="utf-8")
        # replays after restarts can take a while: allow a few times the budget before giving up
        wall = limits.submission_timeout * 2 + 60
        with open(Path(tmp) / "stderr.txt", "wb") as err:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "globattn_lite.grade", "--_grade-one", str(job_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    timeout=wall,
                )
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        seconds = round(time.monotonic() - start, 1)
        if code == 0 and result_path.exists():
            result = json.loads(result_path.read_text(encoding="utf-8"))
            return _row(
                sub,
                result["status"],
                result["scores"],
                notes + result["reasons"],
                seed=seed,
                seconds=seconds,
                needs_review=result["needs_review"],
            )
        tail = (Path(tmp) / "stderr.txt").read_bytes()[-600:].decode("utf-8", "replace").strip().splitlines()
        detail = tail[-1] if tail else f"exit code {code}"
        return _row(
            sub,
            "grader error",
            {n: 0.0 for n in names},
            notes + [f"the grading process failed: {detail}"],
            seed=seed,
            seconds=seconds,
        )


def _flag_duplicates(rows: list[dict]) -> None:
    """Several files of one student for one set: flag them all; the newest one counts."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["student"] and row["exercise_set"]:
            groups.setdefault((row["student"], row["exercise_set"]), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        newest = max(group, key=lambda r: (_mtime(r["submission"]), r["submission"]))
        for row in group:
            row["flags"] = _add(
                row.get("flags", ""),
                f"duplicate: {len(group)} files for this student and set; "
                + ("this newest one counts" if row is newest else "not counted"),
            )
            row["counted"] = row is newest


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _add(flags: str, text: str) -> str:
    return f"{flags}; {text}" if flags else text


def grade(
    paths,
    *,
    jobs: int = 1,
    limits: Limits | None = None,
    tests_dir: Path | None = None,
    progress=None,
    student_from: str = "folder",
    roster: dict | None = None,
    salt: str | None = DEFAULT_SALT,
) -> tuple[list[str], list[dict]]:
    """Grade submissions; returns (exercise columns, rows sorted by student and submission).

    ``roster`` maps student keys to their roster row (see ``grading.tables.read_roster``):
    rostered students without a submission get a ``missing`` row, submissions of students
    not on it are flagged. ``salt`` None grades with the public (notebook) inputs."""
    from globattn_lite.checks import EXERCISE_SETS
    from globattn_lite.grading.instructor import load_instructor_checks
    from globattn_lite.grading.sandbox import make_public_package

    jobs = int_arg("jobs", jobs, minimum=1)
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a grading.Limits or None, got {type(limits).__name__}")
    extra = load_instructor_checks(tests_dir)[1] if tests_dir else {}
    submissions, skip_notes = discover(paths, student_from)
    for note in skip_notes:
        if progress:
            progress(note)
    tasks, rows = [], []
    for sub in submissions:
        if sub.exercise_set is None:
            rows.append(
                _row(sub, "unknown set", {}, [f"the file name matches no exercise set ({', '.join(EXERCISE_SETS)})"])
            )
            continue
        names = names_for(sub.exercise_set, extra)
        try:
            cells, notes = load_cells(sub.path)
        except (MalformedSubmission, OSError) as exc:
            rows.append(_row(sub, "malformed", {n: 0.0 for n in names}, [f"malformed: {exc}"]))
            continue
        who = sub.student or sub.path.name
        seed = None if salt is None else seed_for(who, sub.exercise_set, salt)
        tasks.append((sub, cells, notes, names, seed))
    with tempfile.TemporaryDirectory(prefix="globattn-public-") as public_root:
        if tasks:
            make_public_package(Path(public_root))
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(_grade_in_child, sub, cells, notes, limits, tests_dir, names, public_root, seed)
                for sub, cells, notes, names, seed in tasks
            ]
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                row = future.result()
                rows.append(row)
                if progress:
                    progress(f"[{done}/{len(tasks)}] {row['submission']}: {row['total']:.2f} ({row['status']})")
    _flag_duplicates(rows)
    if roster is not None:
        _join_roster(rows, roster)
    rows.sort(key=lambda r: (r["student"], r["submission"]))
    present = [s for s in EXERCISE_SETS if any(r["exercise_set"] == s for r in rows)]
    columns = [n for s in present for n in names_for(s, extra)]
    return columns, rows


def _join_roster(rows: list[dict], roster: dict) -> None:
    by_lms_id = {entry.get("id", ""): key for key, entry in roster.items() if entry.get("id")}
    seen = set()
    for row in rows:
        key = row["student"] if row["student"] in roster else by_lms_id.get(row.get("lms_id", ""))
        if key is None:
            if row["student"] or row["status"] != "unknown set":
                row["flags"] = _add(row.get("flags", ""), "not on the roster")
            continue
        row["student"] = key
        seen.add(key)
    for key, entry in roster.items():
        if key not in seen:
            rows.append(
                {
                    "student": key,
                    "lms_id": entry.get("id", ""),
                    "submission": "",
                    "exercise_set": "",
                    "status": "missing",
                    "total": 0.0,
                    "reasons": "no submission from this student",
                }
            )
