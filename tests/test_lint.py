"""Lint and format: `ruff check` and `ruff format --check` pass over the project's Python files.

Which files, and the rules, are pyproject.toml's [tool.ruff]; the ruff version is pinned in
constraints.txt because its formatter's style changes between releases. To fix a failure, run
`.venv/bin/ruff format` and `.venv/bin/ruff check --fix`, then fix by hand what remains.
"""

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The folders and files [tool.ruff] include must cover (a typo there would lint nothing and pass).
LINTED = ["globattn_lite", "tests", "tools", "benchmarks", "course.py", "docs/conf.py"]


def ruff(*args):
    """Run the installed ruff from the repository root (no cache left behind)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_is_the_pinned_version():
    pin = re.search(r"^ruff==(\S+)$", (ROOT / "constraints.txt").read_text(), flags=re.M)
    assert pin, "constraints.txt does not pin ruff"
    assert version("ruff") == pin[1], f"ruff {version('ruff')} installed, {pin[1]} pinned: run `python3 course.py test`"


def test_ruff_sees_every_project_python_file_and_no_notebook():
    run = ruff("check", "--show-files")
    assert run.returncode == 0, run.stderr
    seen = {Path(line).resolve().relative_to(ROOT).as_posix() for line in run.stdout.splitlines() if line.strip()}
    for entry in LINTED:
        path = ROOT / entry
        expected = {p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")} if path.is_dir() else {entry}
        assert path.exists() and expected <= seen, f"ruff does not lint {sorted(expected - seen) or entry}"
    assert not [f for f in seen if not f.endswith(".py")], "ruff lints files other than .py"


def test_ruff_check_passes():
    run = ruff("check", "--output-format", "concise")
    assert run.returncode == 0, f"`ruff check` found problems:\n{run.stdout}{run.stderr}"


def test_ruff_format_leaves_every_file_unchanged():
    run = ruff("format", "--check", "--diff")
    assert run.returncode == 0, f"`ruff format` would change these files (run it):\n{run.stdout}{run.stderr}"
