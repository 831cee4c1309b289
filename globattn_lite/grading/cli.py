"""``python -m globattn_lite.grade``: the command line of the grader."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from globattn_lite.grading import tables
from globattn_lite.grading.run import DEFAULT_SALT, Limits, child_main, grade


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m globattn_lite.grade",
        description="Grade exercise submissions (.ipynb / .py files or folders) into a table. Each "
        "submission runs from scratch in its own sandboxed process; see the documentation "
        "of globattn_lite.grading for the columns and the trust model.",
    )
    parser.add_argument("submissions", nargs="+", help=".ipynb/.py files or folders")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="file to write (atomically): the detail CSV, or results.json with --format gradescope",
    )
    parser.add_argument(
        "--format",
        choices=["csv", "gradescope"],
        default="csv",
        help="csv: one row per file (default); gradescope: Gradescope's results.json",
    )
    parser.add_argument("--summary", type=Path, default=None, help="also write a per-student summary CSV")
    parser.add_argument(
        "--lms",
        choices=tables.LMS_FORMATS,
        default=None,
        help="also write a gradebook CSV for this LMS (needs --lms-out)",
    )
    parser.add_argument("--lms-out", type=Path, default=None, help="where to write the --lms gradebook CSV")
    parser.add_argument(
        "--lms-title", default="globattn-lite exercises", help="the assignment's column title in the gradebook CSV"
    )
    parser.add_argument(
        "--roster",
        type=Path,
        default=None,
        help="CSV with a 'student' column (and name, id, sis_id, login, email, section)",
    )
    parser.add_argument(
        "--points", type=Path, default=None, help="JSON {exercise name: points} (default 1 each; free-text answers 0)"
    )
    parser.add_argument(
        "--student-from",
        default="folder",
        help="how file paths name students: folder (default), canvas, or regex:PATTERN with a (?P<student>...) group",
    )
    parser.add_argument(
        "--seed-salt", default=DEFAULT_SALT, help="secret mixed into each student's seed for the random check inputs"
    )
    parser.add_argument(
        "--public-inputs",
        action="store_true",
        help="grade with the notebooks' public random inputs instead of per-student ones",
    )
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    parser.add_argument(
        "--tests",
        type=Path,
        default=None,
        help="folder of instructor checks: *.py files with check_<name>(candidate) functions",
    )
    defaults = Limits()
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=defaults.cell_timeout,
        help=f"seconds per code cell (default {defaults.cell_timeout:g})",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=defaults.call_timeout,
        help=f"seconds per call of a submitted function (default {defaults.call_timeout:g}, as in the notebook checks)",
    )
    parser.add_argument(
        "--check-budget",
        type=float,
        default=defaults.check_budget,
        help=f"seconds per exercise check in total (default {defaults.check_budget:g}, as in the notebook checks)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.submission_timeout,
        help=f"seconds per submission in total (default {defaults.submission_timeout:g})",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=defaults.memory_mb,
        help=f"address-space limit of a sandbox, POSIX only (default {defaults.memory_mb})",
    )
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_grade-one"]:  # internal: the trusted per-submission process
        return child_main(argv[1])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    for option, value in (
        ("--cell-timeout", args.cell_timeout),
        ("--call-timeout", args.call_timeout),
        ("--check-budget", args.check_budget),
        ("--timeout", args.timeout),
        ("--memory-mb", args.memory_mb),
    ):
        if not value > 0:  # also rejects nan
            parser.error(f"{option} must be > 0, got {value}")
    if args.tests is not None and not args.tests.is_dir():
        parser.error(f"--tests {args.tests}: not a folder")
    if (args.lms is None) != (args.lms_out is None):
        parser.error("--lms and --lms-out go together")
    for option, path in (("--out", args.out), ("--summary", args.summary), ("--lms-out", args.lms_out)):
        problem = None if path is None else tables.check_output_path(option, path)
        if problem:
            parser.error(problem)  # before grading: nothing is lost
    start = time.monotonic()
    try:
        roster = tables.read_roster(args.roster) if args.roster else None
        columns, rows = grade(
            args.submissions,
            jobs=args.jobs,
            tests_dir=args.tests,
            limits=Limits(args.cell_timeout, args.call_timeout, args.timeout, args.memory_mb, args.check_budget),
            progress=lambda text: print(text, file=sys.stderr, flush=True),
            student_from=args.student_from,
            roster=roster,
            salt=None if args.public_inputs else args.seed_salt,
        )
        points = tables.read_points(args.points, columns)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tables.add_points(rows, columns, points, roster)
    seconds = time.monotonic() - start
    if args.format == "gradescope":
        tables.write_json_atomic(args.out, tables.gradescope_results(rows, columns, points, seconds))
    elif not rows:
        print("error: no submissions found", file=sys.stderr)
        return 2
    else:
        tables.write_csv_atomic(args.out, tables.detail_header(columns), rows)
    header, summary = tables.summary_rows(rows, columns, points)
    if args.summary:
        tables.write_csv_atomic(args.summary, header, summary)
    if args.lms:
        tables.write_csv_atomic(args.lms_out, *tables.lms_table(summary, roster, args.lms, args.lms_title))
    print(tables.closing_summary(rows, sum(r["status"] == "unknown set" for r in rows)), file=sys.stderr)
    print(f"wrote {args.out} ({len(rows)} row(s)) in {seconds:.0f} s", file=sys.stderr)
    return 0
