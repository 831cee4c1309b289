"""What the checks and the grader's sandbox do around one call of a learner's function.

Shared by ``globattn_lite.checks`` (calls in the notebook) and the grader's sandbox worker
(calls in a separate process), so that both give the same verdict for the same code:

* ``fresh_strings``: every string argument is a new object, never the interned literal the
  check was written with. ``policy is "dense"`` is then False in both places (a string
  decoded from the grader's wire format is never interned either); ``==`` works in both.
* ``changed_arguments``: which arguments a call modified in place (compared with a copy
  taken before the call).
* ``CourseCodeWatch``: notes the first call, during the learner's function, of code that
  lives in the course package (the lessons' helpers solve most exercises; a check grades
  the learner's own code).

This module holds no answers: the sandbox may import it.
"""

from __future__ import annotations

import os
import sys

import numpy as np

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def fresh_strings(obj, intern: bool = False):
    """``obj`` with every string replaced by a new, non-interned copy (``intern=True``:
    by the interned string instead), inside tuples, lists and dict values too."""
    if isinstance(obj, str):
        return sys.intern(obj) if intern else (obj + " ")[:-1]
    if isinstance(obj, tuple):
        return tuple(fresh_strings(x, intern) for x in obj)
    if isinstance(obj, list):
        return [fresh_strings(x, intern) for x in obj]
    if isinstance(obj, dict):
        return {k: fresh_strings(v, intern) for k, v in obj.items()}
    return obj


def contains_strings(obj) -> bool:
    if isinstance(obj, str):
        return True
    if isinstance(obj, (tuple, list)):
        return any(contains_strings(x) for x in obj)
    if isinstance(obj, dict):
        return any(contains_strings(x) for x in obj.values())
    return False


def _identical(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - cannot tell: do not blame the learner
        return True


def changed_arguments(before: tuple, after: tuple, names) -> list[str]:
    """Names of the arguments that differ between ``before`` and ``after`` (each a pair
    ``(args, kwargs)``); positional arguments are named from ``names`` (else ``#i``)."""
    (args_b, kwargs_b), (args_a, kwargs_a) = before, after
    names = list(names)
    changed = [
        names[i] if i < len(names) else f"#{i}"
        for i, (x, y) in enumerate(zip(args_b, args_a, strict=True))
        if not _identical(x, y)
    ]
    changed += [k for k in kwargs_b if not _identical(kwargs_b[k], kwargs_a.get(k))]
    return changed


class CourseCodeWatch:
    """Context manager: ``.module`` is the first course module whose Python code ran inside
    the ``with`` block (None if none did). Uses ``sys.setprofile`` on the current thread."""

    def __init__(self, directories=(PACKAGE_DIR,)):
        self.prefixes = tuple(os.path.join(os.path.abspath(d), "") for d in directories)
        self.module: str | None = None

    def _profile(self, frame, event, arg):
        if event == "call" and self.module is None:
            filename = frame.f_code.co_filename
            if filename.startswith(self.prefixes) and filename != __file__:
                self.module = frame.f_globals.get("__name__") or os.path.basename(filename)

    def __enter__(self):
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)
        return False
