"""The set-up promises: one pinned stack, named the same in every file, and a CI that runs the
README's test command and nothing else."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def constraint_pins(python=(3, 11)):
    """{name: version} from constraints.txt for a given Python (markers evaluated by hand)."""
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(";")
        name, _, version = spec.strip().partition("==")
        assert version, f"constraints.txt line is not an exact pin: {raw!r}"
        if marker:
            m = re.fullmatch(r'\s*python_version\s*(<|>=)\s*"(\d+)\.(\d+)"\s*', marker)
            assert m, f"unexpected marker in constraints.txt: {raw!r}"
            bound = (int(m[2]), int(m[3]))
            if (m[1] == "<") != (python < bound):
                continue
        key = normalise(name)
        assert key not in pins, f"{name} pinned twice for Python {python}"
        pins[key] = version
    return pins


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def environment_pins():
    """{name: version} for the `name==version` lines of environment.yml's pip section."""
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.fullmatch(r"\s*-\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#]+)\s*(#.*)?", line)
        if m:
            pins[normalise(m[1])] = m[2]
    return pins


def test_environment_yml_names_the_pinned_versions():
    env = environment_pins()
    pins = constraint_pins((3, 11))
    for key in ["numpy", "torch", "matplotlib", "ipywidgets", "jupyterlab"]:
        assert key in env, f"environment.yml does not pin {key}"
    for key, version in env.items():
        assert pins.get(key) == version, (
            f"environment.yml pins {key}=={version} but constraints.txt pins {pins.get(key)}"
        )
    python = re.search(r"-\s*python\s*=\s*(\d+)\.(\d+)", (ROOT / "environment.yml").read_text())
    assert python, "environment.yml must name its Python version"


@pytest.mark.parametrize("python", [(3, 10), (3, 11), (3, 12), (3, 13)])
def test_constraints_pin_each_dependency_once_per_python(python):
    pins = constraint_pins(python)
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.findall(r'^\s*"([A-Za-z0-9_.-]+)\s*[<>=!~]', text, flags=re.M)
    assert deps, "found no dependencies in pyproject.toml"
    for dep in deps:
        if dep == "hatchling":
            continue
        assert normalise(dep) in pins, f"{dep} (pyproject.toml) has no pin in constraints.txt"
    assert pins["torch"] == "2.13.0"
    assert pins["jupyterlab"].startswith("4.")
    assert pins["ipywidgets"].startswith("8.")
    assert pins["numpy"].startswith("2.")
    assert pins["matplotlib"].startswith("3.")


def test_installed_stack_matches_the_pins():
    """The environment running the tests is the pinned one (course.py installs with the pins)."""
    from importlib.metadata import version

    pins = constraint_pins(sys.version_info[:2])
    for key in ["numpy", "torch", "matplotlib", "ipywidgets", "jupyterlab"]:
        installed = version(key).split("+")[0]
        assert installed == pins[key], f"{key} {installed} installed, {pins[key]} pinned"


def readme_quick_start_commands():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", section, flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_quick_start_has_two_commands_and_ci_runs_the_test_one():
    commands = readme_quick_start_commands()
    assert len(commands) == 2, f"README Quick start must show exactly two commands, found {commands}"
    lab, test = commands
    assert lab.endswith("course.py lab") and test.endswith("course.py test")
    ci = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    runs = [ln for ln in ci if not ln.startswith(("set ", "cd "))]
    assert runs == [test], f".ci/run must run only the README's test command {test!r}, runs {runs}"


def test_course_py_uses_only_the_standard_library_and_the_constraints():
    source = (ROOT / "course.py").read_text()
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert "constraints: Path = CONSTRAINTS" in source and '"-c", constraints' in source


def _course():
    sys.path.insert(0, str(ROOT))
    import course

    return course


def test_package_depends_only_on_what_it_imports():
    """[project] dependencies are the third-party modules globattn_lite imports, nothing more
    (JupyterLab and ipykernel are the `lab` extra)."""
    course = _course()
    imported = set()
    for path in (ROOT / "globattn_lite").rglob("*.py"):  # subpackages (checks/, grading/) too
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"globattn_lite", "__future__"}
    # checks.engine imports IPython only when IPython is already running (to draw a failed mask)
    third_party -= {"IPython"}
    declared = {normalise(n) for n in course.lower_bounds()}
    assert {normalise(m) for m in third_party} == declared, (third_party, declared)
    text = (ROOT / "pyproject.toml").read_text()
    lab = text.split("lab = [", 1)[1].split("]", 1)[0]
    assert "jupyterlab" in lab and "ipykernel" in lab


def test_lowest_bounds_leg_pins_each_declared_lower_bound():
    course = _course()
    bounds = course.lower_bounds()
    lines = [ln for ln in course.lowest_constraints().splitlines() if ln and not ln.startswith("#")]

    def pins(name):
        return [ln for ln in lines if normalise(re.split(r"[=;<> ]", ln)[0]) == normalise(name)]

    assert "torch" in bounds  # torch too is installed at its lower bound, not kept at its pin
    for name, version in bounds.items():
        assert pins(name) == [f"{normalise(name)}=={version}"], (name, pins(name))
    for name in course.LOWEST_UNPINNED:  # left to pip: a lower bound asks for another exact version
        assert name not in bounds and pins(name) == [], name
        pinned_in_course = (ROOT / "constraints.txt").read_text().splitlines()
        assert any(normalise(re.split(r"[=;<> ]", ln)[0]) == normalise(name) for ln in pinned_in_course), name
    # the marker the leg deselects is declared (pytest would otherwise select nothing by it, silently)
    assert f'"{course.LOWEST_DESELECTS}: ' in (ROOT / "pyproject.toml").read_text()
    assert "test_setup.py" in course.ENVIRONMENT_TESTS
    for name in course.ENVIRONMENT_TESTS:
        assert (ROOT / "tests" / name).is_file(), f"course.ENVIRONMENT_TESTS names a missing {name}"


def test_release_files_agree_with_the_version_and_the_licence():
    from globattn_lite import __version__

    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf'^version: "{re.escape(__version__)}"$', citation, flags=re.M)
    assert re.search(r"^license: MIT$", citation, flags=re.M)
    assert f"## {__version__}" in (ROOT / "CHANGELOG.md").read_text()
    repository = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)[1]
    assert f'repository-code: "{repository}"' in citation


def test_pages_workflow_builds_the_site_with_the_course_command():
    workflow = (ROOT / ".github" / "workflows" / "pages.yml").read_text()
    assert "python3 course.py site" in workflow and "path: _build/site" in workflow
    assert "actions/deploy-pages" in workflow


def test_jupyterlab_override_is_installed():
    """The package ships the setting that keeps widget messages on the kernel's main thread."""
    import json

    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert path.exists(), f"{path} missing: reinstall with `python3 course.py test`"
    settings = json.loads(path.read_text())
    assert settings["@jupyterlab/apputils-extension:kernels-settings"]["commsOverSubshells"] == "disabled"


CORE_MODULES = [
    "globattn_lite",
    "globattn_lite.patterns",
    "globattn_lite.attention",
    "globattn_lite.softmax_tools",
    "globattn_lite.costs",
]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_without_torch_or_display(module):
    """The numpy core stays light: importing a core module, alone in a fresh interpreter, loads no torch,
    matplotlib or ipywidgets (the one test of this; torch is imported only inside the functions that need it)."""
    import subprocess

    code = (
        f"import sys, {module}\nprint(' '.join(m for m in ('torch', 'matplotlib', 'ipywidgets') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [], f"importing {module} loaded {run.stdout.strip()}"
