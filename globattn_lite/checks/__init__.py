"""Instant checks for the exercise notebooks, also used by the batch grader.

In a notebook, right after an exercise::

    from globattn_lite.checks import check
    check("causal_mask", causal_mask);

prints a short verdict: PASSED with the number of checks, or the smallest input that failed,
what was expected, what came back, and a hint when the answer matches a known mistake (in a
notebook a wrong mask is also drawn beside the expected one, differing cells outlined). The
call returns a :class:`CheckResult` (passed, total, score, failures), which is what the
grader uses (``run_check`` is the same without printing).

Layout
------
``engine`` runs checks (results, time limits, cases, specs); ``compare`` compares answers;
``inputs`` builds inputs; one module per exercise set (``ex1_dense`` ... ``ex5_costs``) holds
that set's references, edge cases, properties and catalogue of mistakes, each mistake a
named function. The exercise names come from the specs (:func:`exercise_sets`).

How a check works
-----------------
Each exercise name has a *spec*: a small, obviously-right reference implementation, a few
fixed edge cases (smallest first), a few properties tested on random inputs, and a catalogue
of typical wrong implementations with a hint each. A failing answer is compared with the
catalogue on the failing input; if it gives the same output as a known mistake (or raises
the same kind of exception), that mistake's hint is shown.

Random inputs come from hypothesis, derandomised (the same inputs on every run and machine,
no example database written to disk); hypothesis shrinks a failure to a minimal input. The
grader may pass a ``seed`` to draw other inputs per student; the notebooks never do.

Scores and partial credit
-------------------------
One fixed case or one property counts as one check; PASSED needs every check. The score
(0 to 1) weighs the checks: a property (about 40 random inputs) weighs 2, an edge case 1,
and a one-element *warm-up* case 0, because almost any answer passes it (an all-True mask
is right for n = 1): an answer that gets only the warm-ups right scores 0.

Quiz answers are checked without ever printing the expected answer, and hints never name
it. A free-text answer is not graded by keywords: the check only asks for a sentence and
says RECORDED; the grader puts the text in a ``needs_review`` column for the instructor.

What counts as a wrong answer
-----------------------------
Besides wrong values: modifying an input in place (the caller's array must not change:
each call gets fresh copies, compared with the originals afterwards); comparing strings with
``is`` (every string argument is a fresh, non-interned object, in the notebook as in the
grader, and a failure that disappears with interned strings gets that hint); and calling the
course package's own implementation (``globattn_lite.patterns``, ``softmax_tools``, these
checks...): the lessons' helpers solve most exercises by design, so a call into the package
during a check fails it with "uses the course's implementation".

Time limits and safety
----------------------
Every call of the learner's code has a time limit (``timeout``, default
``DEFAULT_TIMEOUT`` = 2 s) and every check a total budget (``DEFAULT_BUDGET`` = 30 s); the
grader uses the same defaults. On POSIX, in the main thread (a Jupyter kernel, a script), the
limit is a ``SIGALRM`` timer that interrupts the call, so an infinite loop just becomes a
failed check. Elsewhere (Windows, or when called from another thread) the call runs in a
daemon worker thread and the check stops waiting after ``timeout``; Python cannot kill a
thread, so a runaway call keeps running in the background until the kernel restarts, and the
verdict says so. The batch grader does not rely on either: it runs submissions in separate,
killable processes (see ``globattn_lite.grading``).

A check never raises because of the learner's code: exceptions (including ``SystemExit``),
wrong types, NaNs, objects that refuse comparison and timeouts all become failed checks with
the exception's type and message.
"""

from globattn_lite.checks.engine import (
    DEFAULT_BUDGET,
    DEFAULT_TIMEOUT,
    PROPERTY_WEIGHT,
    USES_COURSE_CODE,
    Case,
    CheckResult,
    Failure,
    IsolatedCandidate,
    Outcome,
    Spec,
    check,
    exercise_sets,
    run_check,
    specs,
)

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_TIMEOUT",
    "EXERCISE_SETS",
    "PROPERTY_WEIGHT",
    "USES_COURSE_CODE",
    "Case",
    "CheckResult",
    "Failure",
    "IsolatedCandidate",
    "Outcome",
    "Spec",
    "check",
    "exercise_sets",
    "run_check",
    "specs",
]


def __getattr__(name):
    if name == "EXERCISE_SETS":  # derived from the specs, built on first use
        return exercise_sets()
    raise AttributeError(f"module 'globattn_lite.checks' has no attribute {name!r}")
