"""Colab and Binder, through their closest local stand-ins.

Colab: the generated set-up cell runs with a stand-in ``google.colab`` module and a local git
repository as the course URL, in a scratch environment that already has this environment's
packages (as Colab has its torch and numpy): it must clone, install only the course package,
leave torch alone, and leave the notebook in a folder where the package and its data are found.
Binder: binder/environment.yml names the versions of constraints.txt with a CPU torch, and
binder/postBuild installs the package (and its JupyterLab setting) into such an environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from test_setup import constraint_pins, normalise

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def _load_tool():
    spec = importlib.util.spec_from_file_location("notebook_headers", ROOT / "tools" / "notebook_headers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nh = _load_tool()


# ------------------------------------------------------------------------------ Binder files


def binder_environment():
    """(python (major, minor), {name: version}, other pip lines) from binder/environment.yml."""
    text = (BINDER / "environment.yml").read_text()
    python = re.search(r"^\s*-\s*python\s*=\s*(\d+)\.(\d+)\s*$", text, flags=re.M)
    assert python, "binder/environment.yml must pin python=3.X"
    pins, options = {}, []
    pip = text.split("- pip:", 1)[1]
    for line in pip.splitlines():
        m = re.fullmatch(r"\s*-\s*(.+?)\s*", line)
        if not m:
            continue
        entry = m[1]
        if entry.startswith("-"):
            options.append(entry)
            continue
        name, sep, version = entry.partition("==")
        assert sep, f"binder/environment.yml: {entry!r} is not an exact pin"
        pins[normalise(name)] = version
    return (int(python[1]), int(python[2])), pins, options


def test_binder_environment_pins_what_constraints_pin_with_a_cpu_torch():
    python, pins, options = binder_environment()
    sys.path.insert(0, str(ROOT))
    import course

    assert course.SUPPORTED[0] <= python <= course.SUPPORTED[1]
    tested = constraint_pins(python)
    needed = [normalise(n) for n in course.lower_bounds()] + ["jupyterlab", "ipykernel"]
    missing = [n for n in needed if n not in pins]
    assert not missing, f"binder/environment.yml does not pin {missing}"
    for name, version in pins.items():
        public = version.split("+")[0]
        assert tested.get(name) == public, f"binder pins {name}=={version}, constraints.txt {tested.get(name)}"
    assert pins["torch"].endswith("+cpu"), "Binder needs the CPU build of torch"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options


def test_binder_postbuild_installs_the_package_without_dependencies():
    script = BINDER / "postBuild"
    assert os.access(script, os.X_OK), "binder/postBuild must be executable (repo2docker runs it)"
    commands = [ln.strip() for ln in script.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands == ["set -euo pipefail", "python -m pip install --no-deps ."]


# ------------------------------------------------------------------- the stand-in environment


def host_packages(tmp_path: Path) -> Path:
    """A folder of links to this environment's installed packages, without the course package."""
    host = tmp_path / "host-site"
    host.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.endswith(".pth") or "globattn_lite" in name or name.startswith("__editable__"):
            continue
        (host / entry.name).symlink_to(entry)
    return host


def scratch_environment(tmp_path: Path) -> Path:
    """A new venv whose own site-packages starts empty and which sees the host packages after
    it (a .pth line), like a hosted Python with its stack preinstalled; returns its python.
    Its pip is the host's (seen through the .pth line), installing into the scratch venv."""
    env_dir = tmp_path / "scratch"
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "host-packages.pth").write_text(str(host_packages(tmp_path)) + "\n")
    return python


def own_packages(python: Path) -> set[str]:
    """Distribution names installed in the scratch venv itself (not the host ones)."""
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {normalise(p.name.split("-")[0]) for p in Path(site).glob("*.dist-info")}


def local_repository(tmp_path: Path) -> Path:
    """A git repository holding this worktree's files (tracked and new, not ignored), on `main`."""
    repo = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        source = ROOT / rel
        if source.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=repo, check=True)
    return repo


pytestmark_posix = pytest.mark.skipif(os.name == "nt", reason="links to the host packages need POSIX symlinks")

# Run the set-up cell twice (a learner re-running it), then what a lesson does first.
RUN_CELL = r"""
import json, os, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")  # the stand-in
source = open(sys.argv[1]).read()
exec(compile(source, "set-up cell", "exec"), {"__name__": "__main__"})
exec(compile(source, "set-up cell", "exec"), {"__name__": "__main__"})
import globattn_lite, torch
from globattn_lite import experiments
print(json.dumps({
    "cwd": os.getcwd(),
    "package": globattn_lite.__file__,
    "version": globattn_lite.__version__,
    "torch": torch.__file__,
    "checkpoint": str(experiments.CHECKPOINT_DIR / "long_range.pt"),
}))
"""


@pytest.mark.slow
@pytestmark_posix
def test_colab_setup_cell_installs_from_the_repository_and_keeps_torch(tmp_path):
    repo = local_repository(tmp_path)
    python = scratch_environment(tmp_path)
    settings = nh.read_settings()
    cell = tmp_path / "cell.py"
    cell.write_text(
        nh.setup_source(nh.Settings(repo.as_uri(), "main", settings.version), "notebooks/00_start_here.ipynb")
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HOME"] = str(home)
    done = subprocess.run(
        [python, "-c", RUN_CELL, cell], cwd=home, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0] == lines[1] and lines[0].startswith("globattn-lite installed from"), lines
    found = json.loads(lines[-1])
    clone = home / "globattn-lite"
    assert Path(found["cwd"]) == clone / "notebooks"
    assert (clone / "constraints.txt").is_file() and (clone / "exercises").is_dir()
    assert found["version"] == settings.version
    assert str(python.parent.parent) in found["package"], "the package was not installed into the scratch env"
    assert str(tmp_path / "host-site") in found["torch"], "torch was replaced"
    assert Path(found["checkpoint"]).is_file(), "the installed package lacks its checkpoints"
    assert own_packages(python) - {"pip", "setuptools"} == {"globattn-lite"}, own_packages(python)


@pytest.mark.slow
@pytestmark_posix
def test_binder_postbuild_makes_a_working_environment(tmp_path):
    repo = local_repository(tmp_path)
    python = scratch_environment(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", repo / "binder" / "postBuild"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert own_packages(python) - {"pip", "setuptools"} == {"globattn-lite"}
    overrides = python.parent.parent / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert overrides.is_file(), "postBuild did not install the package's JupyterLab setting"
    code = "import globattn_lite.widgets, globattn_lite.experiments as e; print(e.CHECKPOINT_DIR.is_dir())"
    check = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.stdout.strip() == "True", check.stderr[-2000:]
