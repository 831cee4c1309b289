"""Put the same two generated cells at the top of every lesson, solution and exercise notebook.

    python tools/notebook_headers.py            # insert or refresh the header everywhere (idempotent)
    python tools/notebook_headers.py --check    # exit 1 and name the notebooks whose header is stale
    python tools/notebook_headers.py PATH ...   # only these notebooks or folders

(``python3 course.py headers`` runs the first form in .venv.) The two cells:

1. a markdown cell, ``course-header``: "Open in Colab" and "launch Binder" badges and a "report a
   problem" link whose issue form is filled in with the notebook's path and the course version;
2. a code cell, ``course-setup``: on Google Colab (``"google.colab" in sys.modules``) it clones the
   course repository, pip-installs the package from that clone (its dependencies are loose lower
   bounds, so Colab's own torch, numpy and matplotlib stay as they are) and changes into the
   notebook's folder of the clone, so the files the notebook opens (``constraints.txt``, the
   exercises, the checkpoints inside the package) are there. Anywhere else it does nothing and
   prints nothing.

Everything comes from one setting, in pyproject.toml: ``[project.urls] Repository`` and
``[tool.globattn_lite] branch``; the version is ``globattn_lite.__version__``. A solution
notebook carries the header of the exercise generated from it (links to ``exercises/...``), so
``python -m globattn_lite.exercise_tools build`` copies the right header into ``exercises/``.
Both cells are tagged ``remove-cell``: the course website shows its own launch buttons instead.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises")
HEADER_ID = "course-header"
SETUP_ID = "course-setup"
MARK = "course_header"  # cell metadata key holding the cell's role
TAGS = ["remove-cell"]  # myst-nb (the website) leaves these cells out
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"


@dataclass(frozen=True)
class Settings:
    repository: str  # https://github.com/OWNER/NAME
    branch: str
    version: str

    @property
    def owner_and_name(self) -> str:
        m = re.fullmatch(r"https://github\.com/([^/\s]+/[^/\s]+?)/?", self.repository)
        if not m:
            raise ValueError(
                f"[project.urls] Repository must be https://github.com/OWNER/NAME, got {self.repository!r}"
            )
        return m[1]


def read_settings(root: Path = ROOT) -> Settings:
    """The repository URL and branch from pyproject.toml, the version from the package."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    repository = re.search(r'^Repository\s*=\s*"([^"]+)"', text, flags=re.M)
    branch = re.search(r'^\[tool\.globattn_lite\][^\[]*?^branch\s*=\s*"([^"]+)"', text, flags=re.M | re.S)
    version = re.search(
        r'^__version__\s*=\s*"([^"]+)"',
        (root / "globattn_lite" / "__init__.py").read_text(encoding="utf-8"),
        flags=re.M,
    )
    assert repository and branch and version, "pyproject.toml or globattn_lite/__init__.py lacks a setting"
    return Settings(repository[1], branch[1], version[1])


def published_path(path: Path, root: Path = ROOT) -> str:
    """The repository path a learner opens: a solution's header names its exercise."""
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    folder, _, name = rel.partition("/")
    if folder not in FOLDERS or "/" in name:
        raise ValueError(f"{rel}: headers are for notebooks directly inside {', '.join(FOLDERS)}")
    return f"exercises/{name}" if folder == "solutions" else rel


def colab_url(settings: Settings, path: str) -> str:
    return f"https://colab.research.google.com/github/{settings.owner_and_name}/blob/{settings.branch}/{path}"


def binder_url(settings: Settings, path: str) -> str:
    return (
        f"https://mybinder.org/v2/gh/{settings.owner_and_name}/{settings.branch}"
        f"?urlpath=lab/tree/{urllib.parse.quote(path)}"
    )


def report_url(settings: Settings, path: str) -> str:
    query = urllib.parse.urlencode(
        {
            "title": f"{Path(path).stem}: ",
            "body": (
                f"Notebook: {path}\nCourse version: {settings.version}\n\n"
                "What happened, and what did you expect? (Paste the cell and its output.)\n"
            ),
        },
        quote_via=urllib.parse.quote,
    )
    return f"{settings.repository}/issues/new?{query}"


def header_markdown(settings: Settings, path: str) -> str:
    return (
        f"[![Open in Colab]({COLAB_BADGE})]({colab_url(settings, path)}) "
        f"[![Launch Binder]({BINDER_BADGE})]({binder_url(settings, path)}) "
        f"· globattn-lite {settings.version} · [report a problem with this notebook]({report_url(settings, path)})"
    )


def setup_source(settings: Settings, path: str) -> str:
    """The set-up cell: installs the course on Colab, nothing anywhere else."""
    folder = Path(path).parent.as_posix()
    return (
        "# Set-up for Google Colab (generated by `python3 course.py headers`): elsewhere this cell does nothing.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:  # fetch the course, install it, work in its folder\n'
        "    import os, subprocess\n"
        f'    _repository, _branch = "{settings.repository}", "{settings.branch}"\n'
        '    _course = os.path.join(os.path.expanduser("~"), "globattn-lite")\n'
        "    if not os.path.isdir(_course):\n"
        '        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", _branch, '
        "_repository, _course],\n"
        "                       check=True)\n"
        "        # The package's dependencies are lower bounds that Colab's torch and numpy already meet.\n"
        '        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _course], check=True)\n'
        f'    os.chdir(os.path.join(_course, "{folder}"))\n'
        '    print(f"globattn-lite installed from {_repository} ({_branch}); working folder {os.getcwd()}")\n'
    )


def header_cells(settings: Settings, path: str) -> list:
    header = nbformat.v4.new_markdown_cell(header_markdown(settings, path), id=HEADER_ID)
    setup = nbformat.v4.new_code_cell(setup_source(settings, path), id=SETUP_ID)
    header.metadata = {MARK: "header", "tags": list(TAGS)}
    setup.metadata = {MARK: "setup", "tags": list(TAGS)}
    return [header, setup]


def with_header(nb, settings: Settings, path: str):
    """The notebook with exactly one current header at its top (old header cells removed).

    A set-up cell that was executed keeps its outputs and count, so refreshing the header of
    an executed lesson changes nothing when the source is unchanged.
    """
    old = {cell.metadata.get(MARK): cell for cell in nb.cells if MARK in cell.metadata}
    new = header_cells(settings, path)
    setup = old.get("setup")
    if setup is not None and setup.source == new[1].source:
        new[1].outputs, new[1].execution_count = setup.get("outputs", []), setup.get("execution_count")
    nb.cells = new + [cell for cell in nb.cells if MARK not in cell.metadata]
    return nb


def render(nb) -> str:
    """The text written to disk (nbformat's layout with a trailing newline, as exercise_tools)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def notebook_paths(args, root: Path = ROOT) -> list[Path]:
    paths = []
    for arg in args or [root / folder for folder in FOLDERS]:
        p = Path(arg)
        if p.is_dir():
            paths.extend(sorted(p.glob("*.ipynb")))
        elif p.suffix == ".ipynb" and p.is_file():
            paths.append(p)
        else:
            raise SystemExit(f"notebook_headers: {arg!r} is neither a notebook (.ipynb) nor a folder")
    return paths


def refresh(path: Path, settings: Settings, root: Path = ROOT, write: bool = True) -> bool:
    """Insert or refresh one notebook's header; True if the file changed (or would, write=False)."""
    before = Path(path).read_text(encoding="utf-8")
    nb = nbformat.reads(before, as_version=4)
    after = render(with_header(nb, settings, published_path(path, root)))
    if after == before:
        return False
    if write:
        Path(path).write_text(after, encoding="utf-8")
    return True


def readme_badges(settings: Settings) -> str:
    first = "notebooks/00_start_here.ipynb"
    return (
        f"[![Open in Colab]({COLAB_BADGE})]({colab_url(settings, first)}) "
        f"[![Launch Binder]({BINDER_BADGE})]({binder_url(settings, first)})"
    )


README_BADGES = re.compile(r"(<!-- badges: generated by tools/notebook_headers.py -->\n).*?(<!-- /badges -->)", re.S)


def refresh_readme(settings: Settings, root: Path = ROOT, write: bool = True) -> bool:
    path = root / "README.md"
    before = path.read_text(encoding="utf-8")
    if not README_BADGES.search(before):
        raise SystemExit("README.md lacks the '<!-- badges: ... -->' ... '<!-- /badges -->' block")
    after = README_BADGES.sub(lambda m: m[1] + readme_badges(settings) + "\n" + m[2], before)
    if after != before and write:
        path.write_text(after, encoding="utf-8")
    return after != before


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/, solutions/, exercises/)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a header is missing or stale")
    args = parser.parse_args(argv)
    settings = read_settings()
    changed = [p for p in notebook_paths(args.paths) if refresh(p, settings, write=not args.check)]
    if not args.paths and refresh_readme(settings, write=not args.check):
        changed.append(ROOT / "README.md")
    for p in changed:
        print(f"{'stale' if args.check else 'updated'}: {Path(p).resolve().relative_to(ROOT).as_posix()}")
    if args.check and changed:
        print("Run `python3 course.py headers` (then re-execute the changed lessons).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
