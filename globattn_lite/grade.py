"""Batch grader: grade a folder of exercise submissions into one CSV table.

    python -m globattn_lite.grade SUBMISSIONS... --out scores.csv [--jobs N] [--tests DIR]

SUBMISSIONS are ``.ipynb`` or ``.py`` files, or folders searched recursively. A file belongs
to the exercise set its name starts with (``ex1_dense.ipynb``, ``alice/ex1_dense.py``,
``ex1_dense_bob.ipynb``); other files inside folders are skipped, and a file named explicitly
that matches no set gets a row saying so. In a ``.py`` file, ``# %%`` lines separate cells.

The table has one row per submission and the columns ``submission``, ``exercise_set``,
``status``, one column per exercise function or answer of the sets present (named exactly
after it, e.g. ``causal_mask``, ``kv_pairs_at_500``) holding the fraction of its checks
passed (0 to 1; empty for names of other sets), ``total`` (the mean of the row's exercise
scores) and ``reasons`` (a short reason for each failure, ``name: reason``, separated by
`` | ``). ``status`` is ``graded``, ``malformed`` (unreadable notebook), ``timeout`` (the
submission's time limit ran out), ``crashed`` (its process kept dying), ``unknown set`` or
``grader error``. The CSV is written to a temporary file and renamed (``os.replace``), so
an existing table is either kept or replaced whole.

The checks are the same as the notebooks' ``check(...)`` (``globattn_lite.checks``): same
inputs, same verdicts.

Instructor checks (``--tests DIR``)
-----------------------------------
Every ``*.py`` file in DIR may define functions ``check_<name>(candidate)``; each one counts
as one more check of exercise ``<name>``. ``candidate`` is the submission's function (calls
run in the sandbox, with the per-call time limit; a failing call raises
``SubmissionCallError``) or its answer value. Return a list of failure messages (empty or
``None`` means passed; ``True``/``False`` and a single message string also work); an
exception counts as a failure. For
an exercise name the course does not ship, the file must also set
``EXERCISE_SET = "ex1_dense"`` (say), and the name gets its own column. Example::

    def check_causal_mask(causal_mask):
        m = causal_mask(1000)
        return [] if m[999, 0] and not m[0, 999] else ["wrong at n = 1000"]

Trust model
-----------
Nothing stored in a submission is trusted: outputs, execution counts, metadata and the
submission's own ``check`` calls are ignored, and its code runs from scratch. Three kinds of
process take part:

1. this command (trusted) reads the submissions as data: it never executes them. It parses
   notebooks with nbformat and starts one grading process per submission (``--jobs`` of them
   at a time).
2. the grading process (trusted) imports the genuine checks and instructor checks, and
   starts a sandbox process for the submission. It never runs submission code itself: it
   sends the sandbox each code cell, then each check's inputs, and gets back plain data
   (JSON: numbers, strings, lists, numpy arrays of numbers or booleans; anything else arrives
   as an opaque placeholder). All comparisons and scores are computed here.
3. the sandbox (untrusted) runs ``python -I`` (no user site, no PYTHONPATH, no current
   folder on ``sys.path``) with a minimal environment, in a temporary folder holding a copy
   of the submission (the original file is never opened for writing). ``globattn_lite.checks``
   is replaced there by a module whose ``check`` does nothing, IPython magics (``%...``,
   ``!...``, ``%%`` cells) are dropped, and stdout/stderr go to ``os.devnull``, so huge
   prints cost nothing. Each cell and each call has a time limit (SIGALRM inside the
   sandbox; a hard limit from the grading process, which kills the sandbox's whole process
   group), and so has the submission as a whole. On POSIX the sandbox also sets resource
   limits before running any submission code: address space (``--memory-mb``: a memory bomb
   raises MemoryError), CPU seconds, file size (a runaway file write fails) and no core
   dumps. After a cell is killed, crashes the process or runs out of memory, the sandbox is
   restarted and the cells that worked are replayed, so the rest is still graded.

So a submission that redefines ``check``, monkeypatches ``globattn_lite.checks`` or numpy,
or stores fake outputs changes nothing: it can only influence the values its own functions
return for the inputs they are given, which is exactly what is graded. Inputs are
deterministic (derandomised hypothesis), so a submission could in principle hard-code
answers; instructor checks in ``--tests`` are the remedy.

Limits: this is process isolation, not a security sandbox. Submission code runs as your
user and can read or write anything you can (including other submissions or the output
table) and start processes that leave the process group. Grade untrusted classes inside a
container or as a separate user. On Windows there is no SIGALRM and no ``resource``
module: time limits are enforced only by killing the sandbox from outside, and there is no
memory limit. macOS refuses an address-space limit, so there a memory bomb is stopped only by
the time limits.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from globattn_lite._validate import float_arg, int_arg

SUFFIXES = (".ipynb", ".py")
MAX_SUBMISSION_BYTES = 20 * 2**20
MAX_LINE_BYTES = 32 * 2**20  # one sandbox reply
MAX_ELEMENTS = 2_000_000  # numbers in one reply
MAX_DEPTH = 32  # nesting of lists/tuples/dicts in one reply
MAX_RESTARTS = 3  # sandbox restarts per submission before giving up
STATUSES = ("graded", "malformed", "timeout", "crashed", "unknown set", "grader error")


@dataclass
class Limits:
    """Time limits (seconds) and sandbox resources for one submission."""

    cell_timeout: float = 30.0
    call_timeout: float = 5.0
    submission_timeout: float = 300.0
    memory_mb: int = 2048

    def __post_init__(self):
        for name in ("cell_timeout", "call_timeout", "submission_timeout"):
            setattr(self, name, float_arg(name, getattr(self, name), strictly_positive=True))
        self.memory_mb = int_arg("memory_mb", self.memory_mb, minimum=1)


# ======================================================================================
# Submissions: which set, and the code cells (read as data, never executed here)
# ======================================================================================


class MalformedSubmission(Exception):
    """The submission cannot be read as a notebook or a Python file."""


def exercise_set_for(path: Path) -> str | None:
    """The exercise set a file belongs to, from its name (``ex1_dense...``), or None."""
    from globattn_lite.checks import EXERCISE_SETS

    stem = path.stem.lower()
    for name in sorted(EXERCISE_SETS, key=len, reverse=True):
        if stem == name or (stem.startswith(name) and not stem[len(name)].isalnum()):
            return name
    return None


def discover(paths) -> tuple[list[Path], list[str]]:
    """Submission files from files and folders (sorted, no duplicates) and notes on skips."""
    files, notes, seen = [], [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = []
            for p in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts)
                if p.suffix not in SUFFIXES or not p.is_file() or hidden:
                    continue
                if exercise_set_for(p) is None:
                    notes.append(f"skipped {p}: its name matches no exercise set")
                else:
                    found.append(p)
        elif path.is_file():
            found = [path]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, notes


PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")  # their body is Python: run it once


def strip_magics(source: str) -> str | None:
    """Drop IPython syntax the sandbox cannot run: None for a non-Python ``%%`` cell magic
    (``%%bash``, ``%%html``...), else the source with ``%line`` and ``!shell`` lines replaced
    by ``pass`` (keeps indentation); ``%%time``/``%%timeit``/``%%capture`` lose only that line."""
    stripped_source = source.lstrip()
    if stripped_source.startswith("%%"):
        first, _, rest = stripped_source.partition("\n")
        if first.split()[0] not in PYTHON_CELL_MAGICS:
            return None
        source = rest
    lines = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass  # IPython magic removed by the grader"
        lines.append(line)
    return "\n".join(lines)


def _notebook_sources(text: str) -> tuple[list[str], list[str]]:
    """Code cell sources of a notebook: through nbformat (any version it knows), or read
    leniently from the JSON when nbformat refuses a notebook whose cells are still readable."""
    import nbformat

    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedSubmission(f"not valid notebook JSON ({textwrap.shorten(str(exc), 120)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        raise MalformedSubmission("not a notebook (no list of cells)")
    if isinstance(data.get("nbformat"), int):
        try:
            nb = nbformat.reads(text, as_version=4, capture_validation_error={})
            return [c.source for c in nb.cells if c.cell_type == "code"], []
        except Exception:  # noqa: BLE001 - e.g. missing keys: try the lenient reading below
            pass
    sources = []
    for cell in data.get("cells") or []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = cell.get("source", "")
            if isinstance(src, list) and all(isinstance(line, str) for line in src):
                src = "".join(src)
            if not isinstance(src, str):
                raise MalformedSubmission("a code cell's source is neither text nor a list of lines")
            sources.append(src)
    return sources, ["the notebook is not valid nbformat; its code cells were read leniently"]


def load_cells(path: Path) -> tuple[list[str], list[str]]:
    """The submission's code cells (magics stripped) and notes. Raises MalformedSubmission."""
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise MalformedSubmission(f"file too large ({size} bytes)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedSubmission("not UTF-8 text") from None
    if path.suffix == ".ipynb":
        sources, notes = _notebook_sources(text)
    else:
        sources, notes, current = [], [], []
        for line in text.split("\n"):
            if line.startswith("# %%"):
                sources.append("\n".join(current))
                current = []
            else:
                current.append(line)
        sources.append("\n".join(current))
    cells = []
    for src in sources:
        stripped = strip_magics(src)
        if stripped is None:
            notes.append("a %% cell magic was skipped")
        cells.append(stripped if stripped is not None else "")
    return cells, notes


# ======================================================================================
# Wire format between the sandbox and the grading process: JSON lines, plain data only
# ======================================================================================


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
    (tag, value), = obj.items()
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


# ======================================================================================
# The sandbox process (untrusted: runs the submission's code)
# ======================================================================================


class _Timeout(BaseException):
    pass


def _call_with_alarm(seconds: float, fn):
    if not hasattr(signal, "setitimer"):
        return fn()  # Windows: the grading process kills the sandbox instead

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _apply_limits(limits: dict) -> None:
    """Cap the sandbox's resources (POSIX ``resource``). Windows has no ``resource`` module and
    macOS refuses some limits (setrlimit(RLIMIT_AS) raises ValueError there): a limit the
    system refuses is skipped, so the sandbox still starts and the time limits still hold."""
    try:
        import resource
    except ImportError:  # Windows
        return
    mb = 2**20

    def cap(kind, value):  # soft = hard, so the submission cannot raise it again
        try:
            hard = resource.getrlimit(kind)[1]
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass

    cap(resource.RLIMIT_AS, int(limits["memory_mb"]) * mb)
    cap(resource.RLIMIT_CPU, int(limits["cpu_seconds"]))
    cap(resource.RLIMIT_FSIZE, 64 * mb)
    cap(resource.RLIMIT_CORE, 0)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails instead of killing


def _error_reply(exc: BaseException, label: str | None = None) -> dict:
    try:
        message = textwrap.shorten(str(exc), 200, placeholder=" ...")
    except BaseException:  # noqa: BLE001
        message = ""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if label is not None and tb.tb_frame.f_code.co_filename == label:
            line = tb.tb_lineno
        tb = tb.tb_next
    return {"error": [type(exc).__name__, message], "line": line}


def _worker_main() -> None:  # pragma: no cover - runs in the sandbox (covered by test_grade)
    import builtins
    import types

    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull_in = os.open(os.devnull, os.O_RDONLY)
    devnull_out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull_in, 0)
    os.dup2(devnull_out, 1)
    os.dup2(devnull_out, 2)
    config = json.loads(requests.readline())
    _apply_limits(config["limits"])

    def noop(*args, **kwargs):
        return None

    class NoIPython:
        def __getattr__(self, name):
            return noop

    import globattn_lite

    fake = types.ModuleType("globattn_lite.checks", "Stand-in used while grading: check() does nothing.")
    fake.check = noop
    fake.run_check = noop
    sys.modules["globattn_lite.checks"] = fake
    globattn_lite.checks = fake
    namespace = {"__name__": "__main__", "__builtins__": builtins, "check": noop, "display": noop,
                 "get_ipython": NoIPython}

    def reply(message: dict) -> None:
        line = json.dumps(message).encode() + b"\n"
        if len(line) > MAX_LINE_BYTES:
            line = json.dumps({"id": message.get("id"), "ok": True,
                               "value": {"__opaque__": "reply too large"}}).encode() + b"\n"
        replies.write(line)
        replies.flush()

    while True:
        raw = requests.readline()
        if not raw:
            return
        request = json.loads(raw)
        rid, op = request.get("id"), request.get("op")
        try:
            if op == "exec":
                label = request["label"]
                code = compile(request["source"], label, "exec")
                try:
                    _call_with_alarm(request["timeout"], lambda: exec(code, namespace))
                    reply({"id": rid, "ok": True})
                except _Timeout:
                    reply({"id": rid, "timeout": True})
                except BaseException as exc:  # noqa: BLE001 - the submission's errors are results
                    reply({"id": rid, **_error_reply(exc, label)})
            elif op == "kind":
                name = request["name"]
                if name not in namespace:
                    reply({"id": rid, "kind": "missing"})
                elif callable(namespace[name]):
                    reply({"id": rid, "kind": "callable"})
                else:
                    value = _call_with_alarm(request["timeout"], lambda: encode(namespace[name]))
                    reply({"id": rid, "kind": "value", "value": value})
            elif op == "call":
                fn = namespace.get(request["name"])
                args = decode(request["args"])
                kwargs = decode(request["kwargs"])
                # a timeout or an exception of the call is answered by the handlers below
                value = _call_with_alarm(request["timeout"], lambda: encode(fn(*args, **kwargs)))
                reply({"id": rid, "ok": True, "value": value})
            else:
                reply({"id": rid, "error": ["ProtocolError", f"unknown op {op!r}"]})
        except _Timeout:
            reply({"id": rid, "timeout": True})
        except BaseException as exc:  # noqa: BLE001 - the submission's errors are results
            reply({"id": rid, **_error_reply(exc)})


# ======================================================================================
# The grading process's side of the sandbox (trusted)
# ======================================================================================


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children of the submission too
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _sandbox_env(home: str) -> dict:
    env = {"PATH": os.defpath, "HOME": home, "TMPDIR": home, "TEMP": home, "TMP": home,
           "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8",
           "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if os.name == "nt" and "SYSTEMROOT" in os.environ:
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]  # Windows Python needs it to start
    return env


class Sandbox:
    """Runs one submission's cells in a separate, killable process and answers requests.

    ``request`` never raises: it returns the sandbox's reply, or a dict with ``timeout``,
    ``crashed`` or ``deadline`` when the sandbox had to be killed, died, or the submission's
    time is up. After a kill or crash the next request restarts the sandbox and replays the
    cells that ran fine."""

    def __init__(self, cells: list[str], workdir: Path, limits: Limits):
        self.cells, self.workdir, self.limits = cells, workdir, limits
        self.deadline = time.monotonic() + limits.submission_timeout
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue | None = None
        self.good_cells: list[int] = []
        self.restarts = -1  # the first start is not a restart
        self.next_id = 0
        self.status = "graded"
        self.notes: list[str] = []

    # -- process management --
    def _start(self) -> dict | None:
        """Start the sandbox and replay the cells that worked; None, or a failure reply."""
        if self.restarts >= MAX_RESTARTS:
            self.status = "crashed"
            return {"crashed": True, "detail": f"gave up after {MAX_RESTARTS} sandbox restarts"}
        self.restarts += 1
        package_parent = str(Path(__file__).resolve().parents[1])
        boot = (f"import sys; sys.path.insert(0, {package_parent!r}); "
                "from globattn_lite.grade import _worker_main; _worker_main()")
        popen_kwargs = {}
        if os.name == "posix":
            popen_kwargs["start_new_session"] = True  # its own process group, killed as a whole
        else:
            popen_kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, cwd=self.workdir, env=_sandbox_env(str(self.workdir)), **popen_kwargs)
        self.replies = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.replies), daemon=True).start()
        cpu_seconds = int(self.limits.submission_timeout) + 10
        self._send({"limits": {"memory_mb": self.limits.memory_mb, "cpu_seconds": cpu_seconds}})
        replay, self.good_cells = self.good_cells, []
        for position, index in enumerate(replay):
            reply = self._exchange(self._exec_message(index), self.limits.cell_timeout)
            if reply.get("ok"):
                self.good_cells.append(index)
                continue
            self.notes.append(f"cell {index + 1} failed when replayed after a restart")
            if self.proc is None:  # killed or dead: the next request restarts again
                self.good_cells += replay[position + 1:]
                return _failed_start(reply)
        return None

    @staticmethod
    def _read(stream, replies: queue.Queue) -> None:
        while True:
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line or (len(line) > MAX_LINE_BYTES and not line.endswith(b"\n")):
                replies.put(None)
                return
            replies.put(line)

    def _send(self, message: dict) -> bool:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None

    # -- requests --
    def request(self, message: dict, timeout: float) -> dict:
        """Send one request (starting the sandbox if needed) and return the reply."""
        if time.monotonic() >= self.deadline:
            return self._out_of_time()
        if self.proc is None:
            failure = self._start()
            if failure is not None:
                return failure
        return self._exchange(message, timeout)

    def _out_of_time(self) -> dict:
        if self.status == "graded":
            self.status = "timeout"
        self.stop()
        return {"deadline": True}

    def _exchange(self, message: dict, timeout: float) -> dict:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return self._out_of_time()
        self.next_id += 1
        if not self._send({**message, "id": self.next_id, "timeout": timeout}):
            return self._died()
        hard_limit = timeout * 1.5 + 1.0  # the sandbox's own SIGALRM should have fired long before
        try:
            line = self.replies.get(timeout=min(hard_limit, remaining))
        except queue.Empty:
            if remaining < hard_limit:
                return self._out_of_time()
            self.stop()
            return {"timeout": True}
        if line is None:
            return self._died()
        try:
            reply = json.loads(line)
            if not isinstance(reply, dict) or reply.get("id") != self.next_id:
                raise ProtocolError("reply out of order")
        except (ValueError, RecursionError, ProtocolError) as exc:
            self.stop()
            return {"error": ["ProtocolError", f"garbled reply from the sandbox ({exc})"]}
        return reply

    def _exec_message(self, index: int) -> dict:
        return {"op": "exec", "source": self.cells[index], "label": f"<cell {index + 1}>"}

    def _died(self) -> dict:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=1.0)  # it closed its output: usually exiting
            except subprocess.TimeoutExpired:
                pass
        self.stop()
        if code is None:
            detail = "the sandbox stopped answering"
        elif code < 0:
            detail = f"the sandbox was killed by signal {-code}"
            if hasattr(signal, "SIGXCPU") and -code == signal.SIGXCPU:
                detail += " (CPU time limit)"
        else:
            detail = f"the sandbox exited with code {code}"
        return {"crashed": True, "detail": detail}

    def _run_cell(self, index: int) -> bool:
        reply = self.request(self._exec_message(index), self.limits.cell_timeout)
        if reply.get("ok"):
            self.good_cells.append(index)
            return True
        if reply.get("timeout"):
            self.notes.append(f"cell {index + 1}: timed out after {self.limits.cell_timeout:g} s")
            self.stop()  # its state is unknown: restart and replay before the next request
        elif reply.get("error"):
            kind, message = reply["error"]
            where = f", line {reply['line']}" if reply.get("line") else ""
            self.notes.append(f"cell {index + 1}{where}: {kind}" + (f": {message}" if message else ""))
            if kind == "MemoryError":
                self.stop()  # free the memory: restart and replay the cells that worked
        elif reply.get("crashed"):
            self.notes.append(f"cell {index + 1}: {reply['detail']}")
        elif reply.get("deadline"):
            self.notes.append(f"cell {index + 1}: the submission's time limit ran out")
        return False

    def run_all_cells(self) -> None:
        for index in range(len(self.cells)):
            if self.status in ("timeout", "crashed"):
                break
            if self.cells[index].strip():
                self._run_cell(index)

    def kind(self, name: str) -> tuple[str, object]:
        """("missing" | "callable" | "value" | "unavailable", value or reason)."""
        reply = self.request({"op": "kind", "name": name}, self.limits.call_timeout)
        if "kind" in reply:
            if reply["kind"] == "value":
                try:
                    return "value", decode(reply["value"])
                except (ProtocolError, ValueError, TypeError, RecursionError) as exc:
                    return "unavailable", f"its value could not be read ({exc})"
            return reply["kind"], None
        return "unavailable", _describe_failed_reply(reply, self.limits.call_timeout)


def _failed_start(reply: dict) -> dict:
    if reply.get("deadline") or reply.get("crashed"):
        return reply
    return {"crashed": True, "detail": "the sandbox failed while replaying cells after a restart"}


def _describe_failed_reply(reply: dict, timeout: float) -> str:
    if reply.get("timeout"):
        return f"timed out after {timeout:g} s"
    if reply.get("deadline"):
        return "the submission's time limit ran out"
    if reply.get("crashed"):
        return reply.get("detail", "the sandbox crashed")
    if reply.get("error"):
        return "{}: {}".format(*reply["error"])
    return "no answer from the sandbox"


def _remote_candidate_class():
    from globattn_lite.checks import IsolatedCandidate, Outcome

    class RemoteFunction(IsolatedCandidate):
        """A function living in the sandbox; the checks call it through ``invoke``."""

        def __init__(self, sandbox: Sandbox, name: str):
            self.sandbox, self.name = sandbox, name

        def invoke(self, args, kwargs, timeout):
            reply = self.sandbox.request(
                {"op": "call", "name": self.name, "args": encode(list(args)), "kwargs": encode(kwargs)}, timeout)
            if reply.get("ok"):
                try:
                    return Outcome(value=decode(reply["value"]))
                except (ProtocolError, ValueError, TypeError, RecursionError) as exc:
                    return Outcome(error=("ProtocolError", f"unreadable result ({exc})"))
            if reply.get("timeout"):
                return Outcome(timed_out=True)
            if reply.get("error"):
                return Outcome(error=tuple(reply["error"]))
            return Outcome(error=("SandboxError", _describe_failed_reply(reply, timeout)))

        def __call__(self, *args, **kwargs):  # for instructor checks
            outcome = self.invoke(args, kwargs, self.sandbox.limits.call_timeout)
            if outcome.timed_out:
                raise SubmissionCallError(f"{self.name} timed out after {self.sandbox.limits.call_timeout:g} s")
            if outcome.error:
                raise SubmissionCallError(f"{self.name} raised {outcome.error[0]}: {outcome.error[1]}")
            return outcome.value

    return RemoteFunction


class SubmissionCallError(Exception):
    """Raised to instructor checks when a call of the submission's function fails."""


# ======================================================================================
# Instructor checks (--tests DIR)
# ======================================================================================


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
        except Exception as exc:
            raise ValueError(f"--tests: {path} failed to import: {type(exc).__name__}: {exc}") from None
        set_name = getattr(module, "EXERCISE_SET", None)
        if set_name is not None and set_name not in EXERCISE_SETS:
            raise ValueError(f"--tests: {path}: EXERCISE_SET must be one of {sorted(EXERCISE_SETS)}")
        for attr in sorted(vars(module)):
            fn = getattr(module, attr)
            if not (attr.startswith("check_") and callable(fn)):
                continue
            name = attr[len("check_"):]
            if name not in shipped:
                if set_name is None:
                    raise ValueError(f"--tests: {path}: {attr} checks {name!r}, which the course does not "
                                     "ship; set EXERCISE_SET = '<set>' in that file to add it")
                extra[name] = set_name
            checks.setdefault(name, []).append((f"{path.name}:{attr}", fn))
    return checks, extra


def _run_instructor_check(fn, candidate) -> str | None:
    """None if the instructor check passed, else a short failure message."""
    try:
        result = fn(candidate)
    except Exception as exc:  # noqa: BLE001 - includes SubmissionCallError
        return f"{type(exc).__name__}: {exc}" if not isinstance(exc, SubmissionCallError) else str(exc)
    if result is None or result is True:
        return None
    if result is False:
        return "failed"
    if isinstance(result, str):  # one message, not a list of its characters
        return result or None
    try:
        failures = [str(x) for x in result]
    except TypeError:  # not a list: a bug in the instructor check, reported, not a crash
        return f"returned {result!r}, expected a list of failure messages"
    return "; ".join(failures) if failures else None


# ======================================================================================
# Grading one submission (runs in its own trusted process)
# ======================================================================================


def names_for(set_name: str, extra: dict[str, str]) -> list[str]:
    from globattn_lite.checks import EXERCISE_SETS

    return list(EXERCISE_SETS[set_name]) + sorted(n for n, s in extra.items() if s == set_name)


def grade_submission(path: Path, set_name: str, cells: list[str], limits: Limits,
                     tests_dir: Path | None = None) -> dict:
    """Grade one submission: {"status", "scores": {name: fraction}, "reasons": [...]}."""
    from globattn_lite.checks import run_check, specs

    instructor, extra = load_instructor_checks(tests_dir) if tests_dir else ({}, {})
    RemoteFunction = _remote_candidate_class()
    all_specs = specs()
    scores: dict[str, float] = {}
    reasons: list[str] = []
    with tempfile.TemporaryDirectory(prefix="globattn-grade-") as tmp:
        workdir = Path(tmp)
        shutil.copyfile(path, workdir / path.name)  # the sandbox sees a copy only
        sandbox = Sandbox(cells, workdir, limits)
        try:
            sandbox.run_all_cells()
            for name in names_for(set_name, extra):
                own = instructor.get(name, [])
                kind, value = sandbox.kind(name)
                if kind in ("missing", "unavailable"):
                    scores[name] = 0.0
                    reasons.append(f"{name}: " + ("not defined" if kind == "missing" else str(value)))
                    continue
                candidate = RemoteFunction(sandbox, name) if kind == "callable" else value
                passed, total, why = 0, 0, ""
                if name in all_specs:
                    result = run_check(name, candidate, timeout=limits.call_timeout,
                                       budget=max(limits.submission_timeout, 1.0))
                    passed, total, why = result.passed, result.total, result.short_reason()
                for label, fn in own:
                    total += 1
                    failure = _run_instructor_check(fn, candidate)
                    if failure is None:
                        passed += 1
                    elif not why:
                        why = f"instructor check {label}: {textwrap.shorten(failure, 140)}"
                scores[name] = passed / total if total else 0.0
                if passed < total:
                    reasons.append(f"{name}: {why or 'failed'}")
        finally:
            sandbox.stop()
    status = sandbox.status
    cell_notes = sandbox.notes[:3] + ([f"... and {len(sandbox.notes) - 3} more cell problems"]
                                      if len(sandbox.notes) > 3 else [])
    return {"status": status, "scores": scores, "reasons": cell_notes + reasons}


def _child_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    result = grade_submission(Path(job["path"]), job["set"], job["cells"], Limits(**job["limits"]),
                              Path(job["tests"]) if job["tests"] else None)
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ======================================================================================
# The command
# ======================================================================================


def _row(submission: str, set_name: str | None, status: str, scores: dict, reasons: list[str]) -> dict:
    values = list(scores.values())
    row = {"submission": submission, "exercise_set": set_name or "", "status": status,
           "total": sum(values) / len(values) if values else 0.0}
    row.update(scores)
    row["reasons"] = " | ".join(" ".join(r.split()) for r in reasons)
    return row


def _grade_in_child(path: Path, set_name: str, cells: list[str], notes: list[str], limits: Limits,
                    tests_dir: Path | None, names: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="globattn-job-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job = {"path": str(path.resolve()), "set": set_name, "cells": cells, "limits": asdict(limits),
               "tests": str(tests_dir.resolve()) if tests_dir else None, "result": str(result_path)}
        job_path.write_text(json.dumps(job), encoding="utf-8")
        # replays after restarts can take a while: allow a few times the budget before giving up
        wall = limits.submission_timeout * 2 + 60
        with open(Path(tmp) / "stderr.txt", "wb") as err:
            try:
                proc = subprocess.run([sys.executable, "-m", "globattn_lite.grade", "--_grade-one", str(job_path)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=wall)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if code == 0 and result_path.exists():
            result = json.loads(result_path.read_text(encoding="utf-8"))
            return _row(str(path), set_name, result["status"], result["scores"], notes + result["reasons"])
        tail = (Path(tmp) / "stderr.txt").read_bytes()[-600:].decode("utf-8", "replace").strip().splitlines()
        detail = tail[-1] if tail else f"exit code {code}"
        return _row(str(path), set_name, "grader error", {n: 0.0 for n in names},
                    notes + [f"the grading process failed: {detail}"])


def grade(paths, *, jobs: int = 1, limits: Limits | None = None, tests_dir: Path | None = None,
          progress=None) -> tuple[list[str], list[dict]]:
    """Grade submissions; returns (CSV header, rows sorted by submission path)."""
    from globattn_lite.checks import EXERCISE_SETS

    jobs = int_arg("jobs", jobs, minimum=1)
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a grade.Limits or None, got {type(limits).__name__}")
    extra = load_instructor_checks(tests_dir)[1] if tests_dir else {}
    files, skip_notes = discover(paths)
    for note in skip_notes:
        if progress:
            progress(note)
    tasks, rows = [], []
    for path in files:
        set_name = exercise_set_for(path)
        if set_name is None:
            rows.append(_row(str(path), None, "unknown set", {}, [
                f"the file name matches no exercise set ({', '.join(EXERCISE_SETS)})"]))
            continue
        names = names_for(set_name, extra)
        try:
            cells, notes = load_cells(path)
        except (MalformedSubmission, OSError) as exc:
            rows.append(_row(str(path), set_name, "malformed", {n: 0.0 for n in names}, [f"malformed: {exc}"]))
            continue
        tasks.append((path, set_name, cells, notes, names))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_grade_in_child, p, s, c, n, limits, tests_dir, names): p
                   for p, s, c, n, names in tasks}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            row = future.result()
            rows.append(row)
            if progress:
                progress(f"[{done}/{len(tasks)}] {row['submission']}: {row['total']:.2f} ({row['status']})")
    rows.sort(key=lambda r: r["submission"])
    present = [s for s in EXERCISE_SETS if any(r["exercise_set"] == s for r in rows)]
    columns = [n for s in present for n in names_for(s, extra)]
    header = ["submission", "exercise_set", "status", *columns, "total", "reasons"]
    return header, rows


def _cell_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_csv_atomic(path: Path, header: list[str], rows: list[dict]) -> None:
    """Write the table to a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in rows:
                writer.writerow([_cell_text(row.get(column)) for column in header])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_grade-one"]:  # internal: the trusted per-submission process
        return _child_main(argv[1])
    parser = argparse.ArgumentParser(
        prog="python -m globattn_lite.grade",
        description="Grade exercise submissions (.ipynb / .py files or folders) into a CSV table. "
                    "Each submission runs from scratch in its own sandboxed process; see the "
                    "module documentation for the table's columns and the trust model.")
    parser.add_argument("submissions", nargs="+", help=".ipynb/.py files or folders")
    parser.add_argument("--out", required=True, type=Path, help="CSV file to write (atomically)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    parser.add_argument("--tests", type=Path, default=None,
                        help="folder of instructor checks: *.py files with check_<name>(candidate) functions")
    defaults = Limits()
    parser.add_argument("--cell-timeout", type=float, default=defaults.cell_timeout,
                        help=f"seconds per code cell (default {defaults.cell_timeout:g})")
    parser.add_argument("--call-timeout", type=float, default=defaults.call_timeout,
                        help=f"seconds per call of a submitted function (default {defaults.call_timeout:g})")
    parser.add_argument("--timeout", type=float, default=defaults.submission_timeout,
                        help=f"seconds per submission in total (default {defaults.submission_timeout:g})")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb,
                        help=f"address-space limit of a sandbox, POSIX only (default {defaults.memory_mb})")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    for option, value in (("--cell-timeout", args.cell_timeout), ("--call-timeout", args.call_timeout),
                          ("--timeout", args.timeout), ("--memory-mb", args.memory_mb)):
        if not value > 0:  # also rejects nan
            parser.error(f"{option} must be > 0, got {value}")
    if args.tests is not None and not args.tests.is_dir():
        parser.error(f"--tests {args.tests}: not a folder")
    if not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    limits = Limits(args.cell_timeout, args.call_timeout, args.timeout, args.memory_mb)
    try:
        header, rows = grade(args.submissions, jobs=args.jobs, limits=limits, tests_dir=args.tests,
                             progress=lambda text: print(text, file=sys.stderr, flush=True))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no submissions found", file=sys.stderr)
        return 2
    write_csv_atomic(args.out, header, rows)
    print(f"wrote {args.out} ({len(rows)} submission(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
