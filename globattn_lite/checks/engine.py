"""The checks' engine: results, calling the learner's code safely, cases, specs, running.

The exercise sets (``ex1_dense`` ... ``ex5_costs``) only describe *what* to check; this
module decides *how*. It imports no exercise set at the top, so the sets may import it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import signal
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from globattn_lite import _callguard
from globattn_lite._validate import float_arg
from globattn_lite.checks.compare import _fmt, _same, _size

#: Seconds per call of the learner's function, and per check in total. The grader uses the
#: same values by default (``python -m globattn_lite.grade --call-timeout/--check-budget``),
#: so a slow function gets the same verdict in the notebook and in the grader.
DEFAULT_TIMEOUT = 2.0
DEFAULT_BUDGET = 30.0
MAX_EXAMPLES = 40  # random inputs per property
# Extra calls hypothesis may spend making a failing input smaller. A count, not a time, so
# that the reported input is the same on a fast laptop and on a loaded CI machine.
MAX_SHRINK_CALLS = 80
#: Partial credit: a property (about MAX_EXAMPLES random inputs) weighs this many edge cases.
PROPERTY_WEIGHT = 2.0

#: The exercise-set modules, in notebook order; each defines SET and specs(st, hnp).
SET_MODULES = ("ex1_dense", "ex2_sparse", "ex3_global", "ex4_softmax", "ex5_costs")

USES_COURSE_CODE = "uses the course's implementation"
_COURSE_CODE_HINT = (
    "write this one yourself (numpy is fine): the course package's helpers solve "
    "most exercises by design, so a check gives no credit for calling them"
)
_IS_HINT = (
    "compare strings with ==, not `is`: `is` asks whether two names are the same object, "
    "and a string built at run time (read from a file, sent by the grader) is a different "
    "object from the literal in your code"
)
_MUTATION_HINT = (
    "work on a copy (x = np.array(x, dtype=float), or x.copy()) or build a new array: the caller's data must not change"
)


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class Failure:
    """One failed check: where, on what input, and why."""

    check: str  # e.g. "edge case 2" or "property: random masks"
    input: str
    reason: str  # short: "wrong values ...", "raised ValueError: ...", "timed out after 2 s"
    expected: str = ""
    got: str = ""
    hint: str | None = None
    size: int = 0  # used to show the smallest failing input first
    masks: tuple | None = field(default=None, repr=False)  # (expected, got) boolean masks, for a picture


@dataclass
class CheckResult:
    """What a check found: ``passed`` of ``total`` checks passed; failures smallest first.

    ``points`` of ``max_points`` is the weighted count behind :attr:`score` (see
    ``globattn_lite.checks``: warm-up cases weigh 0, edge cases 1, properties 2).
    ``needs_review`` holds a free-text answer recorded for the instructor (not scored).
    ``seed`` is the seed of the random inputs (None: the public, derandomised inputs)."""

    name: str
    passed: int
    total: int
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    points: float | None = None
    max_points: float | None = None
    needs_review: str | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.points is None:
            self.points, self.max_points = float(self.passed), float(self.total)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def score(self) -> float:
        """Weighted fraction of checks passed, 0 to 1 (1 only when every check passed)."""
        if self.ok:
            return 1.0
        return self.points / self.max_points if self.max_points else 0.0

    def short_reason(self, width: int = 160) -> str:
        """One line for a grading table ('' when everything passed)."""
        if not self.failures:
            return ""
        f = self.failures[0]
        text = f"{f.reason} (input: {' '.join(f.input.split())})" if f.input else f.reason
        if f.hint:
            text += f"; hint: {f.hint}"
        return textwrap.shorten(text, width=width, placeholder=" ...")

    def report(self) -> str:
        """The verdict printed under the exercise."""
        if self.needs_review is not None:
            lines = [f"{self.name}: RECORDED for your instructor to read (free text is not graded automatically)."]
        elif self.ok:
            lines = [f"{self.name}: PASSED ({self.total} of {self.total} checks)."]
        else:
            lines = [f"{self.name}: FAILED ({self.passed} of {self.total} checks passed)."]
            if self.failures:
                f = self.failures[0]
                lines.append(f"  failing check: {f.check}")
                if f.input:
                    lines.append(_labelled("input", f.input))
                lines.append(f"  problem: {f.reason}")
                if f.expected:
                    lines.append(_labelled("expected", f.expected))
                if f.got:
                    lines.append(_labelled("got", f.got))
                if f.hint:
                    lines.append(
                        textwrap.fill(f"hint: {f.hint}", width=96, initial_indent="  ", subsequent_indent="        ")
                    )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def points_out_of(self, points: float) -> float:
        """``score * points``: the value an nbgrader test cell shows as its partial credit."""
        return round(self.score * float(points), 4)

    def __repr__(self) -> str:
        return f"<CheckResult {self.name}: {self.passed}/{self.total} passed>"


def _labelled(label: str, text: str) -> str:
    if "\n" not in text:
        return f"  {label}: {text}"
    return f"  {label}:\n" + textwrap.indent(text, "      ")


# --------------------------------------------------------------------------------------
# Calling the learner's code with a time limit
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """The result of one call: a value, an error (type name, message) or a timeout; and
    whether it modified its arguments or ran the course's own code."""

    value: Any = None
    error: tuple[str, str] | None = None
    timed_out: bool = False
    note: str | None = None
    mutated: list[str] = field(default_factory=list)  # names of arguments changed in place
    course_code: str | None = None  # the course module the call ran, if any


class IsolatedCandidate:
    """Base class for candidates that run elsewhere and enforce their own time limit.

    The grader's proxies for functions living in a sandboxed process subclass this and
    implement ``invoke``; the checks then call ``invoke`` instead of timing the call here.
    ``invoke`` gets fresh (non-interned) strings unless ``intern_strings`` and reports
    ``mutated`` and ``course_code`` as :class:`Outcome` fields.
    """

    def invoke(
        self, args: tuple, kwargs: dict, timeout: float, argnames=(), intern_strings: bool = False
    ) -> Outcome:  # pragma: no cover
        raise NotImplementedError


class _AlarmTimeout(BaseException):
    """Raised inside the learner's code by our SIGALRM handler (BaseException, so that an
    ``except Exception`` in the learner's code does not swallow it)."""


class _Abort(BaseException):
    """Stops a hypothesis run at once (hypothesis lets BaseExceptions through unshrunk)."""


def _alarm_available() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _watched_call(fn, args, kwargs, box):
    with _callguard.CourseCodeWatch() as watch:
        try:
            box["value"] = fn(*args, **kwargs)
        finally:
            box["course_code"] = watch.module


def _call_with_alarm(fn, args, kwargs, timeout) -> Outcome:
    def on_alarm(signum, frame):
        raise _AlarmTimeout()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)  # e.g. pytest-timeout's
    start = time.monotonic()
    box: dict[str, Any] = {}
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            _watched_call(fn, args, kwargs, box)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return Outcome(value=box["value"], course_code=box.get("course_code"))
    except _AlarmTimeout:
        return Outcome(timed_out=True)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the learner's errors are results
        return Outcome(error=_describe_exception(exc), course_code=box.get("course_code"))
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # give the previous timer back what remains of it
            left = old_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), old_interval)


def _call_in_thread(fn, args, kwargs, timeout) -> Outcome:
    box: dict[str, Any] = {}

    def target():
        try:
            _watched_call(fn, args, kwargs, box)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = _describe_exception(exc)

    worker = threading.Thread(target=target, name="globattn-check-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return Outcome(
            timed_out=True,
            note=(
                "the timed-out call could not be stopped (thread fallback: no SIGALRM here) and "
                "keeps running in the background; restart the kernel to stop it"
            ),
        )
    if "error" in box:
        return Outcome(error=box["error"], course_code=box.get("course_code"))
    return Outcome(value=box.get("value"), course_code=box.get("course_code"))


def _invoke(candidate, args: tuple, kwargs: dict, timeout: float, argnames=(), intern_strings: bool = False) -> Outcome:
    """One call of the candidate on fresh copies of the inputs (strings not interned unless
    ``intern_strings``); reports arguments it changed and course code it ran."""
    args = _callguard.fresh_strings(copy.deepcopy(args), intern_strings)
    kwargs = _callguard.fresh_strings(copy.deepcopy(kwargs), intern_strings)
    if isinstance(candidate, IsolatedCandidate):
        return candidate.invoke(args, kwargs, timeout, argnames=argnames, intern_strings=intern_strings)
    before = copy.deepcopy((args, kwargs))
    # the learner's debug prints and overflow warnings would flood the cell (a check makes
    # about a hundred calls): discard them, the verdict reports what matters
    quiet = io.StringIO()
    with (
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
        contextlib.redirect_stdout(quiet),
        contextlib.redirect_stderr(quiet),
    ):
        warnings.simplefilter("ignore")
        if _alarm_available():
            outcome = _call_with_alarm(candidate, args, kwargs, timeout)
        else:
            outcome = _call_in_thread(candidate, args, kwargs, timeout)
    if not outcome.timed_out:
        outcome.mutated = _callguard.changed_arguments(before, (args, kwargs), argnames)
    return outcome


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - a learner's exception whose __str__ fails
        message = "<message unavailable>"
    return type(exc).__name__, textwrap.shorten(message, width=300, placeholder=" ...")


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One call: positional and keyword arguments, and its weight for partial credit."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    weight: float = 1.0


def warmup(*args, **kwargs) -> Case:
    """A one-element case that many wrong answers pass: required for PASSED, weight 0."""
    return Case(args, kwargs, weight=0.0)


@dataclass
class Spec:
    """Everything a check needs for one exercise name."""

    name: str
    argnames: tuple[str, ...]
    reference: Callable  # obviously-right implementation (for answers: returns the answer)
    compare: Callable  # (got, expected) -> None or (reason, hint)
    cases: list[Case] = field(default_factory=list)  # fixed edge cases, smallest first
    properties: list[tuple[str, Callable]] = field(default_factory=list)  # (what, () -> strategy of Case)
    mistakes: list[tuple[str, Callable]] = field(default_factory=list)  # (hint, wrong implementation)
    is_answer: bool = False  # a value (constant) rather than a function
    free_text: bool = False  # an answer recorded for the instructor, never scored by the check

    def describe(self, case: Case) -> str:
        def one(name, value):
            if isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim == 2:
                return f"{name} ({value.shape[0]}x{value.shape[1]}, 1 = True):\n{_fmt(value, 300)}"
            text = _fmt(value, 300).replace("\n", "\n" + " " * (len(name) + 1))  # align rows under "name="
            return f"{name}={text}"

        # a case may pass the later arguments by keyword: its positional ones name a prefix of argnames
        parts = [one(n, v) for n, v in zip(self.argnames, case.args, strict=False)]
        parts += [one(n, v) for n, v in case.kwargs.items()]
        text = ", ".join(parts)
        if "\n" in text:  # masks: one argument per line
            text = "\n".join(parts)
        return text


_SPECS: dict[str, Spec] | None = None
_SETS: dict[str, tuple[str, ...]] | None = None


def _build() -> None:
    global _SPECS, _SETS
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    built, sets = {}, {}
    for module_name in SET_MODULES:
        module = importlib.import_module(f"globattn_lite.checks.{module_name}")
        made = module.specs(st, hnp)
        sets[module.SET] = tuple(spec.name for spec in made)
        for spec in made:
            assert spec.name not in built, spec.name
            built[spec.name] = spec
    _SPECS, _SETS = built, sets


def specs() -> dict[str, Spec]:
    """All specs by name (built on first use: hypothesis is imported lazily)."""
    if _SPECS is None:
        _build()
    return _SPECS


def exercise_sets() -> dict[str, tuple[str, ...]]:
    """Exercise sets and the names each one defines, in notebook order (from the specs)."""
    if _SETS is None:
        _build()
    return _SETS


# --------------------------------------------------------------------------------------
# Running a check
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _without_local_constants():
    """Stop hypothesis from mixing constants of "local" modules into the random inputs.

    Recent hypothesis versions sometimes draw integers found in the source code of modules
    outside site-packages, and cache them in ``./.hypothesis/constants``. Which modules count
    as local depends on how globattn_lite is installed and on what the learner imported, so
    the same check could draw different inputs in a notebook, in the grader and in CI, and
    it would leave a ``.hypothesis`` folder next to the learner's notebook. These are
    hypothesis internals: if they move, the checks still work and only lose this guarantee
    (tests/test_checks.py notices)."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants

        original, cache = providers._get_local_constants, providers.CONSTANTS_CACHE.cache
    except (ImportError, AttributeError):
        yield
        return
    cache.clear()  # entries may hold local constants from an earlier hypothesis run
    providers._get_local_constants = lambda: Constants()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


class _Run:
    """State of one check run: counts, failures, time budget, whether to stop early."""

    def __init__(self, spec, candidate, timeout, budget, allow_course_code=False, seed=None):
        self.spec, self.candidate, self.timeout = spec, candidate, timeout
        self.allow_course_code, self.seed = allow_course_code, seed
        self.deadline = time.monotonic() + budget
        self.passed = 0
        self.total = 0
        self.points = 0.0
        self.max_points = 0.0
        self.failures: list[Failure] = []
        self.notes: list[str] = []
        self.stop_reason: str | None = None  # set after a timeout, a stub or course code
        self.wrong_answers: dict[int, tuple] = {}  # id(failure) -> (case, answer, expected, error kind)

    def _call(self, case: Case, intern_strings: bool = False) -> Outcome:
        return _invoke(self.candidate, case.args, case.kwargs, self.timeout, self.spec.argnames, intern_strings)

    def evaluate(self, case: Case):
        """Call the candidate on one case; None if right, else a Failure."""
        spec = self.spec
        expected = spec.reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        if time.monotonic() > self.deadline:
            self.stop_reason = "the check ran out of time (is your function very slow?)"
            return Failure("", spec.describe(case), self.stop_reason, size=_size(case.args))
        outcome = self._call(case)
        failure = Failure("", spec.describe(case), "", size=_size((case.args, case.kwargs)))
        if outcome.note and outcome.note not in self.notes:
            self.notes.append(outcome.note)
        if outcome.timed_out:
            self.stop_reason = f"timed out after {self.timeout:g} s"
            failure.reason = self.stop_reason + " (an infinite loop?)"
            failure.hint = "look for a loop whose condition never becomes false"
            return failure
        if outcome.course_code and not self.allow_course_code:
            self.stop_reason = USES_COURSE_CODE
            failure.reason = f"{USES_COURSE_CODE} ({outcome.course_code})"
            failure.hint = _COURSE_CODE_HINT
            return failure
        if outcome.error:
            kind, message = outcome.error
            failure.reason = f"raised {kind}: {message}"
            if kind == "NotImplementedError":
                self.stop_reason = "not implemented yet"
                failure.reason = "not implemented yet"
                failure.hint = message or None
                return failure
            self.wrong_answers[id(failure)] = (case, None, expected, kind)
            self._diagnose_strings(case, failure, expected)
            return failure
        if outcome.mutated:
            failure.reason = f"modified its input {', '.join(outcome.mutated)} in place"
            failure.hint = _MUTATION_HINT
            return failure
        problem = self._compare(outcome.value, expected)
        if problem is None:
            return None
        failure.reason, failure.hint = problem
        failure.expected, failure.got = _fmt(expected), _fmt(outcome.value)
        if (
            _is_mask(expected)
            and _is_mask(outcome.value)
            and expected.shape == outcome.value.shape
            and min(expected.shape) >= 2
        ):  # a picture of a 1 x 1 mask shows nothing the text does not
            failure.masks = (expected, np.asarray(outcome.value))
        self.wrong_answers[id(failure)] = (case, outcome.value, expected, None)
        self._diagnose_strings(case, failure, expected)
        return failure

    def _compare(self, got, expected):
        try:
            return self.spec.compare(got, expected)
        except BaseException as exc:  # noqa: BLE001 - a learner's object that breaks comparison
            kind, message = _describe_exception(exc)
            return (f"could not compare the result ({kind}: {message})", None)

    def _diagnose_strings(self, case: Case, failure: Failure, expected) -> None:
        """A string argument that works only when it is the interned literal: ``is``."""
        if not _callguard.contains_strings((case.args, case.kwargs)):
            return
        outcome = self._call(case, intern_strings=True)
        if (
            not (outcome.timed_out or outcome.error or outcome.course_code)
            and self._compare(outcome.value, expected) is None
        ):
            failure.hint = _IS_HINT
            self.wrong_answers.pop(id(failure), None)  # the diagnosis is settled

    def diagnose(self):
        """Give failures the hint of a known mistake whose output equals the candidate's
        (or that raises the same kind of exception).

        Several mistakes can agree on a tiny input, so the mistake matching the most failing
        inputs wins; a failure it does not explain gets the first mistake that does."""
        matches: dict[int, list[int]] = {}  # mistake index -> ids of failures it explains
        for i, (_hint, wrong) in enumerate(self.spec.mistakes):
            for key, (case, got, expected, error_kind) in self.wrong_answers.items():
                try:
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore")
                        wrong_out = wrong(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
                except Exception as exc:  # noqa: BLE001 - that wrong implementation raises here
                    if error_kind is not None and type(exc).__name__ == error_kind:
                        matches.setdefault(i, []).append(key)
                    continue
                # the mistake explains this failure only if it also gets this input wrong
                try:
                    explains = error_kind is None and _same(got, wrong_out) and not _same(wrong_out, expected)
                except Exception:  # noqa: BLE001 - an answer that refuses comparison
                    explains = False
                if explains:
                    matches.setdefault(i, []).append(key)
        ranked = sorted(matches, key=lambda i: -len(matches[i]))  # stable: catalogue order on ties
        for failure in self.failures:
            for i in ranked:
                if id(failure) in matches[i]:
                    failure.hint = self.spec.mistakes[i][0]
                    break

    def record(self, label: str, failure: Failure | None, weight: float):
        self.total += 1
        self.max_points += weight
        if failure is None:
            self.passed += 1
            self.points += weight
        else:
            failure.check = label
            self.failures.append(failure)

    def run_property(self, label: str, strategy):
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed

        last: list[Failure] = []
        examples = [0]

        class Mismatch(AssertionError):
            pass

        @settings(
            database=None,
            derandomize=self.seed is None,
            deadline=None,
            max_examples=MAX_EXAMPLES,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            print_blob=False,
        )
        @given(strategy)
        def prop(case):
            examples[0] += 1
            if last and examples[0] > MAX_EXAMPLES + MAX_SHRINK_CALLS:
                raise _Abort()  # shrunk enough: keep the smallest failure found so far
            failure = self.evaluate(case)
            if failure is not None:
                last.append(failure)
                if self.stop_reason:  # a timeout or a stub: no point in shrinking
                    raise _Abort()
                raise Mismatch()

        if self.seed is not None:
            prop = hypothesis_seed(self.seed)(prop)
        try:
            with _without_local_constants():
                prop()
        except _Abort:
            pass
        except KeyboardInterrupt:
            raise
        except BaseException:  # hypothesis' own errors (e.g. Flaky) end the run
            if not last:
                raise
        self.record(label, last[-1] if last else None, PROPERTY_WEIGHT)  # the last: hypothesis' minimal


def _is_mask(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim == 2


def _check_args(name, timeout, budget) -> tuple[str, float, float]:
    """Validate the caller's arguments (a bad one is not the candidate's fault, so it raises)."""
    if not isinstance(name, str):
        raise TypeError(
            f"name must be the exercise name as a string, e.g. check('causal_mask', causal_mask), "
            f"got {type(name).__name__}"
        )
    return (
        name,
        float_arg("timeout", timeout, strictly_positive=True),
        float_arg("budget", budget, strictly_positive=True),
    )


def run_check(
    name: str,
    candidate,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    budget: float = DEFAULT_BUDGET,
    seed: int | None = None,
    allow_course_code: bool = False,
) -> CheckResult:
    """Run every check for exercise ``name`` on ``candidate`` (a function, or the answer value)
    and return a :class:`CheckResult`. Never raises because of the candidate; a bad ``name``,
    ``timeout`` or ``budget`` (seconds, > 0) raises TypeError or ValueError.

    ``seed`` (an int) draws the random inputs from that seed instead of the public,
    derandomised ones (the grader seeds them per student). ``allow_course_code`` is for the
    course's own tests, which check its catalogue of mistakes (those live in the package)."""
    name, timeout, budget = _check_args(name, timeout, budget)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    all_specs = specs()
    if name not in all_specs:
        close = [n for n in all_specs if n.split("_")[0] in name or name in n]
        return CheckResult(
            name,
            0,
            0,
            notes=[
                f"unknown exercise name {name!r}; known names: {', '.join(all_specs)}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
            ],
        )
    spec = all_specs[name]
    if spec.is_answer:
        return _run_answer(spec, candidate)
    if candidate is None or not callable(candidate):
        reason = (
            "not implemented yet: still None"
            if candidate is None
            else f"expected a function, got a {type(candidate).__name__}"
        )
        hint = (
            (f"pass the function itself, without calling it: check({name!r}, {name})")
            if candidate is not None
            else None
        )
        weights = [c.weight for c in spec.cases] + [PROPERTY_WEIGHT] * len(spec.properties)
        return CheckResult(
            name,
            0,
            len(weights),
            [Failure("all", "", reason, hint=hint)],
            points=0.0,
            max_points=sum(weights),
            seed=seed,
        )

    run = _Run(spec, candidate, timeout, budget, allow_course_code, seed)
    for i, case in enumerate(spec.cases, 1):
        if run.stop_reason:
            run.record(
                f"edge case {i}",
                Failure("", spec.describe(case), f"not run: {run.stop_reason}", size=10**9),
                case.weight,
            )
            continue
        run.record(f"edge case {i}", run.evaluate(case), case.weight)
    for label, make_strategy in spec.properties:
        if run.stop_reason:
            run.record(
                f"property: {label}",
                Failure("", "(random inputs)", f"not run: {run.stop_reason}", size=10**9),
                PROPERTY_WEIGHT,
            )
            continue
        run.run_property(f"property: {label}", make_strategy())
    run.diagnose()
    failures = sorted(run.failures, key=lambda f: f.size)  # stable: ties keep their order
    if run.stop_reason == USES_COURSE_CODE:  # no credit at all, not even for the checks before
        run.points = 0.0
        failures.sort(key=lambda f: not f.reason.startswith(USES_COURSE_CODE))  # the reason first
    return CheckResult(
        name, run.passed, run.total, failures, run.notes, points=run.points, max_points=run.max_points, seed=seed
    )


def _same_answer(value, wrong_value) -> bool:
    from globattn_lite.checks.compare import _is_int

    if isinstance(wrong_value, bool):
        return isinstance(value, (bool, np.bool_)) and bool(value) == wrong_value
    if isinstance(wrong_value, int):
        return _is_int(value) and int(value) == wrong_value
    return False


def _run_answer(spec: Spec, value) -> CheckResult:
    expected = spec.reference()
    try:
        problem = spec.compare(value, expected)
    except BaseException as exc:  # noqa: BLE001
        kind, message = _describe_exception(exc)
        problem = (f"could not check the answer ({kind}: {message})", None)
    if problem is None:
        if spec.free_text:
            return CheckResult(spec.name, 0, 0, needs_review=" ".join(str(value).split()))
        return CheckResult(spec.name, 1, 1)
    reason, hint = problem
    for wrong_hint, wrong_value in spec.mistakes:
        if _same_answer(value, wrong_value):
            hint = wrong_hint
            break
    return CheckResult(spec.name, 0, 1, [Failure("the answer", "", reason, got=_fmt(value, 200), hint=hint)])


def check(name: str, candidate, *, timeout: float = DEFAULT_TIMEOUT, budget: float = DEFAULT_BUDGET) -> CheckResult:
    """Check an exercise and print the verdict; returns the :class:`CheckResult`.

    ``check("causal_mask", causal_mask)`` for a function, ``check("kv_pairs_at_500",
    kv_pairs_at_500)`` for an answer. End the line with ``;`` in a notebook to avoid also
    seeing the returned result's short repr. In a notebook, a wrong mask is also drawn:
    the expected mask beside yours, the cells that differ outlined.
    """
    _check_args(name, timeout, budget)  # raises here, not as "the check itself failed"
    try:
        result = run_check(name, candidate, timeout=timeout, budget=budget)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a bug in a check must not look like the learner's
        kind, message = _describe_exception(exc)
        result = CheckResult(
            name, 0, 0, notes=[f"the check itself failed ({kind}: {message}); please report this to the course team"]
        )
    print(result.report())
    _show_mask_picture(result)
    return result


def _show_mask_picture(result: CheckResult) -> None:
    """In a notebook (IPython running), display the first failure's masks as an SVG."""
    import sys

    if not result.failures or result.failures[0].masks is None or "IPython" not in sys.modules:
        return
    try:
        from IPython import get_ipython
        from IPython.display import SVG, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    from globattn_lite.checks.picture import mask_difference_svg

    expected, got = result.failures[0].masks
    display(SVG(mask_difference_svg(expected, got)))
