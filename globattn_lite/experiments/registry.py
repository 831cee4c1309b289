"""The one registry of experiments, and what is looked up in it: the shipped checkpoints and results
of an experiment named by a learner, its Markdown table, the attention explorer's inputs, the CLI."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from .._validate import choice_arg, int_arg
from . import harness as H
from . import long_range, memory, streaming


class Experiment(NamedTuple):
    """What an experiment module exposes: its config dict, ``train(out_dir, quick, seed, progress,
    threads)`` (trains, saves, returns the results file's content), ``evaluate(checkpoint_dir,
    models)``, ``table(results) -> str``, ``measured(config, seed) -> str`` (the results file's
    description of its numbers) and, for the attention explorer, ``example(variant, model,
    example, tokens)`` (None: the explorer does not show this experiment's models)."""

    config: dict
    train: Callable
    evaluate: Callable
    table: Callable
    measured: Callable
    example: Callable | None = None


EXPERIMENTS = {
    "long_range": Experiment(
        long_range.LONG_RANGE,
        long_range.train_long_range,
        long_range.evaluate_long_range,
        long_range.long_range_table,
        long_range.long_range_measured,
        long_range.long_range_example,
    ),
    "streaming": Experiment(
        streaming.STREAMING,
        streaming.train_streaming,
        streaming.evaluate_streaming,
        streaming.streaming_table,
        streaming.streaming_measured,
        streaming.streaming_example,
    ),
    "memory": Experiment(
        memory.MEMORY, memory.train_memory, memory.evaluate_memory, memory.memory_table, memory.memory_measured
    ),
}
EXPLORED = tuple(name for name, e in EXPERIMENTS.items() if e.example is not None)  # the attention explorer's


def load_models(name, checkpoint_dir=None) -> dict:
    """The shipped models of experiment ``name`` as ``{variant: TinyTransformer}`` (float32, eval mode)."""
    choice_arg("name", name, set(EXPERIMENTS))
    return H.read_models(name, checkpoint_dir)


def load_results(name, checkpoint_dir=None) -> dict:
    """The results JSON written by the training run of experiment ``name``."""
    choice_arg("name", name, set(EXPERIMENTS))
    return H.read_results(name, checkpoint_dir)


def results_table(name, results=None) -> str:
    """A Markdown table of experiment ``name``'s results (``results`` from ``evaluate_<name>()``;
    default: the recorded results JSON of the shipped checkpoint)."""
    choice_arg("name", name, set(EXPERIMENTS))
    return EXPERIMENTS[name].table(results if results is not None else load_results(name)["results"])


def explorer_example(name, variant, model, example=0, tokens=None) -> dict:
    """Test input ``example`` of experiment ``name``'s evaluation, for ``model`` (its variant ``variant``),
    and the query that evaluation scores; for the attention explorer.

    long_range: test sequence ``example`` of ``evaluate_long_range`` (the variant's task, seed
    TEST_SEED), under the variant's pattern; scored: the last token (answer: the value of the fact
    asked for). streaming: 64-token test window ``example`` of ``evaluate_streaming`` (its "dense
    within training length" input), under a causal mask; scored here: the last query whose next
    token is in the window (answer: that token). ``tokens``: typed token ids to feed instead (scored:
    the last token; answer: the task's own answer if it has one, else None). Returns ``{"ids": (1, n)
    long tensor, "mask": (g+n, g+n) bool array, "query": its row, "answer": int or None, "about":
    str}``; rows and columns 0..g-1 are the model's prepended tokens.
    """
    choice_arg("name", name, EXPLORED)
    example = int_arg("example", example, minimum=0, maximum=H.EXAMPLES - 1)
    return EXPERIMENTS[name].example(variant, model, example, tokens)


def main(argv=None):
    """``python -m globattn_lite.experiments NAME [--quick] [--out DIR] [--seed S] [--threads T] [--jobs J]``."""
    parser = argparse.ArgumentParser(
        prog="python -m globattn_lite.experiments",
        description="Tiny-model experiments on global tokens: train, save checkpoints, evaluate them again.",
    )
    parser.add_argument("name", choices=list(EXPERIMENTS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few steps per model (20, or 8 per memory stage), written to a temporary folder",
    )
    parser.add_argument("--out", default=None, help="output folder (default: the package's checkpoints/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="long_range only: models trained at once in separate processes (default 1)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(int_arg("threads", args.threads, minimum=1))
    out = args.out or (tempfile.mkdtemp(prefix="globattn_quick_") if args.quick else H.CHECKPOINT_DIR)
    t0 = time.perf_counter()
    jobs = {"jobs": int_arg("jobs", args.jobs, minimum=1)} if args.name == "long_range" else {}
    results = EXPERIMENTS[args.name].train(out_dir=out, quick=args.quick, seed=args.seed, threads=args.threads, **jobs)
    print(results_table(args.name, results["results"]))
    print(f"wrote {Path(out) / args.name}.pt and .json in {time.perf_counter() - t0:.0f} s")
