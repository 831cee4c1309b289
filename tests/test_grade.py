"""The batch grader: one run over a folder of good, wrong, crashing, looping, malformed,
tampering, noisy and memory-hungry submissions gives the expected table; the submissions are
never modified; the CSV is written atomically; instructor checks add to the shipped ones."""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest

from globattn_lite import grade
from globattn_lite.checks import EXERCISE_SETS, run_check, specs

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--cell-timeout", "1", "--call-timeout", "0.5", "--timeout", "40", "--memory-mb", "768"]

WRONG_EX1 = """
import numpy as np

def causal_mask(n):
    return np.triu(np.ones((n, n), dtype=bool))          # upper triangle

# %%
def softmax(x):
    e = np.exp(x)                                          # overflows
    return e / e.sum(axis=-1, keepdims=True)

# %%
def attention(q, k, v, mask=None):
    s = q @ k.T                                            # unscaled
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    w = w / w.sum(axis=-1, keepdims=True)
    return w @ v, w
"""

CRASHING_EX2 = """
import numpy as np

def sliding_window_mask(n, window):
    q, k = np.arange(n)[:, None], np.arange(n)[None, :]
    return (k <= q) & (q - k < window)

# %%
raise RuntimeError("boom")

# %%
def attended_positions(mask, i):
    raise ValueError("not today")

kv_pairs_at_500 = 4
"""

EXITING_EX2 = """
import os
kv_pairs_at_500 = 4

def count_kv_pairs(mask):
    os._exit(1)                                            # kills the process on every call
"""

LOOPING_EX3 = """
import numpy as np

def local_global_mask(n, window, num_global):
    q, k = np.arange(n)[:, None], np.arange(n)[None, :]
    return (k <= q) & ((q - k < window) | (k < num_global))

# %%
while True:                                                # a cell that never ends
    pass

# %%
def longformer_mask(n, radius, global_positions):
    q, k = np.arange(n)[:, None], np.arange(n)[None, :]
    g = np.zeros(n, dtype=bool)
    g[list(global_positions)] = True
    return (np.abs(q - k) <= radius) | g[q] | g[k]

def receptive_field(mask, layers):
    while True:                                            # swallows the time-limit signal
        try:
            while True:
                pass
        except BaseException:
            pass

def min_layers(mask, src, dst):
    while True:
        pass
"""

NOISY_EX4 = """
import numpy as np
print("x" * 30_000_000)
for i in range(100_000):
    print(i, "lots of output")

def softmax_with_sink(scores, sink_logit):
    m = max(scores.max(), sink_logit)
    e = np.exp(scores - m)
    print(e)
    return e / (np.exp(sink_logit - m) + e.sum())

def entropy(weights):
    w = weights[weights > 0]
    return float(-(w * np.log(w)).sum())

def evict(scores, keep):
    s = np.where(keep, scores, -np.inf)
    e = np.exp(s - s.max())
    return e / e.sum()
"""

MEMORY_BOMB_EX5 = """
hog = []
while True:                                                # grows until the memory limit
    hog.append(bytearray(50_000_000))

# %%
def kv_cache_bytes(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return 2 * layers * kv_heads * head_dim * tokens * batch * bytes_per_element

def max_sequences(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    waste = bytearray(10**11)
    return 0

legal_contracts_choice = "B"
"""

TAMPER_FUNCTIONS = """
import numpy as np

def causal_mask(n):
    return np.zeros((n, n), dtype=bool)

def softmax(x):
    return x

class Liar:
    def __eq__(self, other):
        return True
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no")

def attention(q, k, v, mask=None):
    return Liar(), Liar()
"""

TAMPERING_EX1 = (
    """
import sys
import numpy as np
import builtins
import globattn_lite.checks as stand_in
stand_in.run_check = lambda *a, **k: None
sys.modules.pop("globattn_lite.checks", None)
import globattn_lite.checks as real                        # the real module, in the sandbox
real.run_check = real.check = lambda *a, **k: print("PASSED")
def check(name, fn):
    print(name + ": PASSED (5 of 5 checks).")
np.array_equal = np.allclose = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
open("scores.csv", "w").write("submission,total\\nme,1\\n")
"""
    + TAMPER_FUNCTIONS
    + """
check("causal_mask", causal_mask)
"""
)

BREAKING_EX1 = """
import builtins
import numpy as np
def causal_mask(n):
    return np.tril(np.ones((n, n), dtype=bool))
builtins.isinstance = lambda *a: True                      # breaks everything in its process
"""


def _notebook(source: str, fake_output: str | None = None):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source, execution_count=1)
    if fake_output:
        cell.outputs = [nbformat.v4.new_output("stream", text=fake_output)]
    nb.cells = [cell]
    nb.metadata["grade"] = {"causal_mask": 1.0, "softmax": 1.0, "attention": 1.0}
    return nbformat.writes(nb)


def _functions(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<fixture>", "exec"), namespace)
    return namespace


def _honest(source: str, name: str, student: str, set_name: str) -> float:
    """The score the genuine checks give the fixture's function, run right here with the
    student's seed (the grader draws each student's random inputs from it)."""
    return run_check(name, _functions(source)[name], seed=grade.seed_for(student, set_name)).score


def _sha(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _read(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["submission"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    subs = base / "subs"
    files = {
        "alice/ex1_dense.ipynb": (ROOT / "solutions" / "ex1_dense.ipynb").read_text(encoding="utf-8"),
        "bob/ex1_dense.py": WRONG_EX1,
        "carol/ex2_sparse.py": CRASHING_EX2,
        "carol/ex2_sparse_exit.py": EXITING_EX2,
        "dan/ex3_global.py": LOOPING_EX3,
        "erin/ex1_dense.ipynb": '{"cells": [{"cell_type": "code", "source": "x = 1"',
        "frank/ex1_dense.ipynb": _notebook(TAMPERING_EX1, fake_output="causal_mask: PASSED (5 of 5 checks).\n"),
        "frank/ex1_dense_broken.py": BREAKING_EX1,
        "gina/ex4_softmax.py": NOISY_EX4,
        "hank/ex5_costs.py": MEMORY_BOMB_EX5,
        "hank/helper.py": "print('not a submission')\n",
        "ivan/ex2_sparse.ipynb": (ROOT / "exercises" / "ex2_sparse.ipynb").read_text(encoding="utf-8"),
    }
    for name, text in files.items():
        (subs / name).parent.mkdir(parents=True, exist_ok=True)
        (subs / name).write_text(text, encoding="utf-8")
    before = _sha(subs)
    out = base / "scores.csv"
    out.write_text("an older table\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "globattn_lite.grade", "subs", "--out", "scores.csv", "--jobs", "2", *FAST],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {
        "proc": proc,
        "rows": _read(out),
        "base": base,
        "subs": subs,
        "before": before,
        "header": out.read_text(encoding="utf-8").splitlines()[0].split(","),
    }


def _row(graded, name):
    return graded["rows"][str(Path("subs") / name)]


@pytest.mark.slow
def test_grading_writes_one_row_per_submission(graded):
    assert graded["proc"].returncode == 0, graded["proc"].stderr
    assert "subs/hank/helper.py: its name matches no exercise set" in graded["proc"].stderr
    assert len(graded["rows"]) == 12
    assert _row(graded, "hank/helper.py")["status"] == "unknown set"  # a row, not only a line on stderr
    names = [n for s in EXERCISE_SETS for n in EXERCISE_SETS[s] if not specs()[n].free_text]
    assert graded["header"] == [
        "student",
        "name",
        "id",
        "submission",
        "exercise_set",
        "status",
        *names,
        "total",
        "points",
        "max_points",
        "needs_review",
        "seconds",
        "seed",
        "flags",
        "reasons",
    ]
    assert "status counts: crashed 1, graded 9, malformed 1, unknown set 1" in graded["proc"].stderr
    assert "slowest: " in graded["proc"].stderr


@pytest.mark.slow
def test_correct_submission_scores_full_marks(graded):
    row = _row(graded, "alice/ex1_dense.ipynb")
    assert (row["status"], row["causal_mask"], row["softmax"], row["attention"], row["total"]) == (
        "graded",
        "1",
        "1",
        "1",
        "1",
    )
    assert row["reasons"] == "" and row["sliding_window_mask"] == ""  # other sets' columns stay empty


@pytest.mark.slow
def test_wrong_submission_gets_the_same_scores_and_hints_as_the_notebook_check(graded):
    row = _row(graded, "bob/ex1_dense.py")
    assert row["status"] == "graded"
    for name in ("causal_mask", "softmax", "attention"):
        expected = _honest(WRONG_EX1, name, "bob", "ex1_dense")
        assert expected < 1
        assert float(row[name]) == pytest.approx(expected, abs=1e-3)
    assert "upper instead of lower triangle" in row["reasons"]
    assert "softmax overflow" in row["reasons"] and "unscaled" in row["reasons"]


@pytest.mark.slow
def test_crashing_cells_and_functions(graded):
    row = _row(graded, "carol/ex2_sparse.py")
    assert row["status"] == "graded"
    assert (row["sliding_window_mask"], row["attended_positions"], row["count_kv_pairs"], row["kv_pairs_at_500"]) == (
        "1",
        "0",
        "0",
        "1",
    )
    assert "cell 2, line 1: RuntimeError: boom" in row["reasons"]
    assert "raised ValueError: not today" in row["reasons"] and "count_kv_pairs: not defined" in row["reasons"]
    exiting = _row(graded, "carol/ex2_sparse_exit.py")
    assert exiting["status"] == "crashed" and exiting["count_kv_pairs"] == "0"
    assert "exited with code 1" in exiting["reasons"]


@pytest.mark.slow
def test_looping_cells_and_functions_time_out(graded):
    row = _row(graded, "dan/ex3_global.py")
    assert row["status"] == "graded"
    assert (row["local_global_mask"], row["longformer_mask"], row["receptive_field"], row["min_layers"]) == (
        "1",
        "1",
        "0",
        "0",
    )
    assert "cell 2: timed out after 1 s" in row["reasons"]
    assert "receptive_field: timed out after 0.5 s" in row["reasons"]


@pytest.mark.slow
def test_malformed_notebook_gets_a_row_with_the_reason(graded):
    row = _row(graded, "erin/ex1_dense.ipynb")
    assert row["status"] == "malformed" and row["total"] == "0" and row["causal_mask"] == "0"
    assert "not valid notebook JSON" in row["reasons"]


@pytest.mark.slow
def test_tampering_changes_nothing(graded):
    row = _row(graded, "frank/ex1_dense.ipynb")
    assert row["status"] == "graded"
    for name in ("causal_mask", "softmax", "attention"):
        honest = run_check(name, _functions(TAMPER_FUNCTIONS)[name], seed=grade.seed_for("frank", "ex1_dense")).score
        assert honest < 1 and float(row[name]) == pytest.approx(honest, abs=1e-3)
    assert row["attention"] == "0"
    broken = _row(graded, "frank/ex1_dense_broken.py")
    assert broken["causal_mask"] == "0" and broken["total"] == "0"  # the cell that broke Python never counts


@pytest.mark.slow
def test_huge_prints_and_memory_bombs_are_survived(graded):
    noisy = _row(graded, "gina/ex4_softmax.py")
    assert (noisy["status"], noisy["softmax_with_sink"], noisy["entropy"], noisy["evict"]) == ("graded", "1", "1", "1")
    bomb = _row(graded, "hank/ex5_costs.py")
    assert bomb["status"] == "graded"
    # The growing loop hits the memory limit, or, on a busy machine, the 1 s cell limit first.
    assert "cell 1, line 4: MemoryError" in bomb["reasons"] or "cell 1: timed out after 1 s" in bomb["reasons"], bomb[
        "reasons"
    ]
    assert bomb["kv_cache_bytes"] == "1" and bomb["legal_contracts_choice"] == "1"
    assert bomb["max_sequences"] == "0" and "MemoryError" in bomb["reasons"].split("max_sequences:")[1]
    assert bomb["kv_entries"] == "0" and "kv_entries: not defined" in bomb["reasons"]


@pytest.mark.slow
def test_untouched_exercise_scores_zero(graded):
    row = _row(graded, "ivan/ex2_sparse.ipynb")
    assert row["status"] == "graded" and row["total"] == "0"
    assert "not implemented yet" in row["reasons"] and "not answered yet" in row["reasons"]


@pytest.mark.slow
def test_submissions_are_never_modified_and_the_csv_is_replaced_whole(graded):
    assert _sha(graded["subs"]) == graded["before"]  # same files, same bytes, nothing added
    leftovers = [p.name for p in graded["base"].iterdir() if p.name not in ("subs", "scores.csv")]
    assert leftovers == []


# ------------------------------------------------------------------------------------------
# Instructor checks
# ------------------------------------------------------------------------------------------

SOFTMAX_SOURCE = """
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
"""

INSTRUCTOR = """
EXERCISE_SET = "ex1_dense"

def check_causal_mask(causal_mask):
    m = causal_mask(300)
    return [] if m[299, 0] and not m[0, 299] else ["wrong at n = 300"]

def check_softmax(softmax):
    return ["the instructor wants float32 output"]

def check_double(double):
    return double(21) == 42
"""


@pytest.mark.slow
def test_instructor_checks_add_to_the_shipped_ones(tmp_path):
    tests = tmp_path / "private"
    tests.mkdir()
    (tests / "extra_checks.py").write_text(INSTRUCTOR, encoding="utf-8")
    solution = (ROOT / "solutions" / "ex1_dense.ipynb").read_text(encoding="utf-8")
    nb = nbformat.reads(solution, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("def double(x):\n    return 2 * x"))
    (tmp_path / "ex1_dense.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "globattn_lite.grade", "ex1_dense.ipynb", "--out", "s.csv", "--tests", "private", *FAST],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    row = _read(tmp_path / "s.csv")["ex1_dense.ipynb"]
    shipped_softmax = run_check("softmax", _functions("import numpy as np\n" + SOFTMAX_SOURCE)["softmax"]).max_points
    assert row["causal_mask"] == "1" and row["double"] == "1"
    assert float(row["softmax"]) == pytest.approx(shipped_softmax / (shipped_softmax + 1), abs=1e-3)
    assert "instructor check extra_checks.py:check_softmax: the instructor wants float32" in row["reasons"]


def test_bad_instructor_checks_are_a_usage_error(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "bad.py").write_text("def check_unknown_thing(f):\n    return []\n", encoding="utf-8")
    (tmp_path / "ex1_dense.py").write_text("x = 1\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "globattn_lite.grade", "ex1_dense.py", "--out", "s.csv", "--tests", "t"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "EXERCISE_SET" in proc.stderr
    assert not (tmp_path / "s.csv").exists()


# ------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------


def test_csv_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    out.write_text("old table\n", encoding="utf-8")
    header = ["submission", "causal_mask", "total"]
    grade.write_csv_atomic(out, header, [{"submission": "a.py", "causal_mask": 0.5, "total": 1 / 3}])
    assert out.read_text(encoding="utf-8").splitlines() == ["submission,causal_mask,total", "a.py,0.5,0.3333"]

    class Boom:
        def __str__(self):
            raise RuntimeError("disk on fire")

    from globattn_lite.grading import tables

    monkeypatch.setattr(tables, "cell_text", lambda value: str(value))
    with pytest.raises(RuntimeError, match="disk on fire"):
        grade.write_csv_atomic(out, header, [{"submission": "b.py"}, {"submission": Boom()}])
    assert out.read_text(encoding="utf-8").splitlines()[1] == "a.py,0.5,0.3333"  # the old table is intact
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]  # and no temporary file is left


def test_wire_format_round_trip_and_refusals():
    value = (
        np.arange(6, dtype=np.int32).reshape(2, 3),
        [True, None, "s", 1.5, float("inf")],
        {"k": np.float32(2.5)},
        {1, 2},
        np.bool_(True),
        np.zeros((0, 3), dtype=bool),
    )
    back = grade.decode(grade.encode(value))
    assert back[0].dtype == np.int32 and (back[0] == value[0]).all()
    assert back[1] == [True, None, "s", 1.5, float("inf")]
    assert back[2]["k"] == np.float32(2.5) and type(back[2]["k"]) is np.float32
    assert back[3] == {1, 2} and type(back[4]) is np.bool_ and back[5].shape == (0, 3)
    assert isinstance(grade.decode(grade.encode(object())), grade.Opaque)
    assert isinstance(grade.decode(grade.encode(np.array(["a"]))), grade.Opaque)
    assert isinstance(grade.decode(grade.encode(np.zeros(grade.MAX_ELEMENTS + 1))), grade.Opaque)
    nested = []
    for _ in range(100):
        nested = [nested]
    assert "nested too deeply" in repr(grade.decode(grade.encode(nested)))
    for bad, words in (
        ({"__nd__": ["|O", [1], [None]]}, "unexpected dtype object"),
        ({"__nd__": ["<f8", [2], [1.0]]}, "array data does not match its shape"),
        ({"__evil__": 1}, "unknown tag '__evil__'"),
        ({"a": 1, "b": 2}, "malformed value"),
    ):
        with pytest.raises(grade.ProtocolError, match=words):  # decode's one error, whatever the input
            grade.decode(bad)


def test_magics_are_stripped():
    assert grade.strip_magics("%%bash\nls") is None
    assert grade.strip_magics("%%time\ndef f():\n    return 1") == "def f():\n    return 1"
    source = "%matplotlib inline\nif True:\n    !pip install x\nx = 1"
    assert grade.strip_magics(source) == textwrap.dedent("""\
        pass  # IPython magic removed by the grader
        if True:
            pass  # IPython magic removed by the grader
        x = 1""")


def test_cells_of_py_files_and_lenient_notebooks(tmp_path):
    py = tmp_path / "ex1_dense.py"
    py.write_text("a = 1\n# %%\nb = 2\n# %% [markdown]\n", encoding="utf-8")
    assert grade.load_cells(py)[0] == ["a = 1", "b = 2", ""]
    nb = tmp_path / "ex1_dense.ipynb"
    nb.write_text(
        '{"cells": [{"cell_type": "code", "source": ["x = 1\\n", "y = 2"]}, '
        '{"cell_type": "markdown", "source": "hi"}]}',
        encoding="utf-8",
    )
    cells, notes = grade.load_cells(nb)
    assert cells == ["x = 1\ny = 2"] and "leniently" in notes[0]
    (tmp_path / "bad.ipynb").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(grade.MalformedSubmission, match="not UTF-8 text"):
        grade.load_cells(tmp_path / "bad.ipynb")


def test_files_are_matched_to_exercise_sets_by_name(tmp_path):
    assert grade.exercise_set_for(Path("alice/ex1_dense.ipynb")) == "ex1_dense"
    assert grade.exercise_set_for(Path("ex5_costs_bob.py")) == "ex5_costs"
    assert grade.exercise_set_for(Path("EX2_SPARSE-v2.ipynb")) == "ex2_sparse"
    assert grade.exercise_set_for(Path("ex1_densest.py")) is None
    assert grade.exercise_set_for(Path("notes.py")) is None
    (tmp_path / "notes.py").write_text("x = 1\n", encoding="utf-8")
    columns, rows = grade.grade([tmp_path / "notes.py"])  # named explicitly: a row saying why
    assert rows[0]["status"] == "unknown set" and "matches no exercise set" in rows[0]["reasons"]
    assert columns == []


def test_command_line_usage_errors(tmp_path):
    run = [sys.executable, "-m", "globattn_lite.grade"]
    missing = subprocess.run(run + ["nope.ipynb", "--out", "s.csv"], cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = subprocess.run(run + ["empty", "--out", "s.csv"], cwd=tmp_path, capture_output=True, text=True)
    assert empty.returncode == 2 and "no submissions" in empty.stderr
    shutil.rmtree(tmp_path / "empty")
    (tmp_path / "ex1_dense.py").write_text("", encoding="utf-8")
    for option in ("--call-timeout", "--cell-timeout", "--timeout", "--memory-mb"):
        zero = subprocess.run(
            run + ["ex1_dense.py", "--out", "s.csv", option, "0"], cwd=tmp_path, capture_output=True, text=True
        )
        assert zero.returncode == 2 and f"{option} must be > 0" in zero.stderr


def test_sandbox_limits_the_system_refuses_are_skipped(monkeypatch):
    """macOS raises ValueError for setrlimit(RLIMIT_AS, ...): the sandbox must still start."""
    import types

    applied = {}

    def setrlimit(kind, value):
        if kind == "AS":
            raise ValueError("current limit exceeds maximum limit")
        applied[kind] = value

    fake = types.SimpleNamespace(
        RLIMIT_AS="AS",
        RLIMIT_CPU="CPU",
        RLIMIT_FSIZE="FSIZE",
        RLIMIT_CORE="CORE",
        RLIM_INFINITY=-1,
        getrlimit=lambda kind: (-1, -1),
        setrlimit=setrlimit,
    )
    monkeypatch.setitem(sys.modules, "resource", fake)
    from globattn_lite.grading import worker

    monkeypatch.setattr(worker.signal, "signal", lambda *args: None)  # leave this process's SIGXFSZ alone
    worker.apply_limits({"memory_mb": 512, "cpu_seconds": 30})
    assert applied == {"CPU": (30, 30), "FSIZE": (64 * 2**20, 64 * 2**20), "CORE": (0, 0)}


def test_bad_limits_and_jobs_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="call_timeout must be > 0, got 0"):
        grade.Limits(call_timeout=0)
    with pytest.raises(TypeError, match=r"memory_mb must be a whole number \(int\), got 1.5"):
        grade.Limits(memory_mb=1.5)
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        grade.grade([tmp_path], jobs=0)
    with pytest.raises(TypeError, match=r"limits must be a grading\.Limits or None, got dict"):
        grade.grade([tmp_path], limits={"call_timeout": 1})


@pytest.mark.parametrize(
    "result, expected",
    [
        (None, None),
        (True, None),
        ([], None),
        ("", None),
        (False, "failed"),
        (["a", "b"], "a; b"),
        ("wrong at n = 3", "wrong at n = 3"),
    ],
)
def test_instructor_check_results(result, expected):
    verdict = grade.run_instructor_check(lambda candidate: result, None)
    assert verdict.failure == expected and not verdict.broken


def test_an_instructor_check_that_breaks_is_a_grader_error_not_a_failure():
    def raises(candidate):
        raise KeyError("typo in the instructor's check")

    def asserts(candidate):
        assert candidate == 1, "wanted 1"

    for fn, broken, words in (
        (raises, True, "KeyError"),
        (lambda c: 0, True, "expected a list"),
        (asserts, False, "AssertionError: wanted 1"),
    ):
        verdict = grade.run_instructor_check(fn, 2)
        assert verdict.broken is broken and words in verdict.failure


# ------------------------------------------------------------------------------------------
# A class folder: the course's own code, misnamed and duplicate files, a roster, points
# ------------------------------------------------------------------------------------------

PACKAGE = ROOT / "globattn_lite"

USES_THE_REFERENCE = f"""
from globattn_lite.checks.ex4_softmax import _ref_evict as evict   # the checks' reference

# %%
import importlib.util                                      # the reference, loaded by its file path
spec = importlib.util.spec_from_file_location("stolen", {str(PACKAGE / "checks" / "ex4_softmax.py")!r})
stolen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stolen)
evict = stolen._ref_evict

# %%
spec = importlib.util.spec_from_file_location("globattn_lite.tools", {str(PACKAGE / "softmax_tools.py")!r})
tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tools)
softmax_with_sink = tools.softmax_with_sink                # the real package's file

# %%
from globattn_lite import softmax_tools                    # the lessons' helpers
entropy = softmax_tools.entropy
"""

READS_THE_SOLUTIONS = """
import json, pathlib
import globattn_lite
root = pathlib.Path(globattn_lite.__file__).resolve().parents[1]
notebook = json.loads((root / "solutions" / "ex1_dense.ipynb").read_text())
for cell in notebook["cells"]:
    if cell["cell_type"] == "code":
        exec("".join(cell["source"]))
"""

FAILS_HALFWAY = """
import numpy as np

def entropy(weights):
    w = weights[weights > 0]
    return float(-(w * np.log(w)).sum())

import a_module_that_is_not_installed                      # an ImportError after the definition

# %%
def evict(scores, keep):
    s = np.where(keep, scores, -np.inf)
    e = np.exp(s - s.max())
    return e / e.sum()

def softmax_with_sink(scores, sink_logit):
    m = max(scores.max(), sink_logit)
    scores -= m                                            # changes the caller's array
    return np.exp(scores) / (np.exp(sink_logit - m) + np.exp(scores).sum())

hog = bytearray(10**12)                                    # a MemoryError on the last line
"""

COMPARES_WITH_IS = """
def kv_entries(policy, t, window=None, sinks=0):
    if policy is "dense":
        return t
    if policy is "window":
        return min(t, window)
    return min(t, sinks + window)

global_tokens_reason = "cost cost cost cost"
legal_contracts_choice = "B"
"""

BROKEN_INSTRUCTOR_CHECK = """
def check_count_kv_pairs(count_kv_pairs):
    return {}["a key the instructor forgot"]
"""

ROSTER = "student,name,id,sis_id,login,email,section\n" + "".join(
    f"{s},{s.title()} Example,{i},S{i},{s}@uni,{s}@uni.edu,A\n"
    for i, s in enumerate(["amy", "half", "ref", "sol", "str", "nobody"], 100)
)


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    subs = base / "class"
    files = {
        "ref/ex4_softmax.py": USES_THE_REFERENCE,
        "sol/ex1_dense.py": READS_THE_SOLUTIONS,
        "zoe/my_homework.ipynb": (ROOT / "exercises" / "ex1_dense.ipynb").read_text(encoding="utf-8"),
        "amy/ex2_sparse.ipynb": (ROOT / "exercises" / "ex2_sparse.ipynb").read_text(encoding="utf-8"),
        "amy/ex2_sparse_late.py": "kv_pairs_at_500 = 4\n",
        "half/ex4_softmax.py": FAILS_HALFWAY,
        "str/ex5_costs.py": COMPARES_WITH_IS,
    }
    for name, text in files.items():
        (subs / name).parent.mkdir(parents=True, exist_ok=True)
        (subs / name).write_text(text, encoding="utf-8")
    older = (subs / "amy/ex2_sparse.ipynb").stat().st_mtime - 3600
    import os

    os.utime(subs / "amy/ex2_sparse.ipynb", (older, older))
    (base / "roster.csv").write_text(ROSTER, encoding="utf-8")
    (base / "points.json").write_text('{"entropy": 3, "evict": 2}', encoding="utf-8")
    (base / "private").mkdir()
    (base / "private" / "checks.py").write_text(BROKEN_INSTRUCTOR_CHECK, encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "globattn_lite.grade",
            "class",
            "--out",
            "detail.csv",
            "--summary",
            "summary.csv",
            "--roster",
            "roster.csv",
            "--points",
            "points.json",
            "--lms",
            "canvas",
            "--lms-out",
            "canvas.csv",
            "--tests",
            "private",
            "--jobs",
            "2",
            *FAST,
        ],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    with open(base / "detail.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(base / "summary.csv", newline="", encoding="utf-8") as f:
        summary = {row["student"]: row for row in csv.DictReader(f)}
    with open(base / "canvas.csv", newline="", encoding="utf-8") as f:
        canvas = list(csv.reader(f))
    return {
        "proc": proc,
        "base": base,
        "summary": summary,
        "canvas": canvas,
        "rows": {row["submission"] or f"missing:{row['student']}": row for row in rows},
    }


def _class_row(folder, name):
    return folder["rows"][str(Path("class") / name)]


@pytest.mark.slow
def test_the_course_implementation_and_the_solutions_get_no_credit(class_folder):
    assert class_folder["proc"].returncode == 0, class_folder["proc"].stderr
    ref = _class_row(class_folder, "ref/ex4_softmax.py")
    assert (ref["evict"], ref["softmax_with_sink"], ref["entropy"], ref["total"]) == ("0", "0", "0", "0")
    assert "softmax_with_sink: uses the course's implementation" in ref["reasons"]
    assert "entropy: uses the course's implementation (globattn_lite.softmax_tools)" in ref["reasons"]
    assert "evict: not defined" in ref["reasons"]  # the reference is not in the sandbox at all
    sol = _class_row(class_folder, "sol/ex1_dense.py")
    assert sol["total"] == "0" and "FileNotFoundError" in sol["reasons"]  # no solutions/ next to the package


@pytest.mark.slow
def test_a_cell_that_fails_halfway_keeps_what_ran_before_whatever_the_error(class_folder):
    half = _class_row(class_folder, "half/ex4_softmax.py")
    assert half["status"] == "graded"
    assert "cell 1, line 8: ModuleNotFoundError" in half["reasons"]
    assert "cell 2, line 11: MemoryError" in half["reasons"]  # lines count within each cell
    assert half["entropy"] == "1" and half["evict"] == "1"  # defined before the failing line: kept
    assert float(half["softmax_with_sink"]) < 0.5 and "modified its input scores in place" in half["reasons"]
    # points: entropy 3 + evict 2 + the partial softmax_with_sink (1 point), of 3 + 2 + 1
    assert float(half["points"]) == pytest.approx(5 + float(half["softmax_with_sink"]), abs=1e-3)
    assert half["max_points"] == "6"


@pytest.mark.slow
def test_is_comparisons_and_free_text_in_the_grader(class_folder):
    row = _class_row(class_folder, "str/ex5_costs.py")
    assert float(row["kv_entries"]) < 1 and "not `is`" in row["reasons"]  # its "sinks" branch is right
    assert row["needs_review"] == "global_tokens_reason: cost cost cost cost"
    assert "global_tokens_reason" not in row  # no score column: it is read, not graded
    assert row["legal_contracts_choice"] == "1"


@pytest.mark.slow
def test_students_roster_duplicates_and_unknown_files_are_rows(class_folder):
    rows = class_folder["rows"]
    zoe = _class_row(class_folder, "zoe/my_homework.ipynb")
    assert zoe["status"] == "unknown set" and zoe["student"] == "zoe" and "not on the roster" in zoe["flags"]
    missing = rows["missing:nobody"]
    assert missing["status"] == "missing" and missing["name"] == "Nobody Example" and missing["id"] == "105"
    late, early = _class_row(class_folder, "amy/ex2_sparse_late.py"), _class_row(class_folder, "amy/ex2_sparse.ipynb")
    assert "duplicate: 2 files" in late["flags"] and "this newest one counts" in late["flags"]
    assert "not counted" in early["flags"]
    assert {r["student"] for r in rows.values()} == {"amy", "half", "ref", "sol", "str", "nobody", "zoe"}
    assert all(r["seed"] for r in rows.values() if r["status"] not in ("missing", "unknown set"))
    assert float(_class_row(class_folder, "half/ex4_softmax.py")["seconds"]) > 0


@pytest.mark.slow
def test_a_broken_instructor_check_is_a_grader_error(class_folder):
    row = _class_row(class_folder, "amy/ex2_sparse.ipynb")  # defines count_kv_pairs (a stub)
    assert row["status"] == "grader error"
    assert "instructor check checks.py:check_count_kv_pairs raised KeyError" in row["reasons"]
    late = _class_row(class_folder, "amy/ex2_sparse_late.py")  # no count_kv_pairs: the check never ran
    assert late["status"] == "graded" and late["kv_pairs_at_500"] == "1" and late["count_kv_pairs"] == "0"


@pytest.mark.slow
def test_summary_lms_csv_permissions_and_closing_summary(class_folder):
    summary = class_folder["summary"]
    half = _class_row(class_folder, "half/ex4_softmax.py")
    assert summary["half"]["ex4_softmax"] == half["points"] and summary["nobody"]["statuses"] == "no submission"
    assert summary["amy"]["ex2_sparse"] == "1"  # the newest of amy's two files: kv_pairs_at_500 only
    assert summary["str"]["needs_review"] == "1"
    header, *rows = class_folder["canvas"]
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "globattn-lite exercises"]
    assert ["Half Example", "101", "S101", "half@uni", "A", summary["half"]["points"]] in rows
    for name in ("detail.csv", "summary.csv", "canvas.csv"):
        assert (class_folder["base"] / name).stat().st_mode & 0o777 == 0o644
    err = class_folder["proc"].stderr
    assert "status counts: graded 5, grader error 1, missing 1, unknown set 1" in err, err
    assert "1 file(s) matched no exercise set" in err and "slowest: " in err


def test_canvas_and_regex_student_names(tmp_path):
    for name in ("smithjane_12345_67890_ex2_sparse.ipynb", "doejohn_LATE_222_333_ex1_dense-1.py", "x.py"):
        (tmp_path / name).write_text("", encoding="utf-8")
    found = {s.path.name: s for s in grade.discover([tmp_path], "canvas")[0]}
    jane, john = found["smithjane_12345_67890_ex2_sparse.ipynb"], found["doejohn_LATE_222_333_ex1_dense-1.py"]
    assert (jane.student, jane.lms_id, jane.exercise_set) == ("smithjane", "12345", "ex2_sparse")
    assert (john.student, john.lms_id, john.exercise_set) == ("doejohn", "222", "ex1_dense")
    assert found["x.py"].exercise_set is None and found["x.py"].student == ""
    by_regex = grade.discover([tmp_path], r"regex:^(?P<student>[a-z]+)_")[0]
    assert {s.student for s in by_regex} == {"smithjane", "doejohn", ""}
    with pytest.raises(ValueError, match=r"--student-from 'regex:no-group': the pattern needs a group \(\?P<student>"):
        grade.discover([tmp_path], "regex:no-group")
    with pytest.raises(ValueError, match="--student-from must be 'folder', 'canvas' or 'regex:PATTERN', got 'moodle'"):
        grade.discover([tmp_path], "moodle")


def test_outputs_are_checked_before_grading_starts(tmp_path):
    (tmp_path / "ex1_dense.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "a_folder").mkdir()
    run = [sys.executable, "-m", "globattn_lite.grade", "ex1_dense.py"]
    for extra, words in (
        (["--out", "a_folder"], "is a folder"),
        (["--out", "no/such/s.csv"], "does not exist"),
        (["--out", "s.csv", "--summary", "a_folder"], "--summary a_folder: is a folder"),
        (["--out", "s.csv", "--lms", "canvas"], "go together"),
    ):
        proc = subprocess.run(run + extra, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert "graded" not in proc.stderr and not (tmp_path / "s.csv").exists()


def test_gradescope_results_follow_the_documented_fields():
    from globattn_lite.grading import tables

    rows = [
        {
            "student": "",
            "submission": "ex5_costs.ipynb",
            "exercise_set": "ex5_costs",
            "status": "graded",
            "kv_cache_bytes": 1.0,
            "kv_entries": 0.5,
            "reasons": "kv_entries: wrong",
            "needs_review": "",
        }
    ]
    results = tables.gradescope_results(
        rows, ["kv_cache_bytes", "kv_entries", "global_tokens_reason"], {"kv_cache_bytes": 2.0, "kv_entries": 2.0}, 3.0
    )
    assert tables.validate_gradescope(results) == []
    assert results["score"] == 3.0 and [t["max_score"] for t in results["tests"]] == [2.0, 2.0, 0.0]
    assert results["tests"][1]["output"] == "wrong" and results["tests"][1]["status"] == "failed"
    assert tables.validate_gradescope({"tests": [{"score": 2, "max_score": 1, "oops": 1}]}) == [
        "test 0: unknown field 'oops'",
        "test 0: score above max_score",
    ]
