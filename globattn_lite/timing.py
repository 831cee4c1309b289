"""Fair wall-clock timing for the lessons: medians of interleaved repeats, reported as ratios.

    times = median_times({"dense": f, "banded": g})   # {name: median seconds per call}

Rules it follows (the lessons quote ratios measured in one run, never absolute times):
- each function is called once untimed first (a warm-up that also sizes the measurement);
- each measurement makes enough calls to last about ``target_seconds``;
- the rounds alternate between the functions, so a burst of load on a shared machine hits all
  of them alike; the result per function is the median over ``repeats`` rounds;
- torch runs on ``threads`` threads (1 by default: on a shared 2-core machine a parallel region
  waits for a busy core), restored afterwards.
Build every input (masks included) *before* timing: only the work inside ``fn`` is measured.
"""

from __future__ import annotations

import statistics
import time


def seconds_per_call(fn, calls: int) -> float:
    """Mean wall-clock seconds of ``calls`` consecutive calls of ``fn()``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def median_times(fns: dict, repeats: int = 7, target_seconds: float = 0.02, threads: int | None = 1) -> dict:
    """``{name: median seconds per call}`` for ``fns = {name: function of no arguments}``."""
    if not isinstance(fns, dict) or not fns or not all(callable(f) for f in fns.values()):
        raise TypeError("fns must be a non-empty dict {name: function of no arguments}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a whole number >= 1, got {repeats!r}")
    torch = None
    if threads is not None:
        import torch  # only to pin the thread count; timing itself needs no torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        calls = {name: max(1, round(target_seconds / max(seconds_per_call(fn, 1), 1e-9))) for name, fn in fns.items()}
        samples = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                samples[name].append(seconds_per_call(fn, calls[name]))
    finally:
        if torch is not None:
            torch.set_num_threads(previous)
    return {name: statistics.median(s) for name, s in samples.items()}
