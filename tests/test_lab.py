"""`python3 course.py lab` starts JupyterLab where learners type it: as root (containers, cloud
VMs), without a display or browser, and with the default port taken. Each test starts the real
server through course.py's own lab() (the install step skipped: this environment is installed),
waits for /api/status, and stops it by its process group."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"(http://(?:127\.0\.0\.1|localhost):(\d+)/lab[^\s]*\?token=([0-9a-f]+))")

DEFAULT_PORT = 8888

pytestmark = pytest.mark.slow

# course.main(["lab", ...]) with this interpreter as the course's venv and the install skipped.
RUN_LAB = (
    "import sys; sys.path.insert(0, {root!r}); import course\n"
    "from pathlib import Path\n"
    "course.ensure_venv = lambda venv=course.VENV: Path(sys.executable)\n"
    "course.install = lambda *args, **kwargs: None\n"
    "sys.exit(course.main(['lab', *sys.argv[1:]]))\n"
)


def lab_environment(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    for name in ("config", "data", "runtime", "settings", "workspaces"):
        (tmp_path / name).mkdir()
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_lab(tmp_path: Path, *args: str):
    """Start course.py lab; return (process, log path, text read until the URL, URL match)."""
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_LAB.format(root=str(ROOT)), "--ServerApp.ip=127.0.0.1", *args],
            cwd=ROOT,
            env=lab_environment(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        match = URL.search(text)
        if match:
            return proc, text, match
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop(proc)
    pytest.fail(f"JupyterLab printed no URL:\n{log_path.read_text(errors='replace')[-3000:]}")


def wait_for_status(port: str, token: str, proc) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.3)
    pytest.fail("/api/status did not answer within 60 s")


def stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_lab_starts_headless_and_as_root_where_it_runs_as_root(tmp_path):
    proc, text, match = start_lab(tmp_path, "--port=0")
    try:
        status = wait_for_status(match[2], match[3], proc)
        assert "started" in status
        assert "No display or web browser found" in text
        if os.geteuid() == 0:
            assert "Running as root" in text and "--allow-root" in text
    finally:
        stop(proc)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_lab_moves_to_the_next_port_when_the_default_is_taken(tmp_path):
    """Port 8888 (JupyterLab's default) is held here, or by someone else: either way it is taken."""
    taken = DEFAULT_PORT
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
    except OSError:
        pass  # already in use by another program
    try:
        proc, text, match = start_lab(tmp_path)
        try:
            assert int(match[2]) != taken
            wait_for_status(match[2], match[3], proc)
            assert "already in use" in text
        finally:
            stop(proc)
    finally:
        blocker.close()


def test_lab_command_adds_allow_root_and_no_browser_only_when_needed(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT))
    import course

    monkeypatch.setattr(course, "is_root", lambda: False)
    monkeypatch.setattr(course, "has_browser", lambda: True)
    cmd = course.lab_command(Path("python"), ["--port=9999"])
    assert "--allow-root" not in cmd and "--no-browser" not in cmd and capsys.readouterr().out == ""
    monkeypatch.setattr(course, "is_root", lambda: True)
    monkeypatch.setattr(course, "has_browser", lambda: False)
    cmd = course.lab_command(Path("python"), [])
    lines = capsys.readouterr().out.strip().splitlines()
    assert cmd[-2:] == ["--allow-root", "--no-browser"] and len(lines) == 2
    assert course.lab_command(Path("python"), ["--allow-root", "--no-browser"]).count("--allow-root") == 1
