"""The sandbox worker: the only code that runs a submission (untrusted).

It is started as ``python -I -c "...; worker.main()"`` by :class:`grading.sandbox.Sandbox`,
from a *public copy* of the package that holds no reference implementations, no solutions
and a stand-in ``globattn_lite.checks`` whose ``check`` does nothing. It imports only the wire
format and the call guard, reads one JSON request per line on stdin and answers one JSON
reply per line; stdout and stderr of the submission go to ``os.devnull``.

Requests: ``exec`` (run a cell statement by statement; ``stop_after`` replays only the first
statements), ``kind`` (is a name missing, a function or a value), ``call`` (call a function
on decoded arguments, reporting arguments changed in place and course code it ran).
"""

from __future__ import annotations

import ast
import builtins
import copy
import json
import os
import signal
import sys
import textwrap

from globattn_lite import _callguard
from globattn_lite.grading.wire import MAX_LINE_BYTES, decode, encode


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


def apply_limits(limits: dict) -> None:
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
    if line is None and isinstance(exc, SyntaxError) and exc.filename == label:
        line = exc.lineno
    return {"error": [type(exc).__name__, message], "line": line}


def _hide_the_installed_package(hidden: list[str]) -> None:
    """Drop ``sys.path`` entries that lead to the real package (an editable install adds the
    repository, where solutions/ lives) and editable-install finders: imports resolve to the
    public copy only."""
    hidden = {os.path.realpath(p) for p in hidden}
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") not in hidden]
    sys.meta_path[:] = [
        f
        for f in sys.meta_path
        if "editable" not in type(f).__module__.lower() and "editable" not in type(f).__name__.lower()
    ]
    sys.path_importer_cache.clear()


def _run_statements(source: str, label: str, namespace: dict, stop_after: int | None, done: list) -> None:
    """Run a cell one top-level statement at a time (as a notebook would, a failure on line N
    keeps what lines before it defined); ``done[0]`` counts the statements that completed."""
    tree = compile(source, label, "exec", ast.PyCF_ONLY_AST)
    body = tree.body if stop_after is None else tree.body[:stop_after]
    for statement in body:
        module = ast.Module(body=[statement], type_ignores=[])
        exec(compile(module, label, "exec"), namespace)
        done[0] += 1


def main() -> None:  # pragma: no cover - runs in the sandbox (covered by test_grade)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull_in = os.open(os.devnull, os.O_RDONLY)
    devnull_out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull_in, 0)
    os.dup2(devnull_out, 1)
    os.dup2(devnull_out, 2)
    config = json.loads(requests.readline())
    _hide_the_installed_package(config.get("hide", []))
    course_dirs = config.get("course_dirs", [])
    apply_limits(config["limits"])

    def noop(*args, **kwargs):
        return None

    class NoIPython:
        def __getattr__(self, name):
            return noop

    namespace = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "check": noop,
        "display": noop,
        "get_ipython": NoIPython,
    }

    def reply(message: dict) -> None:
        line = json.dumps(message).encode() + b"\n"
        if len(line) > MAX_LINE_BYTES:
            line = (
                json.dumps({"id": message.get("id"), "ok": True, "value": {"__opaque__": "reply too large"}}).encode()
                + b"\n"
            )
        replies.write(line)
        replies.flush()

    # The closures made in this loop (for exec, kind and call) are run at once by _call_with_alarm,
    # within the same iteration: the loop variables they read are this request's (hence noqa: B023).
    while True:
        raw = requests.readline()
        if not raw:
            return
        request = json.loads(raw)
        rid, op = request.get("id"), request.get("op")
        try:
            if op == "exec":
                label = request["label"]
                done = [0]
                try:
                    _call_with_alarm(
                        request["timeout"],
                        lambda: _run_statements(request["source"], label, namespace, request.get("stop_after"), done),  # noqa: B023
                    )
                    reply({"id": rid, "ok": True, "done": done[0]})
                except _Timeout:
                    reply({"id": rid, "timeout": True, "done": done[0]})
                except BaseException as exc:  # noqa: BLE001 - the submission's errors are results
                    reply({"id": rid, **_error_reply(exc, label), "done": done[0]})
            elif op == "kind":
                name = request["name"]
                if name not in namespace:
                    reply({"id": rid, "kind": "missing"})
                elif callable(namespace[name]):
                    reply({"id": rid, "kind": "callable"})
                else:
                    value = _call_with_alarm(request["timeout"], lambda: encode(namespace[name]))  # noqa: B023
                    reply({"id": rid, "kind": "value", "value": value})
            elif op == "call":
                fn = namespace.get(request["name"])
                args = _callguard.fresh_strings(tuple(decode(request["args"])), request.get("intern", False))
                kwargs = _callguard.fresh_strings(decode(request["kwargs"]), request.get("intern", False))
                before = copy.deepcopy((args, kwargs))
                watch = _callguard.CourseCodeWatch(course_dirs)

                def call():
                    with watch:  # noqa: B023
                        return fn(*args, **kwargs)  # noqa: B023

                try:
                    result = _call_with_alarm(request["timeout"], call)
                except _Timeout:
                    raise  # answered below
                except BaseException as exc:  # noqa: BLE001 - the submission's errors are results
                    reply({"id": rid, **_error_reply(exc), "course_code": watch.module})
                    continue
                value = encode(result)
                mutated = _callguard.changed_arguments(before, (args, kwargs), request.get("argnames", []))
                reply({"id": rid, "ok": True, "value": value, "mutated": mutated, "course_code": watch.module})
            else:
                reply({"id": rid, "error": ["ProtocolError", f"unknown op {op!r}"]})
        except _Timeout:
            reply({"id": rid, "timeout": True})
        except BaseException as exc:  # noqa: BLE001 - the submission's errors are results
            reply({"id": rid, **_error_reply(exc)})
