"""Set up and run the course: the only two commands a learner or CI needs.

    python3 course.py lab     # create .venv if missing, install the pinned stack, open JupyterLab
    python3 course.py test    # create .venv if missing, install the stack + test tools, run all tests

Standard library only, so it runs on a fresh machine (Linux, macOS, Windows) with any
Python 3.10-3.13. Both commands install with ``constraints.txt``, so every learner gets the
versions the course was tested with. Extra arguments after ``test`` go to pytest
(``python3 course.py test tests/test_patterns.py -q``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
CONSTRAINTS = ROOT / "constraints.txt"
FIRST_NOTEBOOK = ROOT / "notebooks" / "00_start_here.ipynb"
SUPPORTED = ((3, 10), (3, 13))


def venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    exe = "python.exe" if os.name == "nt" else "python"
    return VENV / scripts / exe


def run(cmd, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def check_python() -> None:
    low, high = SUPPORTED
    if not (low <= sys.version_info[:2] <= high):
        sys.exit(
            f"This course needs Python {low[0]}.{low[1]} to {high[0]}.{high[1]}; this is "
            f"{sys.version.split()[0]}. Run course.py with a supported Python, e.g. "
            f"'python3.11 course.py lab' (Windows: 'py -3.11 course.py lab')."
        )


def ensure_venv() -> Path:
    python = venv_python()
    if not python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        run([sys.executable, "-m", "venv", VENV])
    return python


def install(python: Path, extras: str) -> None:
    """pip-install the package (editable) with the pinned constraints, unless already done."""
    target = f".[{extras}]" if extras else "."
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    run([python, "-m", "pip", "install", "--upgrade", "pip"])
    run([python, "-m", "pip", "install", "-c", CONSTRAINTS, "-e", target], cwd=ROOT)
    stamp.write_text(digest)


def install_browser() -> None:
    """Debian's Chromium for the real-browser test (Linux only; elsewhere that test skips)."""
    script = ROOT / "tools" / "install_browser.sh"
    if sys.platform.startswith("linux") and shutil.which("bash") and script.exists():
        run(["bash", script])


def lab(args) -> int:
    python = ensure_venv()
    install(python, "")
    return subprocess.call([str(python), "-m", "jupyter", "lab", str(FIRST_NOTEBOOK), *args], cwd=ROOT)


def test(args) -> int:
    python = ensure_venv()
    install(python, "test")
    install_browser()
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.call([str(python), "-m", "pytest", *args], cwd=ROOT, env=env)


def main(argv) -> int:
    commands = {"lab": lab, "test": test}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    check_python()
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
