"""The grading process's side of the sandbox (trusted): start it, talk to it, restart it.

A :class:`Sandbox` runs one submission's cells in a separate, killable process started from a
public copy of the package (:func:`make_public_package`) and answers requests with a typed
:class:`Reply`. After a kill, a crash or a MemoryError the next request restarts the sandbox
and replays what ran before, statement by statement, so a cell that failed halfway leaves
the same definitions behind whatever the failure was (as in a notebook).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globattn_lite import _callguard
from globattn_lite.checks import IsolatedCandidate, Outcome
from globattn_lite.grading.wire import MAX_LINE_BYTES, ProtocolError, decode, encode

MAX_RESTARTS = 3  # sandbox restarts per submission before giving up
PACKAGE_DIR = Path(_callguard.PACKAGE_DIR)
#: what the sandbox may import of the package: everything but the checks (replaced by a
#: stand-in), the grader (but for its worker and wire format) and the exercise generator
_PRIVATE = ("checks", "grading", "grade.py", "exercise_tools.py", "__pycache__")
_STAND_IN_CHECKS = '''"""Stand-in used while grading: check() does nothing (the grader runs the real checks)."""


def check(*args, **kwargs):
    return None


run_check = check
'''


def make_public_package(root: Path) -> Path:
    """Copy the package into ``root/globattn_lite`` without the checks' references, the
    grader and the exercise tools (a do-nothing ``checks`` stands in); returns ``root``."""
    root = Path(root)
    target = root / "globattn_lite"
    shutil.copytree(
        PACKAGE_DIR,
        target,
        ignore=lambda folder, names: [
            n for n in names if (Path(folder) == PACKAGE_DIR and n in _PRIVATE) or n == "__pycache__"
        ],
    )
    (target / "checks").mkdir()
    (target / "checks" / "__init__.py").write_text(_STAND_IN_CHECKS, encoding="utf-8")
    (target / "grading").mkdir()
    (target / "grading" / "__init__.py").write_text('"""Only the sandbox worker."""\n', encoding="utf-8")
    for name in ("worker.py", "wire.py"):
        shutil.copyfile(PACKAGE_DIR / "grading" / name, target / "grading" / name)
    return root


def _source_checkout() -> list[str]:
    """The repository folder when the package runs from a source checkout (an editable
    install puts it on ``sys.path``, and solutions/ lives there): the sandbox drops it from its
    path. An installed package's folder (site-packages) stays: numpy lives there too."""
    parent = PACKAGE_DIR.parent
    if (parent / "pyproject.toml").exists() or (parent / "solutions").is_dir():
        return [str(parent)]
    return []


@dataclass
class Reply:
    """One answer of the sandbox, or what happened instead.

    ``status``: ``ok``, ``error`` (the submission raised), ``timeout`` (the request's time
    limit), ``crashed`` (the sandbox died or gave up), ``deadline`` (the submission's time is
    up) or ``protocol`` (a garbled reply)."""

    status: str
    value: Any = None  # encoded (wire format); decode() it
    kind: str | None = None  # for "kind" requests: missing, callable, value
    error: tuple[str, str] | None = None
    line: int | None = None
    done: int = 0  # statements of a cell that completed
    detail: str = ""
    mutated: list[str] = field(default_factory=list)
    course_code: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_message(cls, message: dict) -> Reply:
        if message.get("timeout"):
            return cls("timeout", done=int(message.get("done") or 0))
        if message.get("error"):
            kind, text = message["error"]
            return cls(
                "error",
                error=(str(kind), str(text)),
                line=message.get("line"),
                done=int(message.get("done") or 0),
                course_code=message.get("course_code"),
            )
        if message.get("ok") or "kind" in message:
            return cls(
                "ok",
                value=message.get("value"),
                kind=message.get("kind"),
                done=int(message.get("done") or 0),
                mutated=list(message.get("mutated") or []),
                course_code=message.get("course_code"),
            )
        return cls("protocol", detail="a reply without a status")

    def describe(self, timeout: float) -> str:
        """A short reason for a failed request."""
        if self.status == "timeout":
            return f"timed out after {timeout:g} s"
        if self.status == "deadline":
            return "the submission's time limit ran out"
        if self.status == "error":
            return "{}: {}".format(*self.error)
        return self.detail or "no answer from the sandbox"


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
    env = {
        "PATH": os.defpath,
        "HOME": home,
        "TMPDIR": home,
        "TEMP": home,
        "TMP": home,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if os.name == "nt" and "SYSTEMROOT" in os.environ:
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]  # Windows Python needs it to start
    return env


class Sandbox:
    """Runs one submission's cells in a separate, killable process and answers requests.

    ``request`` never raises: it returns the sandbox's :class:`Reply`, or one whose status is
    ``timeout``, ``crashed`` or ``deadline`` when the sandbox had to be killed, died, or the
    submission's time is up."""

    def __init__(self, cells: list[str], workdir: Path, limits, public_root: Path):
        self.cells, self.workdir, self.limits = cells, workdir, limits
        self.public_root = Path(public_root)
        self.deadline = time.monotonic() + limits.submission_timeout
        self.proc: subprocess.Popen | None = None
        self.replies: queue.Queue | None = None
        self.ran: list[tuple[int, int | None]] = []  # (cell index, statements to replay; None: all)
        self.restarts = -1  # the first start is not a restart
        self.next_id = 0
        self.status = "graded"
        self.notes: list[str] = []

    # -- process management --
    def _start(self) -> Reply | None:
        """Start the sandbox and replay what ran before; None, or a failure reply."""
        if self.restarts >= MAX_RESTARTS:
            self.status = "crashed"
            return Reply("crashed", detail=f"gave up after {MAX_RESTARTS} sandbox restarts")
        self.restarts += 1
        boot = (
            f"import sys; sys.path.insert(0, {str(self.public_root)!r}); "
            "from globattn_lite.grading.worker import main; main()"
        )
        popen_kwargs = {}
        if os.name == "posix":
            popen_kwargs["start_new_session"] = True  # its own process group, killed as a whole
        else:
            popen_kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
            env=_sandbox_env(str(self.workdir)),
            **popen_kwargs,
        )
        self.replies = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.replies), daemon=True).start()
        cpu_seconds = int(self.limits.submission_timeout) + 10
        self._send(
            {
                "limits": {"memory_mb": self.limits.memory_mb, "cpu_seconds": cpu_seconds},
                "hide": _source_checkout(),
                "course_dirs": [str(PACKAGE_DIR), str(self.public_root / "globattn_lite")],
            }
        )
        replay, self.ran = self.ran, []
        for position, (index, count) in enumerate(replay):
            reply = self._exchange(self._exec_message(index, count), self.limits.cell_timeout)
            self.ran.append((index, count if count is not None else (None if reply.ok else reply.done)))
            if reply.ok or reply.status == "error":
                continue  # a cell that failed before fails the same way again
            self.notes.append(f"cell {index + 1} failed when replayed after a restart")
            if self.proc is None:  # killed or dead: the next request restarts again
                self.ran += replay[position + 1 :]
                return (
                    reply
                    if reply.status in ("deadline", "crashed")
                    else Reply("crashed", detail="the sandbox failed while replaying cells after a restart")
                )
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
    def request(self, message: dict, timeout: float) -> Reply:
        """Send one request (starting the sandbox if needed) and return the reply."""
        if time.monotonic() >= self.deadline:
            return self._out_of_time()
        if self.proc is None:
            failure = self._start()
            if failure is not None:
                return failure
        return self._exchange(message, timeout)

    def _out_of_time(self) -> Reply:
        if self.status == "graded":
            self.status = "timeout"
        self.stop()
        return Reply("deadline")

    def _exchange(self, message: dict, timeout: float) -> Reply:
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
            return Reply("timeout")
        if line is None:
            return self._died()
        try:
            message = json.loads(line)
            if not isinstance(message, dict) or message.get("id") != self.next_id:
                raise ProtocolError("reply out of order")
        except (ValueError, RecursionError, ProtocolError) as exc:
            self.stop()
            return Reply("protocol", detail=f"garbled reply from the sandbox ({exc})")
        return Reply.from_message(message)

    def _exec_message(self, index: int, stop_after: int | None = None) -> dict:
        return {"op": "exec", "source": self.cells[index], "label": f"<cell {index + 1}>", "stop_after": stop_after}

    def _died(self) -> Reply:
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
        return Reply("crashed", detail=detail)

    def _run_cell(self, index: int) -> bool:
        reply = self.request(self._exec_message(index), self.limits.cell_timeout)
        # what a notebook keeps: the statements before the failing one (all of them if none failed)
        self.ran.append((index, None if reply.ok else reply.done))
        if reply.ok:
            return True
        if reply.status == "timeout":
            self.notes.append(f"cell {index + 1}: timed out after {self.limits.cell_timeout:g} s")
            self.stop()  # its state is unknown: restart and replay before the next request
        elif reply.status == "error":
            kind, message = reply.error
            where = f", line {reply.line}" if reply.line else ""
            self.notes.append(f"cell {index + 1}{where}: {kind}" + (f": {message}" if message else ""))
            if kind == "MemoryError":
                self.stop()  # free the memory: restart and replay what ran
        elif reply.status == "crashed":
            self.notes.append(f"cell {index + 1}: {reply.detail}")
        elif reply.status == "deadline":
            self.notes.append(f"cell {index + 1}: the submission's time limit ran out")
        else:
            self.notes.append(f"cell {index + 1}: {reply.detail}")
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
        if reply.ok and reply.kind:
            if reply.kind == "value":
                try:
                    return "value", decode(reply.value)
                except (ProtocolError, ValueError, TypeError, RecursionError) as exc:
                    return "unavailable", f"its value could not be read ({exc})"
            return reply.kind, None
        return "unavailable", reply.describe(self.limits.call_timeout)


class SubmissionCallError(Exception):
    """Raised to instructor checks when a call of the submission's function fails."""


class RemoteFunction(IsolatedCandidate):
    """A function living in the sandbox; the checks call it through ``invoke``."""

    def __init__(self, sandbox: Sandbox, name: str):
        self.sandbox, self.name = sandbox, name

    def invoke(self, args, kwargs, timeout, argnames=(), intern_strings=False):
        reply = self.sandbox.request(
            {
                "op": "call",
                "name": self.name,
                "args": encode(list(args)),
                "kwargs": encode(kwargs),
                "argnames": list(argnames),
                "intern": bool(intern_strings),
            },
            timeout,
        )
        if reply.ok:
            try:
                value = decode(reply.value)
            except (ProtocolError, ValueError, TypeError, RecursionError) as exc:
                return Outcome(error=("ProtocolError", f"unreadable result ({exc})"))
            return Outcome(value=value, mutated=reply.mutated, course_code=reply.course_code)
        if reply.status == "timeout":
            return Outcome(timed_out=True)
        if reply.status == "error":
            return Outcome(error=reply.error, course_code=reply.course_code)
        return Outcome(error=("SandboxError", reply.describe(timeout)))

    def __call__(self, *args, **kwargs):  # for instructor checks
        outcome = self.invoke(args, kwargs, self.sandbox.limits.call_timeout)
        if outcome.timed_out:
            raise SubmissionCallError(f"{self.name} timed out after {self.sandbox.limits.call_timeout:g} s")
        if outcome.error:
            raise SubmissionCallError(f"{self.name} raised {outcome.error[0]}: {outcome.error[1]}")
        return outcome.value
