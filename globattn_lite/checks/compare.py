"""Comparing a learner's answer with the expected one, and formatting values for verdicts.

Each ``compare`` function returns None when ``got`` is right, else ``(reason, hint or None)``.
Comparisons of quiz answers never show the expected value: a verdict must not give the
answer away.
"""

from __future__ import annotations

import math
import numbers
import textwrap

import numpy as np

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
    if (
        isinstance(a, (tuple, list))
        and isinstance(b, (tuple, list))
        and len(a) == len(b)
        and any(isinstance(x, np.ndarray) for x in (*a, *b))
    ):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
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
            return (
                f"right pattern but dtype {arr.dtype}, expected bool",
                "return a boolean array (comparisons like k <= q give one; or .astype(bool))",
            )
        return (
            f"dtype {arr.dtype}, expected a boolean array",
            "a mask says True (may attend) / False, not an additive 0 / -inf mask",
        )
    wrong = np.argwhere(arr != expected)
    if len(wrong):
        q, k = (int(i) for i in wrong[0])
        return (
            f"{len(wrong)} of {arr.size} entries differ, first at [q={q}, k={k}]: "
            f"expected {bool(expected[q, k])}, got {bool(arr[q, k])}"
        ), None
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
    if isinstance(got, str):
        return (
            f"returned the string {_fmt(got, 40)}, expected an int",
            "a number, not a string: write it without quotes (or drop the str(...))",
        )
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


def compare_whole_number_answer(what: str):
    """Compare a quiz answer that is a whole number without revealing it; an unanswered
    ``None`` gets the hint "replace None with ``what``"."""

    def compare(got, expected):
        if got is None:
            return "not answered yet (still None)", f"replace None with your answer: {what}"
        if isinstance(got, np.ndarray) and got.ndim == 0:
            got = got[()]
        if isinstance(got, str) or not _is_int(got) or (_is_real(got) and float(got) == expected):
            return _compare_int(got, expected)  # a type problem: says nothing about the value
        if int(got) != expected:
            return f"{int(got)} is not the right number", None
        return None

    return compare
