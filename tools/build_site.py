"""Build the course website from the committed, executed notebooks (nothing is re-executed).

    python tools/build_site.py            # writes _build/site/index.html (python3 course.py site)
    python tools/build_site.py --out DIR  # somewhere else

Sphinx with myst-nb and sphinx-book-theme, configured in docs/conf.py, reads a staging copy in
_build/site-src: docs/*.md, then notebooks/ (the lessons) and exercises/ (without solutions),
in course order. In the staged notebooks, links to repository files that are not pages of the
site (solutions, constraints.txt, the package's code) point to the repository instead, so that
no link of the site is broken. Everything it needs is installed from PyPI (the `site` extra);
MathJax is copied into the site, so the build and the pages work offline.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebook_headers  # noqa: E402

SITE_FOLDERS = ("notebooks", "exercises")
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s]+)\)")


def repository_link(target: str, page: Path, staging: Path, settings) -> str:
    """A relative link from a staged page: kept if it names a page or file of the site, else the
    same file in the repository (on the configured branch)."""
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve()
    if resolved.exists() and resolved.is_relative_to(staging.resolve()):
        return target
    rel = (ROOT / page.parent.relative_to(staging) / path).resolve()
    if not rel.exists():
        raise SystemExit(f"{page.relative_to(staging)}: link to {target!r}, which is not in the repository")
    kind = "tree" if rel.is_dir() else "blob"
    url = f"{settings.repository}/{kind}/{settings.branch}/{rel.relative_to(ROOT).as_posix()}"
    return url + (f"#{anchor}" if anchor else "")


def stage(staging: Path, settings) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for doc in (ROOT / "docs").glob("*.md"):
        shutil.copy(doc, staging / doc.name)
    for folder in SITE_FOLDERS:
        (staging / folder).mkdir()
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            shutil.copy(path, staging / folder / path.name)
    for page in sorted(staging.rglob("*.ipynb")):
        nb = nbformat.read(page, as_version=4)

        def relink(match, page=page):  # this page's links, resolved from where the page lives
            return f"]({repository_link(match[1], page, staging, settings)})"

        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = LINK.sub(relink, cell.source)
        nbformat.write(nb, page)


def build(out: Path) -> Path:
    settings = notebook_headers.read_settings(ROOT)
    staging = ROOT / "_build" / "site-src"
    stage(staging, settings)
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-q",
        "-W",
        "--keep-going",
        "-c",
        str(ROOT / "docs"),
        "-d",
        str(ROOT / "_build" / "site-doctrees"),
        str(staging),
        str(out),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    (out / ".nojekyll").write_text("")  # GitHub Pages: serve _static/ and _images/ as they are
    index = out / "index.html"
    assert index.is_file(), "Sphinx wrote no index.html"
    return index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "site", help="output folder")
    args = parser.parse_args(argv)
    try:
        index = build(args.out.resolve())
    except subprocess.CalledProcessError as exc:
        print(f"build_site: Sphinx failed (exit {exc.returncode}); its warnings are above.", file=sys.stderr)
        return 1
    print(f"Course website written to {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
