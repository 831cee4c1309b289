"""``python -m globattn_lite.grade``: the batch grader's command (it lives in
``globattn_lite.grading``; this module keeps the command and the old names working)."""

from __future__ import annotations

import sys

from globattn_lite.grading.cli import main
from globattn_lite.grading.instructor import load_instructor_checks, run_instructor_check
from globattn_lite.grading.run import Limits, grade, grade_submission, names_for, seed_for
from globattn_lite.grading.sandbox import RemoteFunction, Reply, Sandbox, SubmissionCallError
from globattn_lite.grading.submissions import MalformedSubmission, discover, exercise_set_for, load_cells, strip_magics
from globattn_lite.grading.tables import write_csv_atomic
from globattn_lite.grading.wire import MAX_ELEMENTS, Opaque, ProtocolError, decode, encode
from globattn_lite.grading.worker import apply_limits

__all__ = [
    "MAX_ELEMENTS",
    "Limits",
    "MalformedSubmission",
    "Opaque",
    "ProtocolError",
    "RemoteFunction",
    "Reply",
    "Sandbox",
    "SubmissionCallError",
    "apply_limits",
    "decode",
    "discover",
    "encode",
    "exercise_set_for",
    "grade",
    "grade_submission",
    "load_cells",
    "load_instructor_checks",
    "main",
    "names_for",
    "run_instructor_check",
    "seed_for",
    "strip_magics",
    "write_csv_atomic",
]

if __name__ == "__main__":
    sys.exit(main())
