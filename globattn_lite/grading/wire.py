"""The wire format between the grader and its sandbox: JSON lines of plain data only.

Numbers, strings, lists, tuples, sets, string-keyed dicts and numpy arrays/scalars of
numbers or booleans travel; anything else arrives as an :class:`Opaque` placeholder. Both
sides import this module (the sandbox too: it holds no answers).
"""

from __future__ import annotations

import numpy as np

MAX_LINE_BYTES = 32 * 2**20  # one sandbox reply
MAX_ELEMENTS = 2_000_000  # numbers in one reply
MAX_DEPTH = 32  # nesting of lists/tuples/dicts in one reply


class Opaque:
    """Stands for a value the sandbox could not send as plain data."""

    def __init__(self, description: str):
        self.description = description

    def __repr__(self):
        return f"<{self.description}>"


class ProtocolError(Exception):
    pass


_NUMERIC_KINDS = "biuf"


def encode(obj, depth: int = 0, budget: list | None = None):
    """Plain-data JSON form of ``obj`` (runs in the sandbox on the submission's values)."""
    budget = [MAX_ELEMENTS] if budget is None else budget
    if depth > MAX_DEPTH:
        return {"__opaque__": "value nested too deeply"}
    if obj is None:
        return None
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        if obj.dtype.kind in _NUMERIC_KINDS:
            return {"__np__": [obj.dtype.str, obj.item()]}
        return {"__opaque__": f"numpy {obj.dtype} scalar"}
    for kind in (bool, int, float, str):  # bool before int: True is an int too
        if isinstance(obj, kind):
            return kind(obj)
    if isinstance(obj, (tuple, list, set, frozenset)):
        budget[0] -= len(obj)
        if budget[0] < 0:
            return {"__opaque__": "value too large"}
        items = [encode(x, depth + 1, budget) for x in obj]
        tag = {tuple: "__tuple__", list: None, set: "__set__", frozenset: "__set__"}
        for kind, name in tag.items():
            if isinstance(obj, kind):
                return items if name is None else {name: items}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            return {"__opaque__": "dict with non-string keys"}
        budget[0] -= len(obj)
        if budget[0] < 0:
            return {"__opaque__": "value too large"}
        return {"__dict__": {str(k): encode(v, depth + 1, budget) for k, v in obj.items()}}
    if callable(obj) and not isinstance(obj, np.ndarray):
        return {"__opaque__": f"function {getattr(obj, '__name__', type(obj).__name__)}"}
    try:  # numpy arrays, and array-likes such as torch tensors
        arr = np.asarray(obj)
    except Exception:  # noqa: BLE001
        return {"__opaque__": f"{type(obj).__name__} object"}
    if arr.dtype.kind not in _NUMERIC_KINDS:
        return {"__opaque__": f"{type(obj).__name__} of dtype {arr.dtype}"}
    budget[0] -= arr.size
    if budget[0] < 0:
        return {"__opaque__": f"array too large ({arr.size} elements)"}
    return {"__nd__": [arr.dtype.str, list(arr.shape), arr.ravel().tolist()]}


def _dtype(text) -> np.dtype:
    dtype = np.dtype(str(text))
    if dtype.kind not in _NUMERIC_KINDS:
        raise ProtocolError(f"unexpected dtype {dtype}")
    return dtype


def decode(obj):
    """Inverse of :func:`encode`; accepts nothing but plain data (raises ProtocolError)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode(x) for x in obj]
    if not isinstance(obj, dict) or len(obj) != 1:
        raise ProtocolError("malformed value")
    ((tag, value),) = obj.items()
    if tag == "__nd__":
        dtype, shape, flat = value
        shape = tuple(int(s) for s in shape)
        arr = np.array(flat, dtype=_dtype(dtype))
        if arr.ndim != 1 or arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ProtocolError("array data does not match its shape")
        return arr.reshape(shape)
    if tag == "__np__":
        return _dtype(value[0]).type(value[1])
    if tag == "__tuple__":
        return tuple(decode(x) for x in value)
    if tag == "__set__":
        try:
            return set(decode(x) for x in value)
        except TypeError:
            return Opaque("set of unhashable values")
    if tag == "__dict__":
        return {str(k): decode(v) for k, v in value.items()}
    if tag == "__opaque__":
        return Opaque(str(value)[:200])
    raise ProtocolError(f"unknown tag {tag!r}")
