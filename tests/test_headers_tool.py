"""tools/notebook_headers.py on temporary copies of the course notebooks: it inserts one header
(badges, report link, Colab set-up cell), running it again changes nothing, the header survives
`exercise_tools build`, every badge points to a file of the repository, and the set-up cell is
silent off Colab."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shutil
import sys
import urllib.parse
from pathlib import Path

import nbformat
import pytest

from globattn_lite import exercise_tools

ROOT = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location("notebook_headers", ROOT / "tools" / "notebook_headers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


nh = _load_tool()


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory):
    """A copy of the repository's notebooks and settings, headers applied once."""
    root = tmp_path_factory.mktemp("course")
    for folder in nh.FOLDERS:
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(ROOT / "README.md", root / "README.md")
    (root / "globattn_lite").mkdir()
    shutil.copy(ROOT / "globattn_lite" / "__init__.py", root / "globattn_lite" / "__init__.py")
    settings = nh.read_settings(root)
    for path in nh.notebook_paths([root / f for f in nh.FOLDERS], root):
        nh.refresh(path, settings, root)
    return root, settings


def all_notebooks(root):
    return nh.notebook_paths([root / f for f in nh.FOLDERS], root)


def test_settings_come_from_pyproject_and_the_package():
    settings = nh.read_settings()
    from globattn_lite import __version__

    assert settings.version == __version__
    assert re.fullmatch(r"[^/]+/[^/]+", settings.owner_and_name)
    assert settings.branch


def test_every_notebook_gets_one_header_at_the_top(course_copy):
    root, settings = course_copy
    paths = all_notebooks(root)
    lessons, solutions = (len(list((ROOT / folder).glob("*.ipynb"))) for folder in ("notebooks", "solutions"))
    assert len(paths) == lessons + 2 * solutions  # each solution has its exercise
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        roles = [c.metadata.get(nh.MARK) for c in nb.cells]
        assert roles[:2] == ["header", "setup"] and roles.count("header") == roles.count("setup") == 1, path
        assert [c.id for c in nb.cells[:2]] == [nh.HEADER_ID, nh.SETUP_ID]
        assert nb.cells[0].cell_type == "markdown" and nb.cells[1].cell_type == "code"
        published = nh.published_path(path, root)
        assert f"Notebook%3A%20{urllib.parse.quote(published, safe='')}" in nb.cells[0].source
        assert f"Course%20version%3A%20{settings.version}" in nb.cells[0].source


def test_running_it_again_changes_nothing(course_copy):
    root, settings = course_copy
    before = {p: p.read_bytes() for p in all_notebooks(root)}
    changed = [p for p in before if nh.refresh(p, settings, root)]
    assert changed == []
    assert {p: p.read_bytes() for p in before} == before


def test_a_new_setting_refreshes_the_header_in_place(course_copy, tmp_path):
    root, settings = course_copy
    path = tmp_path / "notebooks" / "01_dense_attention.ipynb"
    path.parent.mkdir()
    shutil.copy(root / "notebooks" / path.name, path)
    moved = nh.Settings("https://github.com/someone/fork", "dev", settings.version)
    assert nh.refresh(path, moved, tmp_path)
    nb = nbformat.read(path, as_version=4)
    assert sum(nh.MARK in c.metadata for c in nb.cells) == 2
    assert "github/someone/fork/blob/dev/notebooks/01_dense_attention.ipynb" in nb.cells[0].source
    assert '"https://github.com/someone/fork", "dev"' in nb.cells[1].source
    original = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    body = [c for c in original.cells if nh.MARK not in c.metadata]
    assert [c.source for c in nb.cells[2:]] == [c.source for c in body]


def test_header_survives_exercise_tools_build(course_copy):
    """A solution's header is its exercise's header: build copies it, and the tool then sees
    the generated exercise as current."""
    root, settings = course_copy
    for solution in sorted((root / "solutions").glob("*.ipynb")):
        exercise = root / "exercises" / solution.name
        solution_nb = nbformat.read(solution, as_version=4)
        built = exercise_tools.render(exercise_tools.build_exercise(solution_nb, solution.name))
        exercise.write_text(built, encoding="utf-8")
        assert not nh.refresh(exercise, settings, root), f"{exercise.name}: build output differs from the tool's header"
        assert "blob/main/exercises/" in nbformat.read(exercise, as_version=4).cells[0].source


def badge_targets(markdown, settings):
    """Repository paths that the Colab and Binder links of a header open."""
    owner = re.escape(settings.owner_and_name)
    colab = re.findall(
        rf"https://colab\.research\.google\.com/github/{owner}/blob/{settings.branch}/([^)\s]+)", markdown
    )
    binder = re.findall(rf"https://mybinder\.org/v2/gh/{owner}/{settings.branch}\?urlpath=lab/tree/([^)\s]+)", markdown)
    return colab, [urllib.parse.unquote(p) for p in binder]


def test_every_badge_points_to_a_file_in_the_repository(course_copy):
    root, settings = course_copy
    for path in all_notebooks(root):
        colab, binder = badge_targets(nbformat.read(path, as_version=4).cells[0].source, settings)
        assert len(colab) == len(binder) == 1, path
        for target in colab + binder:
            assert (ROOT / target).is_file(), f"{path.name}: badge opens {target}, which is not in the repository"
    colab, binder = badge_targets(nh.readme_badges(settings), settings)
    assert colab and binder and all((ROOT / t).is_file() for t in colab + binder)


def test_readme_badges_are_current_and_refresh_is_idempotent(course_copy):
    root, settings = course_copy
    assert not nh.refresh_readme(nh.read_settings(), ROOT, write=False), "run `python3 course.py headers`"
    moved = nh.Settings("https://github.com/someone/fork", "dev", settings.version)
    assert nh.refresh_readme(moved, root)
    assert not nh.refresh_readme(moved, root)
    assert "github/someone/fork/blob/dev/notebooks/00_start_here.ipynb" in (root / "README.md").read_text()


def test_setup_cell_does_nothing_off_colab(course_copy):
    root, _ = course_copy
    source = nbformat.read(root / "notebooks" / "00_start_here.ipynb", as_version=4).cells[1].source
    out = io.StringIO()
    cwd = Path.cwd()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "setup cell", "exec"), {"__name__": "__main__"})
    assert out.getvalue() == "" and Path.cwd() == cwd


def test_check_mode_changes_nothing(course_copy, tmp_path):
    root, settings = course_copy
    stale = tmp_path / "notebooks" / "02_sparse_attention.ipynb"
    stale.parent.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / stale.name, as_version=4)
    nb.cells = [cell for cell in nb.cells if nh.MARK not in cell.metadata]  # a notebook without its header
    nbformat.write(nb, stale)
    before = stale.read_bytes()
    assert nh.refresh(stale, settings, tmp_path, write=False)
    assert stale.read_bytes() == before


def test_a_notebook_outside_the_course_folders_is_refused(tmp_path):
    path = tmp_path / "elsewhere" / "x.ipynb"
    with pytest.raises(ValueError, match=r"x\.ipynb: headers are for notebooks directly inside notebooks"):
        nh.published_path(path, tmp_path)


def test_every_notebook_and_the_readme_carry_the_current_header():
    """The committed course itself, not a copy: regenerate with `python3 course.py headers`."""
    assert nh.main(["--check"]) == 0, "run `python3 course.py headers`, then re-execute the changed lessons"
