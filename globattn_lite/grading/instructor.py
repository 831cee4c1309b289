"""Instructor checks (``--tests DIR``): extra checks an instructor adds to the course's.

Every ``*.py`` file in DIR may define functions ``check_<name>(candidate)``; each one counts
as one more check of exercise ``<name>``. ``candidate`` is the submission's function (calls
run in the sandbox, with the per-call time limit; a failing call raises
``SubmissionCallError``) or its answer value. Return a list of failure messages (empty or
``None`` means passed; ``True``/``False`` and a single message string also work); an
``AssertionError`` or a failing call counts as a failure. Any other exception is a bug in the
instructor check: it is reported as a grader error and does not count against the student.
For an exercise name the course does not ship, the file must also set
``EXERCISE_SET = "ex1_dense"`` (say), and the name gets its own column. Example::

    def check_causal_mask(causal_mask):
        m = causal_mask(1000)
        return [] if m[999, 0] and not m[0, 999] else ["wrong at n = 1000"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from globattn_lite.grading.sandbox import SubmissionCallError


@dataclass
class InstructorVerdict:
    """``failure`` None: passed; ``broken``: the check itself raised (a grader error)."""

    failure: str | None = None
    broken: bool = False


def load_instructor_checks(directory: Path) -> tuple[dict[str, list], dict[str, str]]:
    """({name: [(label, check function)]}, {extra name: exercise set}). Raises ValueError."""
    import importlib.util

    from globattn_lite.checks import EXERCISE_SETS

    shipped = {n: s for s, names in EXERCISE_SETS.items() for n in names}
    checks: dict[str, list] = {}
    extra: dict[str, str] = {}
    files = sorted(Path(directory).glob("*.py"))
    if not files:
        raise ValueError(f"--tests {directory}: no .py files with check_<name> functions")
    for number, path in enumerate(files):
        spec = importlib.util.spec_from_file_location(f"_instructor_checks_{number}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - whatever the instructor's file raises is a usage error
            raise ValueError(f"--tests: {path} failed to import: {type(exc).__name__}: {exc}") from None
        set_name = getattr(module, "EXERCISE_SET", None)
        if set_name is not None and set_name not in EXERCISE_SETS:
            raise ValueError(f"--tests: {path}: EXERCISE_SET must be one of {sorted(EXERCISE_SETS)}")
        for attr in sorted(vars(module)):
            fn = getattr(module, attr)
            if not (attr.startswith("check_") and callable(fn)):
                continue
            name = attr[len("check_") :]
            if name not in shipped:
                if set_name is None:
                    raise ValueError(
                        f"--tests: {path}: {attr} checks {name!r}, which the course does not "
                        "ship; set EXERCISE_SET = '<set>' in that file to add it"
                    )
                extra[name] = set_name
            checks.setdefault(name, []).append((f"{path.name}:{attr}", fn))
    return checks, extra


def run_instructor_check(fn, candidate) -> InstructorVerdict:
    """Run one instructor check on a candidate."""
    try:
        result = fn(candidate)
    except SubmissionCallError as exc:
        return InstructorVerdict(str(exc))
    except AssertionError as exc:
        return InstructorVerdict(f"AssertionError: {exc}" if str(exc) else "AssertionError")
    except Exception as exc:  # noqa: BLE001 - a bug in the instructor check, not the student's fault
        return InstructorVerdict(f"{type(exc).__name__}: {exc}", broken=True)
    if result is None or result is True:
        return InstructorVerdict()
    if result is False:
        return InstructorVerdict("failed")
    if isinstance(result, str):  # one message, not a list of its characters
        return InstructorVerdict(result or None)
    try:
        failures = [str(x) for x in result]
    except TypeError:  # not a list: a bug in the instructor check
        return InstructorVerdict(f"returned {result!r}, expected a list of failure messages", broken=True)
    return InstructorVerdict("; ".join(failures) if failures else None)
