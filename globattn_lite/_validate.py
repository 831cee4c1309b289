"""Argument checks shared by the package: each raises a ValueError or TypeError
that names the argument, what came in, and what would be valid."""

from __future__ import annotations

import numbers

import numpy as np


def int_arg(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise if it is not a whole number in range.

    Booleans are rejected (``True`` is not a size). NumPy integers are accepted.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number (int), got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def float_arg(name: str, value, *, minimum: float | None = None, strictly_positive: bool = False) -> float:
    """Return ``value`` as a finite float, or raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if strictly_positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def choice_arg(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices`` (strings), or raise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {sorted(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def real_array(name: str, x, *, min_ndim: int = 0, float64: bool = False, finite: bool = False) -> np.ndarray:
    """``x`` as a float numpy array, or raise naming ``name``.

    Ints become float64 and floats keep their precision (all become float64 with ``float64``).
    Booleans, complex numbers, strings and objects are refused; ``finite`` also refuses NaN and inf.
    """
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be an array of real numbers (float or int), got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if float64 or not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr
