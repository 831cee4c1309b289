"""Solutions pass every check, untouched exercises fail every check, and exercises/ is
generated from solutions/ (never stale, committed clean)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from globattn_lite import exercise_tools
from globattn_lite.checks import EXERCISE_SETS, specs
from globattn_lite.exercise_tools import BEGIN, END, MarkerError, build_exercise, exercise_source

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
SETS = sorted(EXERCISE_SETS)


def run_cells(path: Path) -> tuple[str, list[str]]:
    """Execute a notebook's code cells in order in a fresh namespace, with the real check();
    returns the printed text and the errors cells raised (a cell error does not stop the run)."""
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": "__main__"}
    out, errors = io.StringIO(), []
    with contextlib.redirect_stdout(out):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                try:
                    exec(compile(cell.source, f"{path.name} cell {index}", "exec"), namespace)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"cell {index}: {type(exc).__name__}: {exc}")
    return out.getvalue(), errors


def verdicts(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+): (PASSED|FAILED|RECORDED)", text, flags=re.M))


def expected_verdicts(name: str) -> dict[str, str]:
    """What a solution shows: PASSED, except free-text answers, which are RECORDED for review."""
    return {n: "RECORDED" if specs()[n].free_text else "PASSED" for n in EXERCISE_SETS[name]}


def test_every_exercise_set_has_a_solution_and_an_exercise():
    assert sorted(p.stem for p in SOLUTIONS.glob("*.ipynb")) == SETS
    assert sorted(p.stem for p in EXERCISES.glob("*.ipynb")) == SETS


def test_exercises_are_not_stale():
    problems = exercise_tools.stale_exercises(SOLUTIONS, EXERCISES)
    assert problems == [], "\n".join(problems) + "\nrun: python -m globattn_lite.exercise_tools build"


@pytest.mark.parametrize("name", SETS)
def test_exercise_notebooks_are_committed_clean(name):
    nb = nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert BEGIN not in cell.source and END not in cell.source and "### HINT" not in cell.source


@pytest.mark.parametrize("name", SETS)
def test_exercise_keeps_everything_but_the_solutions(name):
    solution = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)
    exercise = nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4)
    assert [c.id for c in solution.cells] == [c.id for c in exercise.cells]
    for sol, ex in zip(solution.cells, exercise.cells, strict=True):
        assert sol.cell_type == ex.cell_type
        if BEGIN not in sol.source:
            assert sol.source == ex.source  # prose, imports, check cells: identical
    # the exercise imports only the course package's check (the generated Colab set-up cell, marked
    # "course_header" by tools/notebook_headers.py, installs the course and is not part of the exercise)
    imports = {
        line
        for c in exercise.cells
        if c.cell_type == "code" and "course_header" not in c.metadata
        for line in c.source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {"import numpy as np", "from globattn_lite.checks import check"}


@pytest.mark.parametrize("name", SETS)
def test_every_exercise_has_a_check_cell(name):
    nb = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for exercise in EXERCISE_SETS[name]:
        assert f'check("{exercise}", {exercise});' in code, exercise


@pytest.mark.parametrize("name", SETS)
def test_solution_passes_every_check(name):
    text, errors = run_cells(SOLUTIONS / f"{name}.ipynb")
    assert errors == []
    assert verdicts(text) == expected_verdicts(name), text


@pytest.mark.parametrize("name", SETS)
def test_untouched_exercise_runs_and_fails_every_check(name):
    text, errors = run_cells(EXERCISES / f"{name}.ipynb")
    assert errors == []  # the stubs never crash the notebook: only the checks report
    assert verdicts(text) == {n: "FAILED" for n in EXERCISE_SETS[name]}, text
    assert "not implemented yet" in text or "not answered yet" in text


@pytest.mark.parametrize("name", SETS)
def test_stub_hints_are_real(name):
    nb = nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for match in re.finditer(r"raise NotImplementedError\((.*?)\n?\s*\)$", cell.source, flags=re.S | re.M):
            hint = eval(match.group(1).replace("\n", " "))  # adjacent string literals
            assert len(hint.split()) >= 8, hint
        for line in cell.source.splitlines():
            if line.endswith("= None  # your answer"):
                assert "# Hint: " in cell.source


# ------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------

FUNCTION_CELL = '''def f(x):
    """Doc."""
    ### BEGIN SOLUTION
    ### HINT: square it with "x * x".
    return x * x
    ### END SOLUTION

check("f", f);'''


def test_function_region_becomes_a_raise_with_the_hint():
    out = exercise_source(FUNCTION_CELL)
    assert (
        out
        == '''def f(x):
    """Doc."""
    raise NotImplementedError('square it with "x * x".')

check("f", f);'''
    )
    namespace = {}
    exec(out.replace('check("f", f);', ""), namespace)
    with pytest.raises(NotImplementedError, match="square it"):
        namespace["f"](3)


def test_top_level_region_becomes_none_answers():
    source = "### BEGIN SOLUTION\n### HINT: count them.\nanswer = 4\nreason = (\n    'because'\n)\n### END SOLUTION"
    out = exercise_source(source)
    assert out == "# Hint: count them.\nanswer = None  # your answer\nreason = None  # your answer"


def test_long_hints_wrap_into_valid_python():
    hint = " ".join(["word"] * 60)
    out = exercise_source(f"def g():\n    {BEGIN}\n    ### HINT: {hint}\n    pass\n    {END}")
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["g"]()
    assert str(info.value) == hint
    assert max(len(line) for line in out.splitlines()) <= 100


@pytest.mark.parametrize(
    "source,message",
    [
        (f"{BEGIN}\nx = 1\n{END}", r"line 3: a solution region needs a non-empty '### HINT: \.\.\.' line"),
        (f"{BEGIN}\n### HINT: h\nx = 1\n", "### BEGIN SOLUTION without ### END SOLUTION"),
        (f"x = 1\n{END}", "line 2: ### END SOLUTION without ### BEGIN SOLUTION"),
        (f"{BEGIN}\n{BEGIN}\n{END}", "line 2: ### BEGIN SOLUTION inside another solution region"),
        (f"{BEGIN}\n### HINT: h\nprint(1)\n{END}", r"line 4: a top-level solution region may only assign names"),
        (f"{BEGIN}\n### HINT: h\nx[0] = 1\n{END}", r"line 4: a top-level solution region may only assign names"),
    ],
)
def test_malformed_regions_are_errors(source, message):
    with pytest.raises(MarkerError, match=message):
        exercise_source(source)


def test_build_strips_outputs_and_keeps_the_input_unchanged():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(FUNCTION_CELL, execution_count=3)
    cell.outputs = [nbformat.v4.new_output("stream", text="f: PASSED\n")]
    cell.metadata["execution"] = {"iopub.status.busy": "2024"}
    nb.cells = [cell, nbformat.v4.new_markdown_cell("Prose $x^2$.")]
    nb.metadata["widgets"] = {"state": {}}
    exercise = build_exercise(nb)
    assert exercise.cells[0].outputs == [] and exercise.cells[0].execution_count is None
    assert "execution" not in exercise.cells[0].metadata and "widgets" not in exercise.metadata
    assert exercise.cells[1].source == "Prose $x^2$."
    assert nb.cells[0].execution_count == 3 and BEGIN in nb.cells[0].source  # input untouched
    with pytest.raises(MarkerError, match="no '### BEGIN SOLUTION' regions: is this a solution notebook"):
        build_exercise(nbformat.v4.new_notebook())


@pytest.mark.slow
def test_check_and_build_commands(tmp_path):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    shutil.copytree(SOLUTIONS, solutions)
    shutil.copytree(EXERCISES, exercises)
    command = [sys.executable, "-m", "globattn_lite.exercise_tools"]
    folders = ["--solutions", str(solutions), "--exercises", str(exercises)]
    assert subprocess.run(command + ["check"] + folders, capture_output=True).returncode == 0

    # edit a solution's prose: exercises/ is now stale, and build fixes it
    nb = nbformat.read(solutions / "ex1_dense.ipynb", as_version=4)
    nb.cells[0].source += "\n\nOne more sentence."
    nbformat.write(nb, solutions / "ex1_dense.ipynb")
    (exercises / "ex9_extra.ipynb").write_text("{}", encoding="utf-8")
    stale = subprocess.run(command + ["check"] + folders, capture_output=True, text=True)
    assert stale.returncode == 1
    assert "ex1_dense.ipynb: out of date" in stale.stdout and "ex9_extra.ipynb: has no solution" in stale.stdout
    (exercises / "ex9_extra.ipynb").unlink()
    built = subprocess.run(command + ["build"] + folders, capture_output=True, text=True)
    assert built.returncode == 0 and "ex1_dense.ipynb" in built.stdout
    assert subprocess.run(command + ["check"] + folders, capture_output=True).returncode == 0


def test_bad_arguments_and_string_paths():
    with pytest.raises(TypeError, match=r"source must be a code cell's text \(str\), got NoneType"):
        exercise_source(None)
    with pytest.raises(TypeError, match=r"solution_nb must be a notebook read with nbformat \(version 4\), got dict"):
        build_exercise({"cells": []})
    assert exercise_tools.stale_exercises(str(SOLUTIONS), str(EXERCISES)) == []  # str paths work too


# ------------------------------------------------------------------------------------------
# Exports: nbgrader, Gradescope, releases
# ------------------------------------------------------------------------------------------


def test_nbgrader_notebooks_carry_cell_metadata(tmp_path):
    written = exercise_tools.write_nbgrader(SOLUTIONS, tmp_path, {"kv_entries": 3})
    assert sorted(p.name for p in written) == [f"{s}.ipynb" for s in SETS]
    nb = nbformat.read(tmp_path / "ex5_costs.ipynb", as_version=4)
    graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata["nbgrader"]["grade"]}
    assert graded["check-kv_entries"].metadata["nbgrader"]["points"] == 3.0
    assert graded["check-kv_entries"].source == 'check("kv_entries", kv_entries).points_out_of(3)'
    assert not any(
        "global_tokens_reason" in c.source for c in graded.values() if "global_tokens_always_help" not in c.source
    )  # free text is read, not autograded
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        assert meta["locked"] is not meta["solution"] and "### HINT" not in cell.source
        if meta["solution"]:
            assert BEGIN in cell.source and "# Hint: " in cell.source


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_nbgrader_round_trip(tmp_path):
    """nbgrader itself: generate_assignment gives our stubs, autograde gives the solution full points."""
    pytest.importorskip("nbgrader")
    course = tmp_path / "course"
    exercise_tools.write_nbgrader(SOLUTIONS, course / "source" / "ps1")
    for path in (course / "source" / "ps1").glob("*.ipynb"):
        if path.stem != "ex5_costs":
            path.unlink()
    (course / "nbgrader_config.py").write_text(
        'c = get_config()\nc.CourseDirectory.root = "."\nc.CourseDirectory.course_id = "globattn"\n', encoding="utf-8"
    )
    env = {**__import__("os").environ, "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"}

    def nbgrader(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    nbgrader("generate_assignment", "ps1")
    released = nbformat.read(course / "release" / "ps1" / "ex5_costs.ipynb", as_version=4)
    code = "\n".join(c.source for c in released.cells if c.cell_type == "code")
    assert BEGIN not in code and "raise NotImplementedError()" in code
    assert "legal_contracts_choice = None  # your answer" in code and '"B"' not in code
    submitted = course / "submitted" / "alice" / "ps1"
    submitted.mkdir(parents=True)
    shutil.copyfile(course / "source" / "ps1" / "ex5_costs.ipynb", submitted / "ex5_costs.ipynb")
    nbgrader("autograde", "ps1", "--create")
    nbgrader("export")
    import csv

    with open(course / "grades.csv", newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["max_score"]) == 6.0 and float(row["score"]) == float(row["max_score"]), row


@pytest.mark.slow
def test_gradescope_bundle_runs_in_a_fake_autograder_tree(tmp_path):
    import json
    import os
    import zipfile

    from globattn_lite.grading.tables import validate_gradescope

    bundle = exercise_tools.gradescope_zip(ROOT, tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        assert {"setup.sh", "run_autograder", "pyproject.toml", "globattn_lite/grading/cli.py"} <= set(names)
        assert not any(n.startswith(("solutions/", "tests/")) or "__pycache__" in n for n in names)
        zf.extractall(root / "source")
    shutil.copyfile(root / "source" / "run_autograder", root / "run_autograder")
    os.chmod(root / "run_autograder", 0o755)
    (root / "submission").mkdir()
    shutil.copyfile(SOLUTIONS / "ex5_costs.ipynb", root / "submission" / "ex5_costs.ipynb")
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"email": "a@uni.edu"}]}), encoding="utf-8")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert validate_gradescope(results) == []
    assert results["score"] == 6.0 and sum(t["max_score"] for t in results["tests"]) == 6.0
    assert len(results["tests"]) == len(EXERCISE_SETS["ex5_costs"])
    review = [t for t in results["tests"] if t["name"].startswith("global_tokens_reason")]
    assert review[0]["max_score"] == 0 and "recorded for your instructor" in review[0]["output"]


def test_student_and_instructor_releases(tmp_path):
    student = exercise_tools.release(ROOT, tmp_path / "student", instructor=False)
    assert (student / "exercises" / "ex1_dense.ipynb").exists() and (student / "notebooks").is_dir()
    assert (student / "globattn_lite" / "checks" / "engine.py").exists()  # the public checks
    for private in (
        "solutions",
        "tests",
        "instructor_tests",
        "globattn_lite/grading",
        "globattn_lite/grade.py",
        "globattn_lite/exercise_tools.py",
    ):
        assert not (student / private).exists(), private
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "extra.py").write_text("def check_causal_mask(f):\n    return []\n", encoding="utf-8")
    teacher = exercise_tools.release(ROOT, tmp_path / "teacher", instructor=True, tests_dir=tmp_path / "private")
    for present in ("solutions/ex1_dense.ipynb", "globattn_lite/grading/cli.py", "instructor_tests/extra.py"):
        assert (teacher / present).exists(), present
    with pytest.raises(ValueError, match="student already exists: give a new folder"):
        exercise_tools.release(ROOT, tmp_path / "student", instructor=False)
    with pytest.raises(ValueError, match=r"instructor checks \(--tests\) belong in the instructor release only"):
        exercise_tools.release(ROOT, tmp_path / "other", instructor=False, tests_dir=tmp_path / "private")


@pytest.mark.parametrize("name", SETS)
def test_exercise_notebooks_say_the_course_package_earns_no_credit(name):
    cells = nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4).cells
    intro = next(c for c in cells if "course_header" not in c.metadata).source  # the first cell after the header
    assert "uses the course's implementation" in intro and "never `is`" in intro
