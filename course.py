"""Set up and run the course: the only two commands a learner or CI needs.

    python3 course.py lab     # create .venv if missing, install the pinned stack, open JupyterLab
    python3 course.py test    # create .venv if missing, install the stack + test tools, run all tests

Standard library only, so it runs on a fresh machine (Linux, macOS, Windows) with any
Python 3.10-3.13. Both commands install with ``constraints.txt``, so every learner gets the
versions the course was tested with. Extra arguments after ``lab`` go to JupyterLab, extra
arguments after ``test`` go to pytest (``python3 course.py test tests/test_patterns.py -q``).

``test`` with no arguments runs the whole suite, then the lowest-bounds leg: the package at the
lower bounds pyproject.toml declares, in its own ``.venv-lowest``, running the package tests.

Maintainer commands (same .venv):

    python3 course.py site      # build the course website into _build/site (no re-execution)
    python3 course.py headers   # refresh the set-up cell and badges at the top of every notebook
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOWEST_VENV = ROOT / ".venv-lowest"
CONSTRAINTS = ROOT / "constraints.txt"
FIRST_NOTEBOOK = ROOT / "notebooks" / "00_start_here.ipynb"
SUPPORTED = ((3, 10), (3, 13))
# Pins of constraints.txt that the lowest-bounds leg leaves to pip, because a dependency at its
# lower bound asks for another exact version: torch 2.5.0 requires sympy==1.13.1, the pin is the
# 1.14.0 that torch 2.13.0 accepts. pip then takes the version that torch release names.
LOWEST_UNPINNED = {"sympy"}
# Tests of the set-up itself (pins, servers, notebooks' committed outputs, the site, the browser):
# the lowest-bounds leg skips them and runs every other test, i.e. the package's own.
ENVIRONMENT_TESTS = [
    "test_setup.py",
    "test_lab.py",
    "test_notebooks.py",
    "test_browser.py",
    "test_site.py",
    "test_colab_binder.py",
    "test_headers_tool.py",
]
# The lowest-bounds leg also leaves out the tests marked `slow` (training and evaluating the
# experiments, grading round trips: 11 of its 14 minutes), so that CI stays within 30 minutes; the
# main suite runs them. Its fast tests still build, run and train the tiny models at the bounds.
LOWEST_DESELECTS = "slow"


def venv_python(venv: Path = VENV) -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    exe = "python.exe" if os.name == "nt" else "python"
    return venv / scripts / exe


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


def ensure_venv(venv: Path = VENV) -> Path:
    python = venv_python(venv)
    if not python.exists():
        print(f"Creating a virtual environment in {venv} ...", flush=True)
        run([sys.executable, "-m", "venv", venv])
    return python


def install(python: Path, extras: str, constraints: Path = CONSTRAINTS, venv: Path = VENV) -> None:
    """pip-install the package (editable) with the pinned constraints, unless already done."""
    target = f".[{extras}]" if extras else "."
    stamp = venv / f".installed-{extras.replace(',', '-') or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + constraints.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    run([python, "-m", "pip", "install", "--upgrade", "pip"])
    run([python, "-m", "pip", "install", "-c", constraints, "-e", target], cwd=ROOT)
    stamp.write_text(digest)


def install_browser() -> None:
    """Debian's Chromium for the real-browser test (Linux only; elsewhere that test skips)."""
    script = ROOT / "tools" / "install_browser.sh"
    if sys.platform.startswith("linux") and shutil.which("bash") and script.exists():
        run(["bash", script])


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def has_browser() -> bool:
    """Whether JupyterLab could open a browser here: a display (or macOS/Windows) and a browser."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    ):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def lab_command(python: Path, args) -> list:
    """The `jupyter lab` command line for this machine, printing one line per adjustment.

    As root (a container, a cloud VM) JupyterLab refuses to start without --allow-root; with no
    display or browser it must not try to open one. A taken default port needs nothing: the
    server tries the next ports itself (ServerApp.port_retries) and prints the URL it got.
    """
    cmd = [python, "-m", "jupyter", "lab", FIRST_NOTEBOOK, *args]
    if is_root() and "--allow-root" not in args:
        print(
            "Running as root (as in a container or cloud VM), so passing --allow-root: "
            "JupyterLab refuses to start as root without it.",
            flush=True,
        )
        cmd.append("--allow-root")
    if not has_browser() and "--no-browser" not in args:
        print(
            "No display or web browser found here: open the http://127.0.0.1:... URL that "
            "JupyterLab prints below in a browser on this machine (or through an SSH tunnel).",
            flush=True,
        )
        cmd.append("--no-browser")
    return cmd


def lab(args) -> int:
    python = ensure_venv()
    install(python, "lab")
    return subprocess.call([str(c) for c in lab_command(python, args)], cwd=ROOT)


def lower_bounds() -> dict[str, str]:
    """{name: lowest version} from the `name>=X` entries of pyproject's [project] dependencies."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, flags=re.M | re.S)
    assert block, "pyproject.toml has no [project] dependencies list"
    bounds = {}
    for name, version in re.findall(r'^\s*"([A-Za-z0-9_.-]+)\s*>=\s*([^",;\s]+)"', block[1], flags=re.M):
        bounds[name] = version
    assert bounds, "found no `name>=version` dependency in pyproject.toml"
    return bounds


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lowest_constraints() -> str:
    """constraints.txt with each direct dependency replaced by its declared lower bound and the
    LOWEST_UNPINNED pins left out: the oldest stack pyproject admits, all else as tested."""
    bounds = {normalise(n): v for n, v in lower_bounds().items()}
    unpinned = {normalise(n) for n in LOWEST_UNPINNED}
    lines = ["# Written by course.py from pyproject.toml's lower bounds; do not edit."]
    for raw in CONSTRAINTS.read_text().splitlines():
        name = re.split(r"[=<>;\s]", raw.split("#", 1)[0].strip(), maxsplit=1)[0]
        if name and normalise(name) in bounds.keys() | unpinned:
            continue
        lines.append(raw)
    lines += [f"{name}=={version}" for name, version in sorted(bounds.items())]
    return "\n".join(lines) + "\n"


def test_lowest() -> int:
    """The lowest-bounds leg: .venv-lowest holds the package at its lower bounds (cached by a
    stamp like .venv); every test but the environment ones runs there."""
    python = ensure_venv(LOWEST_VENV)
    constraints = LOWEST_VENV / "constraints-lowest.txt"
    text = lowest_constraints()
    if not constraints.exists() or constraints.read_text() != text:
        constraints.write_text(text)
    install(python, "lab,test", constraints=constraints, venv=LOWEST_VENV)
    bounds = ", ".join(f"{n} {v}" for n, v in lower_bounds().items())
    print(f"Lowest-bounds leg in {LOWEST_VENV.name}: {bounds}.", flush=True)
    env = dict(os.environ, MPLBACKEND="Agg")
    ignore = [f"--ignore=tests/{name}" for name in ENVIRONMENT_TESTS]
    deselect = ["-m", f"not {LOWEST_DESELECTS}"]
    return subprocess.call([str(python), "-m", "pytest", "-q", *deselect, *ignore], cwd=ROOT, env=env)


def test(args) -> int:
    python = ensure_venv()
    install(python, "lab,site,test")
    install_browser()
    env = dict(os.environ, MPLBACKEND="Agg")
    status = subprocess.call([str(python), "-m", "pytest", *args], cwd=ROOT, env=env)
    if args or status != 0:
        return status
    return test_lowest()


def site(args) -> int:
    python = ensure_venv()
    install(python, "lab,site")
    return subprocess.call([str(python), str(ROOT / "tools" / "build_site.py"), *args], cwd=ROOT)


def headers(args) -> int:
    python = ensure_venv()
    install(python, "lab")
    return subprocess.call([str(python), str(ROOT / "tools" / "notebook_headers.py"), *args], cwd=ROOT)


def main(argv) -> int:
    commands = {"lab": lab, "test": test, "site": site, "headers": headers}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    check_python()
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
