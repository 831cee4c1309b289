"""Batch grader: grade a class folder of exercise submissions into tables instructors use.

    python -m globattn_lite.grade SUBMISSIONS... --out scores.csv [--summary summary.csv]
        [--roster roster.csv] [--points points.json] [--student-from folder|canvas|regex:...]
        [--lms canvas|moodle --lms-out grades.csv] [--format gradescope] [--jobs N] [--tests DIR]

SUBMISSIONS are ``.ipynb`` or ``.py`` files, or folders searched recursively. A file belongs
to the exercise set its name starts with (``ex1_dense.ipynb``, ``alice/ex1_dense.py``,
``ex1_dense_bob.ipynb``, Canvas's ``alice_123_456_ex1_dense.ipynb``); every other notebook or
``.py`` file gets a row with status ``unknown set``. In a ``.py`` file, ``# %%`` lines separate
cells. Layout: ``submissions`` (discovery, students, cells), ``worker`` (the untrusted sandbox
worker, alone), ``wire`` (the JSON wire format), ``sandbox`` (the sandbox client, typed
replies), ``instructor`` (``--tests``), ``run`` (grading), ``tables`` (what is written),
``cli`` (the command).

The detail table (``--out``) has one row per file, plus one per rostered student without a
submission (status ``missing``): ``student`` (from ``--student-from``, joined with the
roster), ``name`` and ``id`` (from the roster), ``submission``, ``exercise_set``, ``status``,
one column per exercise function or answer of the sets present (named after it, e.g.
``causal_mask``: the weighted fraction of its checks passed, 0 to 1, see
``globattn_lite.checks``; empty for names of other sets), ``total`` (the mean of the row's
scores), ``points`` and ``max_points`` (``--points``, default 1 per exercise), ``needs_review``
(free-text answers for the instructor to read; never scored), ``seconds``, ``seed`` (of the
row's random check inputs), ``flags`` (duplicates, not on the roster) and ``reasons`` (a short
reason for each failure, ``name: reason``, separated by `` | ``). ``status`` is ``graded``,
``malformed`` (unreadable notebook), ``timeout`` (the submission's time limit ran out),
``crashed`` (its process kept dying), ``unknown set``, ``grader error`` (the grader or an
instructor check failed, not the student) or ``missing``. Several files of one student for
one set are all flagged; the newest one counts in the summary.

``--summary`` writes one row per student (points per set, total, percent, statuses, flags);
``--lms canvas|moodle --lms-out FILE`` writes a gradebook CSV from it; ``--format gradescope``
writes Gradescope's ``results.json`` instead of the detail CSV (one test per exercise,
``python -m globattn_lite.exercise_tools gradescope-zip`` builds the autograder). Every file
is checked to be writable before grading starts, written atomically and readable by the
group (0644). A closing summary on stderr counts rows by status and names the slowest.

The checks are the same as the notebooks' ``check(...)``, with the same per-call time limit
and per-check budget; only the random inputs differ: each student's are drawn from a seed
(recorded in ``seed``) made from ``--seed-salt``, the student and the set, so an answer
hard-coded from someone else's feedback fails (``--public-inputs`` uses the notebooks' own).

Instructor checks (``--tests DIR``): see ``globattn_lite.grading.instructor``.

Trust model
-----------
Nothing stored in a submission is trusted: outputs, execution counts, metadata and the
submission's own ``check`` calls are ignored, and its code runs from scratch. Three kinds of
process take part:

1. this command (trusted) reads the submissions as data: it never executes them. It parses
   notebooks with nbformat and starts one grading process per submission (``--jobs`` of them
   at a time).
2. the grading process (trusted) imports the genuine checks and instructor checks, and
   starts a sandbox process for the submission. It never runs submission code itself: it
   sends the sandbox each code cell, then each check's inputs, and gets back plain data
   (``wire``). All comparisons and scores are computed here.
3. the sandbox (untrusted, ``worker``) runs ``python -I`` with a minimal environment, in a
   temporary folder holding a copy of the submission, from a *public copy* of the package:
   no checks (a ``check`` that does nothing stands in), no reference implementations, no
   grader but its worker, and no ``solutions/`` next to it; the repository of a source
   checkout (which an editable install puts on ``sys.path``) is taken off ``sys.path``. A
   function that runs the course package's code during a check (the lessons' helpers solve
   most exercises by design) fails with "uses the course's
   implementation" and gets no credit. IPython magics are dropped, stdout/stderr go to
   ``os.devnull``. Each cell and call has a time limit (SIGALRM inside the sandbox; a hard
   limit from the grading process, which kills the sandbox's process group), and so has the
   submission. On POSIX the sandbox sets resource limits first: address space
   (``--memory-mb``), CPU seconds, file size, no core dumps. Cells run one top-level statement
   at a time; after a kill, crash or MemoryError the sandbox restarts and replays the
   statements that completed, so a cell that failed halfway leaves what a notebook would.

Limits: this is process isolation, not a security boundary. Submission code runs as your
user and can read or write anything you can (a submission once deleted a file in the
instructor's working folder through ``/proc/<ppid>/cwd``), including the real package if it
knows where it is installed. Grade an untrusted class in a container or as a throw-away user
(the README shows both). On Windows there is no SIGALRM and no ``resource`` module: time
limits are enforced only by killing the sandbox from outside, and there is no memory limit.
macOS refuses an address-space limit, so there a memory bomb is stopped only by the time
limits.
"""
