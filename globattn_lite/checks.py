"""Instant checks for the exercise notebooks, also used by the batch grader.

In a notebook, right after an exercise::

    from globattn_lite.checks import check
    check("causal_mask", causal_mask);

prints a short verdict: PASSED with the number of checks, or the smallest input that failed,
what was expected, what came back, and a hint when the answer matches a known mistake. The
call returns a :class:`CheckResult` (passed, total, failures), which is what the grader uses
(``run_check`` is the same without printing).

How a check works
-----------------
Each exercise name has a *spec*: a small, obviously-right reference implementation, a few
fixed edge cases (smallest first), a few properties tested on random inputs, and a catalogue
of typical wrong implementations with a hint each. A failing answer is compared with the
catalogue on the failing input; if it gives the same output as a known mistake, that
mistake's hint is shown. One fixed case or one property counts as one check.

Random inputs come from hypothesis, derandomised (the same inputs on every run and machine,
no example database written to disk); hypothesis shrinks a failure to a minimal input.

Time limits and safety
----------------------
Every call of the learner's code has a time limit (``timeout``, default 2 s) and every check
a total budget. On POSIX, in the main thread (a Jupyter kernel, a script), the limit is a
``SIGALRM`` timer that interrupts the call, so an infinite loop just becomes a failed check.
Elsewhere (Windows, or when called from another thread) the call runs in a daemon worker
thread and the check stops waiting after ``timeout``; Python cannot kill a thread, so a
runaway call keeps running in the background until the kernel restarts, and the verdict
says so. The batch grader does not rely on either: it runs submissions in separate,
killable processes (see ``globattn_lite.grade``).

A check never raises because of the learner's code: exceptions (including ``SystemExit``),
wrong types, NaNs, objects that refuse comparison and timeouts all become failed checks with
the exception's type and message. Inputs are copied before each call, so a function that
modifies its arguments cannot change the expected values.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import numbers
import signal
import textwrap
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from globattn_lite._validate import float_arg

DEFAULT_TIMEOUT = 2.0  # seconds per call of the learner's function
DEFAULT_BUDGET = 30.0  # seconds per check in total
MAX_EXAMPLES = 40  # random inputs per property
# Extra calls hypothesis may spend making a failing input smaller. A count, not a time, so
# that the reported input is the same on a fast laptop and on a loaded CI machine.
MAX_SHRINK_CALLS = 80

#: Exercise sets and the names each one defines, in notebook order. The grader's columns.
EXERCISE_SETS: dict[str, tuple[str, ...]] = {
    "ex1_dense": ("causal_mask", "softmax", "attention"),
    "ex2_sparse": ("sliding_window_mask", "attended_positions", "count_kv_pairs", "kv_pairs_at_500"),
    "ex3_global": ("local_global_mask", "longformer_mask", "receptive_field", "min_layers"),
    "ex4_softmax": ("softmax_with_sink", "entropy", "evict"),
    "ex5_costs": (
        "kv_cache_bytes",
        "kv_entries",
        "max_sequences",
        "mistral_kv_bytes_per_token",
        "global_tokens_always_help",
        "global_tokens_reason",
        "legal_contracts_choice",
    ),
}


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


@dataclass
class CheckResult:
    """What a check found: ``passed`` of ``total`` checks passed; failures smallest first."""

    name: str
    passed: int
    total: int
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def score(self) -> float:
        """Fraction of checks passed, 0 to 1."""
        return self.passed / self.total if self.total else 0.0

    def short_reason(self, width: int = 160) -> str:
        """One line for a grading table ('' when everything passed)."""
        if not self.failures:
            return ""
        f = self.failures[0]
        text = f"{f.reason} (input: {' '.join(f.input.split())})"
        if f.hint:
            text += f"; hint: {f.hint}"
        return textwrap.shorten(text, width=width, placeholder=" ...")

    def report(self) -> str:
        """The verdict printed under the exercise."""
        if self.ok:
            lines = [f"{self.name}: PASSED ({self.total} of {self.total} checks)."]
        else:
            lines = [f"{self.name}: FAILED ({self.passed} of {self.total} checks passed)."]
            if self.failures:
                f = self.failures[0]
                lines.append(f"  failing check: {f.check}")
                lines.append(_labelled("input", f.input))
                lines.append(f"  problem: {f.reason}")
                if f.expected:
                    lines.append(_labelled("expected", f.expected))
                if f.got:
                    lines.append(_labelled("got", f.got))
                if f.hint:
                    lines.append(textwrap.fill(f"hint: {f.hint}", width=96, initial_indent="  ",
                                               subsequent_indent="        "))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

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
    """The result of one call: a value, an error (type name, message) or a timeout."""

    value: Any = None
    error: tuple[str, str] | None = None
    timed_out: bool = False
    note: str | None = None


class IsolatedCandidate:
    """Base class for candidates that run elsewhere and enforce their own time limit.

    The grader's proxies for functions living in a sandboxed process subclass this and
    implement ``invoke``; the checks then call ``invoke`` instead of timing the call here.
    """

    def invoke(self, args: tuple, kwargs: dict, timeout: float) -> Outcome:  # pragma: no cover
        raise NotImplementedError


class _AlarmTimeout(BaseException):
    """Raised inside the learner's code by our SIGALRM handler (BaseException, so that an
    ``except Exception`` in the learner's code does not swallow it)."""


class _Abort(BaseException):
    """Stops a hypothesis run at once (hypothesis lets BaseExceptions through unshrunk)."""


def _alarm_available() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _call_with_alarm(fn, args, kwargs, timeout) -> Outcome:
    def on_alarm(signum, frame):
        raise _AlarmTimeout()

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)  # e.g. pytest-timeout's
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            value = fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return Outcome(value=value)
    except _AlarmTimeout:
        return Outcome(timed_out=True)
    except KeyboardInterrupt:
        raise  # the learner pressed stop
    except BaseException as exc:  # noqa: BLE001 - the learner's errors are results
        return Outcome(error=_describe_exception(exc))
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # give the previous timer back what remains of it
            left = old_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), old_interval)


def _call_in_thread(fn, args, kwargs, timeout) -> Outcome:
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = _describe_exception(exc)

    worker = threading.Thread(target=target, name="globattn-check-call", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return Outcome(timed_out=True, note=(
            "the timed-out call could not be stopped (thread fallback: no SIGALRM here) and "
            "keeps running in the background; restart the kernel to stop it"))
    if "error" in box:
        return Outcome(error=box["error"])
    return Outcome(value=box.get("value"))


def _invoke(candidate, args: tuple, kwargs: dict, timeout: float) -> Outcome:
    args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
    if isinstance(candidate, IsolatedCandidate):
        return candidate.invoke(args, kwargs, timeout)
    # the learner's debug prints and overflow warnings would flood the cell (a check makes
    # about a hundred calls): discard them, the verdict reports what matters
    quiet = io.StringIO()
    with warnings.catch_warnings(), np.errstate(all="ignore"), \
            contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        if _alarm_available():
            return _call_with_alarm(candidate, args, kwargs, timeout)
        return _call_in_thread(candidate, args, kwargs, timeout)


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - a learner's exception whose __str__ fails
        message = "<message unavailable>"
    return type(exc).__name__, textwrap.shorten(message, width=300, placeholder=" ...")


# --------------------------------------------------------------------------------------
# Formatting values for the verdict
# --------------------------------------------------------------------------------------


def _fmt(value, limit: int = 600) -> str:
    try:
        if isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim == 2 and value.size <= 400:
            if value.size == 0:
                return f"empty bool array, shape {value.shape}"
            return "\n".join(" ".join("1" if x else "." for x in row) for row in value)
        if isinstance(value, np.ndarray):
            text = np.array2string(value, precision=5, threshold=80, separator=", ")
            if value.dtype != np.float64 or value.ndim == 0:
                text += f"  (dtype {value.dtype})"
        elif isinstance(value, (tuple, list)) and any(isinstance(v, np.ndarray) for v in value):
            text = "(\n" + ",\n".join(textwrap.indent(_fmt(v, limit), "  ") for v in value) + "\n)"
        else:
            text = repr(value)
    except BaseException:  # noqa: BLE001 - a learner's object whose repr fails
        text = f"<{type(value).__name__} object>"
    if len(text) > limit:
        text = text[:limit] + " ..."
    return text


def _size(obj) -> int:
    """A rough size of an input, to put the smallest failing input first."""
    if isinstance(obj, np.ndarray):
        return int(obj.size)
    if isinstance(obj, (list, tuple)):
        return sum(_size(x) for x in obj) + len(obj)
    if isinstance(obj, dict):
        return sum(_size(x) for x in obj.values())
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return abs(int(obj))
    return 1


# --------------------------------------------------------------------------------------
# Comparing answers. Each returns None when ``got`` is right, else (reason, hint or None).
# --------------------------------------------------------------------------------------

_NONE_HINT = "your function returned None: did you forget the `return`?"


def _as_array(got):
    """np.asarray(got) for array-like answers (including torch tensors), else None."""
    if got is None or isinstance(got, (str, bytes, dict, set, frozenset)):
        return None
    try:
        arr = np.asarray(got)
    except BaseException:  # noqa: BLE001
        return None
    if arr.dtype == object:
        return None
    return arr


def _same(a, b) -> bool:
    """Loose equality of two answers (arrays compared with a tolerance, NaNs equal): used to
    recognise a known mistake's output."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b) \
            and any(isinstance(x, np.ndarray) for x in (*a, *b)):
        return all(_same(x, y) for x, y in zip(a, b))
    arr_a, arr_b = _as_array(a), _as_array(b)
    if arr_a is not None and arr_b is not None:
        if arr_a.shape != arr_b.shape or (arr_a.dtype == np.bool_) != (arr_b.dtype == np.bool_):
            return False
        if arr_a.dtype == np.bool_:
            return bool(np.array_equal(arr_a, arr_b))
        if not all(np.issubdtype(x.dtype, np.number) for x in (arr_a, arr_b)):
            return False
        return bool(np.allclose(arr_a.astype(float), arr_b.astype(float), rtol=1e-5, atol=1e-6, equal_nan=True))
    return bool(a == b)


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def compare_bool_mask(got, expected):
    if got is None:
        return "returned None", _NONE_HINT
    arr = _as_array(got)
    if arr is None:
        return f"returned a {type(got).__name__}, expected a boolean numpy array", None
    if arr.shape != expected.shape:
        return f"shape {arr.shape}, expected {expected.shape}", None
    if arr.dtype != np.bool_:
        same_values = np.isin(arr, (0, 1)).all() and np.array_equal(arr.astype(bool), expected)
        if same_values:
            return (f"right pattern but dtype {arr.dtype}, expected bool",
                    "return a boolean array (comparisons like k <= q give one; or .astype(bool))")
        return (f"dtype {arr.dtype}, expected a boolean array",
                "a mask says True (may attend) / False, not an additive 0 / -inf mask")
    wrong = np.argwhere(arr != expected)
    if len(wrong):
        q, k = (int(i) for i in wrong[0])
        return (f"{len(wrong)} of {arr.size} entries differ, first at [q={q}, k={k}]: "
                f"expected {bool(expected[q, k])}, got {bool(arr[q, k])}"), None
    return None


def _compare_floats(got, expected, rtol=1e-4, atol=1e-5, nan_hint=None):
    if got is None:
        return "returned None", _NONE_HINT
    arr = _as_array(got)
    if arr is None:
        return f"returned a {type(got).__name__}, expected a numpy array", None
    if arr.shape != np.shape(expected):
        return f"shape {arr.shape}, expected {np.shape(expected)}", None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return f"dtype {arr.dtype}, expected floats", None
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all() and np.isfinite(expected).all():
        return "result contains NaN or inf", nan_hint
    if not np.allclose(arr, expected, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(arr - expected)))
        return f"wrong values (largest difference {err:.3g})", None
    return None


def _compare_int(got, expected):
    if got is None:
        return "returned None", _NONE_HINT
    if isinstance(got, np.ndarray) and got.ndim == 0:
        got = got[()]
    if not _is_int(got):
        if _is_real(got) and float(got) == expected:
            return f"right number but a {type(got).__name__}, expected an int", "convert with int(...)"
        return f"returned {_fmt(got, 80)} ({type(got).__name__}), expected an int", None
    if int(got) != expected:
        return f"expected {expected}, got {int(got)}", None
    return None


def _compare_float_scalar(got, expected, rtol=1e-6, atol=1e-9, nan_hint=None):
    if got is None:
        return "returned None", _NONE_HINT
    if isinstance(got, np.ndarray) and got.size == 1:
        got = got.reshape(())[()]
    if not _is_real(got):
        return f"returned {_fmt(got, 80)} ({type(got).__name__}), expected a number", None
    got = float(got)
    if math.isnan(got) or math.isinf(got):
        return f"returned {got}", nan_hint
    if not math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
        return f"expected {expected:.6g}, got {got:.6g}", None
    return None


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One call: positional and keyword arguments."""

    args: tuple
    kwargs: dict = field(default_factory=dict)


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

    def describe(self, case: Case) -> str:
        def one(name, value):
            if isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim == 2:
                return f"{name} ({value.shape[0]}x{value.shape[1]}, 1 = True):\n{_fmt(value, 300)}"
            text = _fmt(value, 300).replace("\n", "\n" + " " * (len(name) + 1))  # align rows under "name="
            return f"{name}={text}"

        parts = [one(n, v) for n, v in zip(self.argnames, case.args)]
        parts += [one(n, v) for n, v in case.kwargs.items()]
        text = ", ".join(parts)
        if "\n" in text:  # masks: one argument per line
            text = "\n".join(parts)
        return text


def _grid(n):
    return np.arange(n)[:, None], np.arange(n)[None, :]


def _rng_floats(seed, *shape, scale=1.0):
    """Reproducible normal floats rounded to one decimal (short to print)."""
    return np.round(np.random.default_rng(seed).normal(size=shape), 1) * scale


# ---- ex1_dense -----------------------------------------------------------------------


def _ref_causal_mask(n):
    q, k = _grid(n)
    return k <= q


def _ref_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ref_attention(q, k, v, mask=None):
    scores = q @ k.T / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    weights = _ref_softmax(scores)
    return weights @ v, weights


def _compare_attention(got, expected):
    if got is None:
        return "returned None", _NONE_HINT
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"returned a {type(got).__name__}, expected a pair (out, weights)", "return out, weights"
    for label, g, e in (("out", got[0], expected[0]), ("weights", got[1], expected[1])):
        problem = _compare_floats(g, e, nan_hint=_SOFTMAX_OVERFLOW)
        if problem:
            return f"{label}: {problem[0]}", problem[1]
    return None


_SOFTMAX_OVERFLOW = ("softmax overflow: np.exp of a large score is inf (and inf/inf is NaN); "
                     "subtract the maximum of each row first, which leaves the result unchanged")


def _naive_softmax(x):
    with np.errstate(all="ignore"):
        e = np.exp(np.asarray(x, dtype=float))
        return e / e.sum(axis=-1, keepdims=True)


def _softmax_axis0(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _softmax_whole_array(x):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - x.max())
    return e / e.sum()


def _softmax_global_max(x):
    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max())
        return e / e.sum(axis=-1, keepdims=True)


def _attention_with(scale, mask_mode="before", softmax=_ref_softmax):
    def wrong(q, k, v, mask=None):
        scores = q @ k.T * scale(q.shape[-1])
        if mask is not None and mask_mode == "before":
            scores = np.where(mask, scores, -np.inf)
        if mask is not None and mask_mode == "inverted":
            scores = np.where(mask, -np.inf, scores)
        if mask is not None and mask_mode == "multiply":
            scores = scores * mask
        with np.errstate(all="ignore"):
            weights = softmax(scores)
        if mask is not None and mask_mode == "after":
            weights = weights * mask
        return weights @ v, weights
    return wrong


def _sqrt_scale(d):
    return 1 / np.sqrt(d)


def _halves(st, bound):
    """Floats k / 2 in [-bound, bound]: they shrink fast and print short."""
    return st.integers(-2 * bound, 2 * bound).map(lambda i: i / 2)


def _float_arrays(st, shape, elements):
    """Float64 arrays of a fixed shape drawn as a flat list (cheaper to shrink than hnp.arrays)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = int(np.prod(shape))
    return st.lists(elements, min_size=size, max_size=size).map(
        lambda xs: np.array(xs, dtype=np.float64).reshape(shape))


def _specs_ex1(st, hnp):
    n_sizes = st.integers(1, 40)
    floats = _halves(st, 5)
    big = _halves(st, 10_000)

    def arrays(shape, elements=floats):
        return _float_arrays(st, shape, elements)

    @st.composite
    def attention_case(draw, with_mask):
        n, m, d, dv = (draw(st.integers(1, 4)) for _ in range(4))
        q, k, v = draw(arrays((n, d))), draw(arrays((m, d))), draw(arrays((m, dv)))
        if not with_mask:
            return Case((q, k, v))
        mask = draw(hnp.arrays(np.bool_, (n, m)))
        mask[np.arange(n), draw(hnp.arrays(np.int64, n, elements=st.integers(0, m - 1)))] = True
        return Case((q, k, v, mask))

    def att(seed, n, m, d, dv, mask=None, scale=1.0):
        q = _rng_floats(seed, n, d, scale=scale)
        k = _rng_floats(seed + 1, m, d, scale=scale)
        v = _rng_floats(seed + 2, m, dv)
        return Case((q, k, v) if mask is None else (q, k, v, mask))

    causal3 = _ref_causal_mask(3)
    rect = np.array([[True, False, True, False], [False, True, True, True]])
    return [
        Spec(
            "causal_mask", ("n",), _ref_causal_mask, compare_bool_mask,
            cases=[Case((1,)), Case((2,)), Case((3,)), Case((5,))],
            properties=[("random sizes n = 1..40", lambda: n_sizes.map(lambda n: Case((n,))))],
            mistakes=[
                ("upper instead of lower triangle: mask[q, k] is True when query q may see key k, "
                 "so causal means k <= q (the lower triangle, np.tril)",
                 lambda n: _grid(n)[1] >= _grid(n)[0]),
                ("a token may attend to itself: keep the diagonal (k <= q, not k < q)",
                 lambda n: _grid(n)[1] < _grid(n)[0]),
                ("this lets every query see every key; causal hides the future keys (k > q)",
                 lambda n: np.ones((n, n), dtype=bool)),
            ],
        ),
        Spec(
            "softmax", ("x",), _ref_softmax,
            lambda got, exp: _compare_floats(got, exp, nan_hint=_SOFTMAX_OVERFLOW),
            cases=[
                Case((np.array([0.0]),)),
                Case((np.array([1.0, 2.0, 3.0]),)),
                Case((np.array([[1.0, 2.0], [3.0, 5.0]]),)),
                Case((np.array([0.0, -np.inf, 1.0]),)),
                Case((np.array([1000.0, 1000.0]),)),
                Case((np.array([[1e4, 0.0, -5.0], [0.0, -1e4, 3.0]]),)),
                Case((np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),)),
            ],
            properties=[
                ("random 1-D arrays", lambda: st.integers(1, 8).flatmap(arrays).map(lambda x: Case((x,)))),
                ("random 2-D arrays", lambda: st.tuples(st.integers(1, 5), st.integers(1, 6))
                 .flatmap(arrays).map(lambda x: Case((x,)))),
                ("large inputs up to 1e4", lambda: st.tuples(st.integers(1, 4), st.integers(1, 5))
                 .flatmap(lambda s: arrays(s, big)).map(lambda x: Case((x,)))),
            ],
            mistakes=[
                (_SOFTMAX_OVERFLOW, _naive_softmax),
                ("normalise along the last axis (axis=-1, keepdims=True): each row must sum to 1",
                 _softmax_axis0),
                ("normalise each row separately (axis=-1, keepdims=True), not the whole array",
                 _softmax_whole_array),
                ("subtract each row's own maximum (x.max(axis=-1, keepdims=True)), not the maximum "
                 "of the whole array: rows far below it underflow to 0/0", _softmax_global_max),
            ],
        ),
        Spec(
            "attention", ("q", "k", "v", "mask"), _ref_attention, _compare_attention,
            cases=[
                att(0, 1, 1, 1, 1),
                att(1, 2, 2, 2, 1),
                att(2, 3, 3, 4, 2, mask=causal3),
                att(3, 2, 4, 3, 3, mask=rect),
                att(4, 3, 3, 1, 2, mask=causal3, scale=40.0),
            ],
            properties=[
                ("random q, k, v without a mask", lambda: attention_case(False)),
                ("random q, k, v with a random mask", lambda: attention_case(True)),
            ],
            mistakes=[
                ("unscaled scores: divide q k^T by sqrt(d), the key dimension",
                 _attention_with(lambda d: 1.0)),
                ("scale by 1/sqrt(d), not 1/d", _attention_with(lambda d: 1.0 / d)),
                ("masking after the softmax: the kept weights no longer sum to 1; set masked "
                 "scores to -inf BEFORE the softmax", _attention_with(_sqrt_scale, "after")),
                ("the mask is inverted: True means the query MAY attend to that key",
                 _attention_with(_sqrt_scale, "inverted")),
                ("multiplying scores by the mask gives masked keys a score of 0, and exp(0) = 1; "
                 "use np.where(mask, scores, -np.inf)", _attention_with(_sqrt_scale, "multiply")),
                ("normalise the weights over the keys (last axis), not over the queries",
                 _attention_with(_sqrt_scale, softmax=_softmax_axis0)),
                (_SOFTMAX_OVERFLOW, _attention_with(_sqrt_scale, softmax=_naive_softmax)),
                ("return the pair in the order (out, weights)",
                 lambda q, k, v, mask=None: _ref_attention(q, k, v, mask)[::-1]),
            ],
        ),
    ]


# ---- ex2_sparse ----------------------------------------------------------------------


def _ref_sliding_window_mask(n, window):
    q, k = _grid(n)
    return (k <= q) & (q - k < window)


def _window_wrong(rule):
    def wrong(n, window):
        q, k = _grid(n)
        return rule(q, k, window)
    return wrong


def _ref_attended_positions(mask, i):
    return [k for k in range(mask.shape[1]) if mask[i, k]]


def _compare_positions(got, expected):
    if got is None:
        return "returned None", _NONE_HINT
    if isinstance(got, (set, frozenset)):
        return "returned a set", "return a sorted list or 1-D array (sets have no order)"
    if isinstance(got, tuple) and len(got) == 1 and isinstance(got[0], np.ndarray):
        return "returned a tuple of arrays", "np.nonzero returns a tuple: take [0] (or use np.flatnonzero)"
    arr = _as_array(got)
    if arr is None or arr.ndim != 1:
        return f"returned {_fmt(got, 80)}, expected a list or 1-D array of ints", None
    if arr.dtype == np.bool_ and len(expected):
        return "returned booleans", "return the key indices (np.flatnonzero(row)), not the boolean row"
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        return f"dtype {arr.dtype}, expected ints", None
    if arr.tolist() != list(expected):
        return f"expected {list(expected)}, got {arr.tolist()}", None
    return None


def _ref_count_kv_pairs(mask):
    return sum(1 for row in mask for allowed in row if allowed)


def _answer(value):
    return lambda: value


def _compare_whole_number_answer(what: str):
    """Compare an int answer; an unanswered ``None`` gets the hint "replace None with ``what``"."""
    def compare(got, expected):
        if got is None:
            return "not answered yet (still None)", f"replace None with your answer: {what}"
        return _compare_int(got, expected)
    return compare


def _specs_ex2(st, hnp):
    @st.composite
    def window_case(draw):
        n = draw(st.integers(1, 20))
        return Case((n, draw(st.integers(1, n + 2))))

    @st.composite
    def mask_and_row(draw):
        n = draw(st.integers(1, 8))
        m = draw(st.integers(1, 8))
        return Case((draw(hnp.arrays(np.bool_, (n, m))), draw(st.integers(0, n - 1))))

    def masks():
        return st.tuples(st.integers(1, 10), st.integers(1, 10)).flatmap(lambda s: hnp.arrays(np.bool_, s))

    example = _ref_sliding_window_mask(5, 2) | (np.arange(5)[None, :] == 0) & _ref_causal_mask(5)
    return [
        Spec(
            "sliding_window_mask", ("n", "window"), _ref_sliding_window_mask, compare_bool_mask,
            cases=[Case((1, 1)), Case((3, 1)), Case((3, 2)), Case((4, 5)), Case((6, 3))],
            properties=[("random n and window", window_case)],
            mistakes=[
                ("window off by one: `window` counts the keys INCLUDING the query, so keep "
                 "q - k < window (q - k <= window is attention-gym's look-back w = window - 1)",
                 _window_wrong(lambda q, k, w: (k <= q) & (q - k <= w))),
                ("window off by one: the query itself counts, so there are window keys "
                 "with q - k = 0, 1, ..., window - 1",
                 _window_wrong(lambda q, k, w: (k <= q) & (q - k < w - 1))),
                ("the window must be causal: keys after the query (k > q) stay hidden",
                 _window_wrong(lambda q, k, w: np.abs(q - k) < w)),
                ("upper instead of lower triangle: mask[q, k] is True when query q may see key k",
                 _window_wrong(lambda q, k, w: (k >= q) & (k - q < w))),
            ],
        ),
        Spec(
            "attended_positions", ("mask", "i"), _ref_attended_positions, _compare_positions,
            cases=[
                Case((np.array([[True]]), 0)),
                Case((_ref_causal_mask(3), 0)),
                Case((_ref_causal_mask(3), 2)),
                Case((np.zeros((2, 2), dtype=bool), 1)),
                Case((example, 4)),
            ],
            properties=[("random masks and rows", mask_and_row)],
            mistakes=[
                ("row i is query i (its keys are the columns): use mask[i], not mask[:, i]",
                 lambda mask, i: np.flatnonzero(mask[:, i]) if i < mask.shape[1] else []),
                ("positions are 0-based: key k is index k (no + 1)",
                 lambda mask, i: np.flatnonzero(mask[i]) + 1),
                ("return the key indices (np.flatnonzero(mask[i])), not the boolean row",
                 lambda mask, i: mask[i]),
            ],
        ),
        Spec(
            "count_kv_pairs", ("mask",), _ref_count_kv_pairs, _compare_int,
            cases=[
                Case((np.array([[True]]),)),
                Case((np.array([[False]]),)),
                Case((_ref_causal_mask(3),)),
                Case((np.array([[True, False, True]]),)),
                Case((example,)),
            ],
            properties=[("random masks", lambda: masks().map(lambda m: Case((m,))))],
            mistakes=[
                ("count the True entries (allowed pairs), not the False ones",
                 lambda mask: int(mask.size - mask.sum())),
                ("return one total for the whole mask, not one count per query",
                 lambda mask: mask.sum(axis=1)),
                ("count the mask you are given; n(n+1)/2 holds only for full causal attention",
                 lambda mask: mask.shape[0] * (mask.shape[0] + 1) // 2),
                ("count every allowed (query, key) pair: all rows, not only the last one",
                 lambda mask: int(mask[-1].sum())),
            ],
        ),
        Spec(
            "kv_pairs_at_500", (), _answer(len({1, 500 - 2, 500 - 1, 500})),
            _compare_whole_number_answer("a whole number"),
            is_answer=True,
            mistakes=[
                ("that is full causal attention; this model sees only position 1, itself and the "
                 "two positions before it", 500),
                ("count position 500 itself too: position 1, 498, 499 and 500", 3),
                ("position 1 is one key, 498 and 499 two more, and 500 itself: count distinct positions", 5),
            ],
        ),
    ]


# ---- ex3_global ----------------------------------------------------------------------


def _ref_local_global_mask(n, window, num_global):
    q, k = _grid(n)
    return (k <= q) & ((q - k < window) | (k < num_global))


def _ref_longformer_mask(n, radius, global_positions):
    q, k = _grid(n)
    is_global = np.zeros(n, dtype=bool)
    is_global[list(global_positions)] = True
    return (np.abs(q - k) <= radius) | is_global[q] | is_global[k]


def _ref_receptive_field(mask, layers):
    n = mask.shape[0]
    step = mask | np.eye(n, dtype=bool)  # residual path: a position keeps what it had
    reach = np.eye(n, dtype=bool)  # 0 layers: every position holds only itself
    for _ in range(layers):
        # reach[q, k]: some key j that q attends to already held position k's information
        reach = (step.astype(np.int64) @ reach.astype(np.int64)) > 0
    return reach


def _ref_min_layers(mask, src, dst):
    reached = {src}
    for layers in range(mask.shape[0] + 1):
        if dst in reached:
            return layers
        reached |= {q for q in range(mask.shape[0]) for j in reached if mask[q, j]}
    return None


def _compare_min_layers(got, expected):
    if expected is None:
        if got is None:
            return None
        return (f"expected None (never reached), got {_fmt(got, 80)}",
                "return None when the information can never reach dst (not -1, inf or n)")
    if got is None:
        return f"expected {expected}, got None", None
    return _compare_int(got, expected)


def _receptive_field_wrong(residual=True, transpose=False, extra=0):
    def wrong(mask, layers):
        n = mask.shape[0]
        step = (mask | np.eye(n, dtype=bool)) if residual else mask
        reach = np.eye(n, dtype=bool)
        for _ in range(layers + extra):
            reach = (step.astype(np.int64) @ reach.astype(np.int64)) > 0
        return reach.T if transpose else reach
    return wrong


def _min_layers_wrong(kind):
    def wrong(mask, src, dst):
        m = mask.T if kind == "transposed" else mask
        result = _ref_min_layers(m, src, dst)
        if kind == "minus_one" and result is None:
            return -1
        if kind == "inf" and result is None:
            return float("inf")
        if kind == "plus_one" and result is not None:
            return result + 1
        return result
    return wrong


def _specs_ex3(st, hnp):
    @st.composite
    def local_global_case(draw):
        n = draw(st.integers(1, 16))
        return Case((n, draw(st.integers(1, n + 1)), draw(st.integers(0, n))))

    @st.composite
    def longformer_case(draw):
        n = draw(st.integers(1, 16))
        g = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=3))
        return Case((n, draw(st.integers(0, n)), sorted(g)))

    @st.composite
    def square_mask(draw, max_n=7):
        n = draw(st.integers(1, max_n))
        return draw(hnp.arrays(np.bool_, (n, n)))

    @st.composite
    def receptive_case(draw):
        return Case((draw(square_mask()), draw(st.integers(0, 4))))

    @st.composite
    def hops_case(draw):
        mask = draw(square_mask())
        n = mask.shape[0]
        return Case((mask, draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))))

    strict_lower = _grid(4)[1] < _grid(4)[0]
    window = _ref_sliding_window_mask(6, 2)
    star = _ref_local_global_mask(6, 1, 1) | (np.arange(6)[:, None] == 0)  # token 0 sees all
    return [
        Spec(
            "local_global_mask", ("n", "window", "num_global"), _ref_local_global_mask, compare_bool_mask,
            cases=[Case((1, 1, 0)), Case((2, 1, 1)), Case((3, 1, 2)), Case((5, 2, 1)), Case((6, 2, 0)),
                   Case((6, 3, 2))],
            properties=[("random n, window and num_global", local_global_case)],
            mistakes=[
                ("non-causal global tokens: the first num_global keys are visible only to queries "
                 "at or after them (k <= q still holds, sink style)",
                 lambda n, w, g: _ref_sliding_window_mask(n, w) | (_grid(n)[1] < g)),
                ("non-causal global tokens: in a causal model the global tokens' own rows must not "
                 "see the future either; use causal & (window | k < num_global)",
                 lambda n, w, g: _ref_sliding_window_mask(n, w) | (_grid(n)[1] < g) | (_grid(n)[0] < g)),
                ("window off by one: the window holds `window` keys including the query (q - k < window)",
                 lambda n, w, g: (_grid(n)[1] <= _grid(n)[0])
                 & ((_grid(n)[0] - _grid(n)[1] <= w) | (_grid(n)[1] < g))),
                ("the global keys come in addition to the window: combine them with | (or)",
                 lambda n, w, g: (_grid(n)[1] <= _grid(n)[0])
                 & (_grid(n)[0] - _grid(n)[1] < w) & (_grid(n)[1] < g)),
            ],
        ),
        Spec(
            "longformer_mask", ("n", "radius", "global_positions"), _ref_longformer_mask, compare_bool_mask,
            cases=[Case((1, 0, [])), Case((3, 0, [1])), Case((4, 1, [])), Case((5, 1, [0])),
                   Case((6, 1, [0, 5])), Case((7, 2, [3]))],
            properties=[("random n, radius and global positions", longformer_case)],
            mistakes=[
                ("global tokens are symmetric: every token sees them (their columns) AND they see "
                 "every token (their rows)",
                 lambda n, r, g: (np.abs(_grid(n)[0] - _grid(n)[1]) <= r) | np.isin(_grid(n)[1], g)),
                ("global tokens are symmetric: their columns must be all True too (every token sees them)",
                 lambda n, r, g: (np.abs(_grid(n)[0] - _grid(n)[1]) <= r) | np.isin(_grid(n)[0], g)),
                ("radius off by one: radius keys on each side, |q - k| <= radius (2 * radius + 1 keys)",
                 lambda n, r, g: (np.abs(_grid(n)[0] - _grid(n)[1]) < r)
                 | np.isin(_grid(n)[0], g) | np.isin(_grid(n)[1], g)),
                ("Longformer's local window is bidirectional: keys after the query within the radius count",
                 lambda n, r, g: ((_grid(n)[1] <= _grid(n)[0]) & (_grid(n)[0] - _grid(n)[1] <= r))
                 | np.isin(_grid(n)[0], g) | np.isin(_grid(n)[1], g)),
            ],
        ),
        Spec(
            "receptive_field", ("mask", "layers"), _ref_receptive_field, compare_bool_mask,
            cases=[
                Case((np.array([[False]]), 0)),
                Case((np.array([[False]]), 1)),
                Case((strict_lower, 1)),
                Case((_ref_causal_mask(3), 0)),
                Case((strict_lower, 2)),
                Case((window, 2)),
                Case((star, 2)),
            ],
            properties=[("random masks and layer counts", receptive_case)],
            mistakes=[
                ("receptive field without the residual path: each layer also keeps what a position "
                 "already holds (use mask | identity for every step)", _receptive_field_wrong(residual=False)),
                ("orientation: result[q, k] is True when key k's information has reached query q; "
                 "information flows along mask[q, k] from k to q", _receptive_field_wrong(transpose=True)),
                ("apply exactly `layers` layers, starting from the identity (0 layers: each position "
                 "holds only itself)", _receptive_field_wrong(extra=1)),
                ("apply exactly `layers` layers, starting from the identity (0 layers: each position "
                 "holds only itself)", _receptive_field_wrong(extra=-1)),
            ],
        ),
        Spec(
            "min_layers", ("mask", "src", "dst"), _ref_min_layers, _compare_min_layers,
            cases=[
                Case((np.array([[False]]), 0, 0)),
                Case((strict_lower[:2, :2], 0, 1)),
                Case((strict_lower[:2, :2], 1, 0)),
                Case((window, 0, 5)),
                Case((star, 5, 4)),
            ],
            properties=[("random masks, sources and destinations", hops_case)],
            mistakes=[
                ("direction: information moves from key to query, so it goes from src to dst when "
                 "mask[dst, src] is True", _min_layers_wrong("transposed")),
                ("return None when dst can never be reached (not -1)", _min_layers_wrong("minus_one")),
                ("return None when dst can never be reached (not infinity)", _min_layers_wrong("inf")),
                ("count layers (edges), not positions: one layer carries information one hop, and "
                 "src == dst needs 0 layers", _min_layers_wrong("plus_one")),
            ],
        ),
    ]


# ---- ex4_softmax ---------------------------------------------------------------------


def _ref_softmax_with_sink(scores, sink_logit):
    scores = np.asarray(scores, dtype=np.float64)
    m = max(scores.max(), sink_logit)
    e = np.exp(scores - m)
    return e / (np.exp(sink_logit - m) + e.sum())


def _ref_entropy(weights):
    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def _ref_evict(scores, keep):
    return _ref_softmax(np.where(keep, scores, -np.inf))


_SINK_OVERFLOW = ("softmax overflow: shift by m = max(max(scores), sink_logit) before np.exp, "
                  "and shift the sink too: exp(sink_logit - m)")


def _sink_wrong(kind):
    def wrong(scores, sink_logit):
        s = np.asarray(scores, dtype=float)
        with np.errstate(all="ignore"):
            if kind == "no_sink":
                return _ref_softmax(s)
            if kind == "plus_one":
                m = max(s.max(), 0.0)
                e = np.exp(s - m)
                return e / (np.exp(-m) + e.sum())
            if kind == "unshifted_sink":
                e = np.exp(s - s.max())
                return e / (np.exp(sink_logit) + e.sum())
            if kind == "naive":
                e = np.exp(s)
                return e / (np.exp(sink_logit) + e.sum())
            if kind == "with_sink":
                full = _ref_softmax(np.append(s, sink_logit))
                return full
        raise AssertionError(kind)
    return wrong


def _entropy_wrong(kind):
    def wrong(weights):
        w = np.asarray(weights, dtype=float)
        with np.errstate(all="ignore"):
            if kind == "log2":
                return _ref_entropy(w) / np.log(2)
            if kind == "zeros":
                return float(-(w * np.log(w)).sum())
            if kind == "sign":
                return -_ref_entropy(w)
        raise AssertionError(kind)
    return wrong


def _evict_wrong(kind):
    def wrong(scores, keep):
        s = np.asarray(scores, dtype=float)
        if kind == "no_renorm":
            return _ref_softmax(s) * keep
        if kind == "inverted":
            with np.errstate(all="ignore"):
                return np.nan_to_num(_ref_softmax(np.where(keep, -np.inf, s)))
        if kind == "compressed":
            return _ref_softmax(s[keep])
        if kind == "naive":
            with np.errstate(all="ignore"):
                e = np.exp(s) * keep
                return e / e.sum()
        raise AssertionError(kind)
    return wrong


def _specs_ex4(st, hnp):
    floats = _halves(st, 20)

    def scores(n):
        return hnp.arrays(np.float64, n, elements=floats)

    @st.composite
    def sink_case(draw):
        s = draw(st.integers(1, 8).flatmap(scores))
        return Case((s, draw(_halves(st, 10))))

    @st.composite
    def big_sink_case(draw):
        s = draw(st.integers(1, 5).flatmap(
            lambda n: hnp.arrays(np.float64, n, elements=_halves(st, 10_000))))
        return Case((s, draw(_halves(st, 10_000))))

    @st.composite
    def distribution(draw):
        n = draw(st.integers(1, 8))
        raw = draw(hnp.arrays(np.float64, n, elements=st.integers(0, 20).map(float)))
        if raw.sum() == 0:
            raw[draw(st.integers(0, n - 1))] = 1.0
        return Case((raw / raw.sum(),))

    @st.composite
    def evict_case(draw):
        n = draw(st.integers(1, 8))
        keep = draw(hnp.arrays(np.bool_, n))
        keep[draw(st.integers(0, n - 1))] = True
        return Case((draw(scores(n)), keep))

    return [
        Spec(
            "softmax_with_sink", ("scores", "sink_logit"), _ref_softmax_with_sink,
            lambda got, exp: _compare_floats(got, exp, nan_hint=_SINK_OVERFLOW),
            cases=[
                Case((np.array([0.0]), 0.0)),
                Case((np.array([1.0, 2.0]), 0.0)),
                Case((np.array([1.0, 2.0, 3.0]), 2.0)),
                Case((np.array([0.0, 0.0]), -3.0)),
                Case((np.array([1000.0, 1000.0]), 0.0)),
                Case((np.array([0.0, 1.0]), 1000.0)),
            ],
            properties=[("random scores and sink logits", sink_case),
                        ("large scores and sink logits up to 1e4", big_sink_case)],
            mistakes=[
                ("the sink adds exp(sink_logit) to the denominator; without it this is a plain softmax",
                 _sink_wrong("no_sink")),
                ("the sink contributes exp(sink_logit) to the denominator; that is 1 only when "
                 "sink_logit = 0", _sink_wrong("plus_one")),
                ("when you shift the scores by their maximum m, shift the sink logit too: "
                 "exp(sink_logit - m)", _sink_wrong("unshifted_sink")),
                (_SINK_OVERFLOW, _sink_wrong("naive")),
                ("return the weights over the real keys only (the sink's own weight is dropped), "
                 "so they sum to less than 1", _sink_wrong("with_sink")),
            ],
        ),
        Spec(
            "entropy", ("weights",), _ref_entropy,
            lambda got, exp: _compare_float_scalar(got, exp, nan_hint=(
                "0 * log(0) is NaN in numpy: ignore the zero weights (their limit is 0)")),
            cases=[
                Case((np.array([1.0]),)),
                Case((np.array([0.5, 0.5]),)),
                Case((np.array([1.0, 0.0]),)),
                Case((np.array([0.25, 0.25, 0.5]),)),
                Case((np.array([0.0, 0.2, 0.0, 0.8]),)),
                Case((np.full(8, 1 / 8),)),
            ],
            properties=[("random distributions (with zeros)", distribution)],
            mistakes=[
                ("entropy with log2: the course uses the natural log (np.log), in nats",
                 _entropy_wrong("log2")),
                ("ignore zero weights: 0 * log(0) is NaN in numpy, but its limit is 0",
                 _entropy_wrong("zeros")),
                ("entropy is -sum(w * log w), which is >= 0: mind the minus sign", _entropy_wrong("sign")),
            ],
        ),
        Spec(
            "evict", ("scores", "keep"), _ref_evict,
            lambda got, exp: _compare_floats(got, exp, nan_hint=_SOFTMAX_OVERFLOW),
            cases=[
                Case((np.array([0.0]), np.array([True]))),
                Case((np.array([1.0, 2.0]), np.array([True, False]))),
                Case((np.array([1.0, 2.0, 3.0]), np.array([True, False, True]))),
                Case((np.array([5.0, 0.0, 0.0, 1.0]), np.array([False, True, True, True]))),
                Case((np.array([1000.0, 999.0, 0.0]), np.array([True, True, False]))),
            ],
            properties=[("random scores and keep masks", evict_case)],
            mistakes=[
                ("evict renormalising wrongly: zeroing the evicted weights of the full softmax leaves "
                 "the kept ones summing to less than 1; take the softmax over the kept scores only",
                 _evict_wrong("no_renorm")),
                ("keep is True for the keys that STAY in the cache", _evict_wrong("inverted")),
                ("return an array of the same shape as scores, with 0 at the evicted keys",
                 _evict_wrong("compressed")),
                (_SOFTMAX_OVERFLOW, _evict_wrong("naive")),
            ],
        ),
    ]


# ---- ex5_costs -----------------------------------------------------------------------


def _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    values_per_token = 2 * layers * kv_heads * head_dim  # 2: one K and one V vector per head
    return values_per_token * tokens * batch * bytes_per_element


def _ref_kv_entries(policy, t, window=None, sinks=0):
    if policy == "dense":
        return t
    if policy == "window":
        return min(t, window)
    if policy == "sinks":
        return min(t, sinks + window)
    raise ValueError(policy)


def _ref_max_sequences(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    per_sequence = _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element)
    return budget_bytes // per_sequence


def _kv_entries_wrong(kind):
    def wrong(policy, t, window=None, sinks=0):
        if policy == "dense":
            return t
        if kind == "no_min":
            return window if policy == "window" else sinks + window
        if kind == "forgot_sinks":
            return min(t, window)
        if kind == "max":
            return max(t, window) if policy == "window" else max(t, sinks + window)
        if kind == "sinks_only" and policy == "sinks":
            return min(t, sinks)
        return _ref_kv_entries(policy, t, window, sinks)
    return wrong


def _compare_answer_bool(got, expected):
    if got is None:
        return "not answered yet (still None)", "replace None with True or False"
    if isinstance(got, str):
        return f"a string {got!r}, expected a bool", "write True or False without quotes"
    if not isinstance(got, (bool, np.bool_)):
        return f"{_fmt(got, 60)} ({type(got).__name__}), expected a bool", "answer True or False"
    if bool(got) != expected:
        return f"expected {expected}, got {bool(got)}", None
    return None


_REASON_WORDS = ("cost", "comput", "memory", "capacity", "bottleneck", "expensive", "cache", "flop",
                 "budget", "quadratic", "diminish", "latency")


def _compare_reason(got, expected):
    if got is None:
        return "not answered yet (still None)", "write your reason as a string"
    if not isinstance(got, str):
        return f"a {type(got).__name__}, expected a string", "write your reason in quotes"
    if len(got.split()) < 4:
        return "too short: explain in a sentence or two", None
    if not any(word in got.lower() for word in _REASON_WORDS):
        return ("the reason names no trade-off", "say what more global tokens cost (compute for the "
                "extra pairs, KV-cache memory) or why a fixed number of them limits capacity")
    return None


_CHOICE_HINTS = {
    "A": "dense attention sees everything but its cost grows as N^2 in compute and N in KV memory",
    "C": "a window alone needs about N / W layers to carry a theme across the document",
    "D": "truncating drops the rest of the document, including clauses that matter",
}


def _compare_choice(got, expected):
    if got is None:
        return "not answered yet (still None)", "replace None with one letter, e.g. \"B\""
    if not isinstance(got, str) or got.strip().upper() not in ("A", "B", "C", "D"):
        return f"{_fmt(got, 60)} is not one of the letters A, B, C, D", "answer with one letter as a string"
    if got.strip().upper() != expected:
        return f"{got.strip().upper()} is not the best choice", _CHOICE_HINTS.get(got.strip().upper())
    return None


def _specs_ex5(st, hnp):
    small = st.integers(1, 64)

    @st.composite
    def bytes_case(draw):
        args = tuple(draw(small) for _ in range(4))
        kwargs = {}
        if draw(st.booleans()):
            kwargs["batch"] = draw(st.integers(1, 8))
        if draw(st.booleans()):
            kwargs["bytes_per_element"] = draw(st.sampled_from([1, 2, 4]))
        return Case(args, kwargs)

    @st.composite
    def entries_case(draw):
        policy = draw(st.sampled_from(["dense", "window", "sinks"]))
        t = draw(st.integers(0, 5000))
        if policy == "dense":
            return Case((policy, t))
        kwargs = {"window": draw(st.integers(1, 4096))}
        if policy == "sinks":
            kwargs["sinks"] = draw(st.integers(0, 8))
        return Case((policy, t), kwargs)

    @st.composite
    def budget_case(draw):
        args = tuple(draw(small) for _ in range(4))
        per = _ref_kv_cache_bytes(*args)
        budget = draw(st.integers(0, 20 * per))
        kwargs = {"bytes_per_element": draw(st.sampled_from([1, 2, 4]))} if draw(st.booleans()) else {}
        return Case((budget,) + args, kwargs)

    gib = 2**30
    return [
        Spec(
            "kv_cache_bytes", ("layers", "kv_heads", "head_dim", "tokens", "batch", "bytes_per_element"),
            _ref_kv_cache_bytes, _compare_int,
            cases=[
                Case((1, 1, 1, 1)),
                Case((1, 1, 1, 1), {"bytes_per_element": 4}),
                Case((2, 2, 4, 3), {"batch": 2}),
                Case((32, 32, 128, 1)),
                Case((32, 8, 128, 4096), {"batch": 3, "bytes_per_element": 1}),
            ],
            properties=[("random model shapes, batch and dtype sizes", bytes_case)],
            mistakes=[
                ("forgetting the factor 2 for K and V: every token stores a key AND a value vector",
                 lambda l, h, d, t, batch=1, bytes_per_element=2: l * h * d * t * batch * bytes_per_element),
                ("use the batch and bytes_per_element arguments (defaults 1 and 2)",
                 lambda l, h, d, t, batch=1, bytes_per_element=2: 2 * l * h * d * t * 2),
                ("count bytes, not bits", lambda l, h, d, t, batch=1, bytes_per_element=2:
                 2 * l * h * d * t * batch * bytes_per_element * 8),
                ("the cache grows with every layer: multiply by layers too",
                 lambda l, h, d, t, batch=1, bytes_per_element=2: 2 * h * d * t * batch * bytes_per_element),
            ],
        ),
        Spec(
            "kv_entries", ("policy", "t", "window", "sinks"), _ref_kv_entries, _compare_int,
            cases=[
                Case(("dense", 0)),
                Case(("dense", 7)),
                Case(("window", 3), {"window": 5}),
                Case(("window", 10), {"window": 4}),
                Case(("sinks", 10), {"window": 4, "sinks": 2}),
                Case(("sinks", 5), {"window": 4, "sinks": 4}),
            ],
            properties=[("random policies and lengths", entries_case)],
            mistakes=[
                ("before the cache fills up only t entries exist: min(t, window)", _kv_entries_wrong("no_min")),
                ("the sinks policy keeps the sink tokens AND the window: min(t, sinks + window)",
                 _kv_entries_wrong("forgot_sinks")),
                ("the cache keeps at most the window: min, not max", _kv_entries_wrong("max")),
                ("the sinks policy keeps the sink tokens AND the window: min(t, sinks + window)",
                 _kv_entries_wrong("sinks_only")),
            ],
        ),
        Spec(
            "max_sequences", ("budget_bytes", "layers", "kv_heads", "head_dim", "tokens", "bytes_per_element"),
            _ref_max_sequences, _compare_int,
            cases=[
                Case((0, 1, 1, 1, 1)),
                Case((4, 1, 1, 1, 1)),
                Case((7, 1, 1, 1, 1)),
                Case((100, 1, 2, 3, 4), {"bytes_per_element": 1}),
                Case((24 * gib, 32, 32, 128, 4096)),
            ],
            properties=[("random budgets and model shapes", budget_case)],
            mistakes=[
                ("only whole sequences fit: round down with //, not up (ceil) or to the nearest",
                 lambda b, l, h, d, t, bytes_per_element=2: -(-b // _ref_kv_cache_bytes(l, h, d, t, 1, bytes_per_element))),
                ("only whole sequences fit: round down with //, not up (ceil) or to the nearest",
                 lambda b, l, h, d, t, bytes_per_element=2: round(b / _ref_kv_cache_bytes(l, h, d, t, 1, bytes_per_element))),
                ("forgetting the factor 2 for K and V: every token stores a key AND a value vector",
                 lambda b, l, h, d, t, bytes_per_element=2: b // (l * h * d * t * bytes_per_element)),
                ("use the bytes_per_element argument (default 2)",
                 lambda b, l, h, d, t, bytes_per_element=2: b // _ref_kv_cache_bytes(l, h, d, t, 1, 2)),
            ],
        ),
        Spec(
            "mistral_kv_bytes_per_token", (), _answer(2 * 32 * 8 * 128 * 2),
            _compare_whole_number_answer("a whole number of bytes"),
            is_answer=True,
            mistakes=[
                ("counting query heads instead of KV heads: Mistral-7B has 32 query heads but only 8 "
                 "KV heads (grouped-query attention), and only KV heads are cached", 2 * 32 * 32 * 128 * 2),
                ("forgetting the factor 2 for K and V", 32 * 8 * 128 * 2),
                ("fp16 is 2 bytes per element", 2 * 32 * 8 * 128 * 4),
                ("count bytes for one token across all 32 layers", 2 * 8 * 128 * 2),
            ],
        ),
        Spec("global_tokens_always_help", (), _answer(False), _compare_answer_bool, is_answer=True,
             mistakes=[("each global token adds about N pairs per layer and KV entries that are never "
                        "evicted, and a few tokens can only carry so much: returns diminish", True)]),
        Spec("global_tokens_reason", (), _answer(None), _compare_reason, is_answer=True),
        Spec("legal_contracts_choice", (), _answer("B"), _compare_choice, is_answer=True),
    ]


_SPECS: dict[str, Spec] | None = None


def specs() -> dict[str, Spec]:
    """All specs by name (built on first use: hypothesis is imported lazily)."""
    global _SPECS
    if _SPECS is None:
        from hypothesis import strategies as st
        from hypothesis.extra import numpy as hnp

        built = {}
        for make in (_specs_ex1, _specs_ex2, _specs_ex3, _specs_ex4, _specs_ex5):
            for spec in make(st, hnp):
                built[spec.name] = spec
        assert set(built) == {n for names in EXERCISE_SETS.values() for n in names}
        _SPECS = built
    return _SPECS


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

    def __init__(self, spec, candidate, timeout, budget):
        self.spec, self.candidate, self.timeout = spec, candidate, timeout
        self.deadline = time.monotonic() + budget
        self.passed = 0
        self.total = 0
        self.failures: list[Failure] = []
        self.notes: list[str] = []
        self.stop_reason: str | None = None  # set after a timeout or NotImplementedError
        self.wrong_answers: dict[int, tuple] = {}  # id(failure) -> (input, answer, expected)

    def evaluate(self, case: Case):
        """Call the candidate on one case; None if right, else a Failure."""
        spec = self.spec
        expected = spec.reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        if time.monotonic() > self.deadline:
            self.stop_reason = "the check ran out of time (is your function very slow?)"
            return Failure("", spec.describe(case), self.stop_reason, size=_size(case.args))
        outcome = _invoke(self.candidate, case.args, case.kwargs, self.timeout)
        failure = Failure("", spec.describe(case), "", size=_size((case.args, case.kwargs)))
        if outcome.note and outcome.note not in self.notes:
            self.notes.append(outcome.note)
        if outcome.timed_out:
            self.stop_reason = f"timed out after {self.timeout:g} s"
            failure.reason = self.stop_reason + " (an infinite loop?)"
            failure.hint = "look for a loop whose condition never becomes false"
            return failure
        if outcome.error:
            kind, message = outcome.error
            failure.reason = f"raised {kind}: {message}"
            if kind == "NotImplementedError":
                self.stop_reason = "not implemented yet"
                failure.reason = "not implemented yet"
                failure.hint = message or None
            return failure
        try:
            problem = spec.compare(outcome.value, expected)
        except BaseException as exc:  # noqa: BLE001 - a learner's object that breaks comparison
            kind, message = _describe_exception(exc)
            problem = (f"could not compare the result ({kind}: {message})", None)
        if problem is None:
            return None
        failure.reason, failure.hint = problem
        failure.expected, failure.got = _fmt(expected), _fmt(outcome.value)
        self.wrong_answers[id(failure)] = (case, outcome.value, expected)
        return failure

    def diagnose(self):
        """Give failures the hint of a known mistake whose output equals the candidate's.

        Several mistakes can agree on a tiny input, so the mistake matching the most failing
        inputs wins; a failure it does not explain gets the first mistake that does."""
        matches: dict[int, list[int]] = {}  # mistake index -> ids of failures it explains
        for i, (hint, wrong) in enumerate(self.spec.mistakes):
            for key, (case, got, expected) in self.wrong_answers.items():
                try:
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore")
                        wrong_out = wrong(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
                    # the mistake explains this failure only if it also gets this input wrong
                    if _same(got, wrong_out) and not _same(wrong_out, expected):
                        matches.setdefault(i, []).append(key)
                except Exception:  # noqa: BLE001 - that wrong implementation does not apply here
                    continue
        ranked = sorted(matches, key=lambda i: -len(matches[i]))  # stable: catalogue order on ties
        for failure in self.failures:
            for i in ranked:
                if id(failure) in matches[i]:
                    failure.hint = self.spec.mistakes[i][0]
                    break

    def record(self, label: str, failure: Failure | None):
        self.total += 1
        if failure is None:
            self.passed += 1
        else:
            failure.check = label
            self.failures.append(failure)

    def run_property(self, label: str, strategy):
        from hypothesis import HealthCheck, Phase, given, settings

        last: list[Failure] = []
        examples = [0]

        class Mismatch(AssertionError):
            pass

        @settings(database=None, derandomize=True, deadline=None, max_examples=MAX_EXAMPLES,
                  report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
                  phases=(Phase.explicit, Phase.generate, Phase.shrink), print_blob=False)
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

        try:
            with _without_local_constants():
                prop()
        except _Abort:
            pass
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - hypothesis' own errors (e.g. Flaky) end the run
            if not last:
                raise
        if last:
            self.record(label, last[-1])  # the last failing call is hypothesis' minimal example
        else:
            self.record(label, None)


def _check_args(name, timeout, budget) -> tuple[str, float, float]:
    """Validate the caller's arguments (a bad one is not the candidate's fault, so it raises)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be the exercise name as a string, e.g. check('causal_mask', causal_mask), "
                        f"got {type(name).__name__}")
    return (name, float_arg("timeout", timeout, strictly_positive=True),
            float_arg("budget", budget, strictly_positive=True))


def run_check(name: str, candidate, *, timeout: float = DEFAULT_TIMEOUT,
              budget: float = DEFAULT_BUDGET) -> CheckResult:
    """Run every check for exercise ``name`` on ``candidate`` (a function, or the answer value)
    and return a :class:`CheckResult`. Never raises because of the candidate; a bad ``name``,
    ``timeout`` or ``budget`` (seconds, > 0) raises TypeError or ValueError."""
    name, timeout, budget = _check_args(name, timeout, budget)
    all_specs = specs()
    if name not in all_specs:
        close = [n for n in all_specs if n.split("_")[0] in name or name in n]
        return CheckResult(name, 0, 0, notes=[
            f"unknown exercise name {name!r}; known names: {', '.join(all_specs)}"
            + (f" (did you mean {close[0]!r}?)" if close else "")])
    spec = all_specs[name]
    if spec.is_answer:
        return _run_answer(spec, candidate)
    if candidate is None or not callable(candidate):
        reason = ("not implemented yet: still None" if candidate is None else
                  f"expected a function, got a {type(candidate).__name__}")
        hint = ("pass the function itself, without calling it: "
                f"check({name!r}, {name})") if candidate is not None else None
        total = len(spec.cases) + len(spec.properties)
        return CheckResult(name, 0, total, [Failure("all", "", reason, hint=hint)])

    run = _Run(spec, candidate, timeout, budget)
    for i, case in enumerate(spec.cases, 1):
        if run.stop_reason:
            run.record(f"edge case {i}", Failure("", spec.describe(case), f"not run: {run.stop_reason}",
                                                 size=10**9))
            continue
        run.record(f"edge case {i}", run.evaluate(case))
    for label, make_strategy in spec.properties:
        if run.stop_reason:
            run.record(f"property: {label}", Failure("", "(random inputs)", f"not run: {run.stop_reason}",
                                                     size=10**9))
            continue
        run.run_property(f"property: {label}", make_strategy())
    run.diagnose()
    failures = sorted(run.failures, key=lambda f: f.size)  # stable: ties keep their order
    return CheckResult(name, run.passed, run.total, failures, run.notes)


def _same_answer(value, wrong_value) -> bool:
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
        return CheckResult(spec.name, 1, 1)
    reason, hint = problem
    for wrong_hint, wrong_value in spec.mistakes:
        if _same_answer(value, wrong_value):
            hint = wrong_hint
            break
    return CheckResult(spec.name, 0, 1, [Failure("the answer", spec.name, reason, got=_fmt(value, 200),
                                                 hint=hint)])


def check(name: str, candidate, *, timeout: float = DEFAULT_TIMEOUT,
          budget: float = DEFAULT_BUDGET) -> CheckResult:
    """Check an exercise and print the verdict; returns the :class:`CheckResult`.

    ``check("causal_mask", causal_mask)`` for a function, ``check("kv_pairs_at_500",
    kv_pairs_at_500)`` for an answer. End the line with ``;`` in a notebook to avoid also
    seeing the returned result's short repr.
    """
    _check_args(name, timeout, budget)  # raises here, not as "the check itself failed"
    try:
        result = run_check(name, candidate, timeout=timeout, budget=budget)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a bug in a check must not look like the learner's
        kind, message = _describe_exception(exc)
        result = CheckResult(name, 0, 0, notes=[f"the check itself failed ({kind}: {message}); "
                                                "please report this to the course team"])
    print(result.report())
    return result
