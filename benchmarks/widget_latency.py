"""Headless latency of the explorers: from setting a control to the new PNG in the Image widget.

    .venv/bin/python benchmarks/widget_latency.py [--repeats 7]

For each case a control is flipped between two values; the time runs from the assignment
``control.value = x`` to the moment the explorer assigns the new PNG bytes to its Image widget
(an observer on ``image.value`` stamps it), which it does last, after its caption text. Prints
the median over the repeats, the target (100 ms for n <= 256, 300 ms for n = 1024; 100 ms for
the other explorers, whose figures are small; for the trained-model explorers n is the positions
drawn: 1 + 64 for the attention explorer, a stream of 256 for the cache explorer) and the ratio
median / target (<= 1 meets it), and the ratio to drawing a blank figure to PNG in the same run,
which says how much of the time is matplotlib's fixed cost.
The machine's load average is printed too: on a shared 2-core laptop it moves every number, so
the process's CPU time over the same span is printed next to the wall time ("cpu ms": what
the wall time would be if nothing else were running). "met" judges the wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from matplotlib.figure import Figure

from globattn_lite import plot
from globattn_lite import widgets as W


def latency(explorer, name, values, repeats):
    """Median (wall, CPU) seconds from ``controls[name].value = v`` to the new PNG, cycling through values.

    CPU = this process's CPU time over the same span: what the wall time would be on an idle machine.
    """
    stamps = []
    explorer.image.observe(lambda change: stamps.append((time.perf_counter(), time.process_time())), names="value")
    control = explorer.controls[name]
    times, cpu = [], []
    for i in range(repeats + 1):  # the first change warms caches and is not counted
        value = values[i % len(values)]
        if control.value == value:
            value = values[(i + 1) % len(values)]
        stamps.clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        control.value = value
        if explorer.error is not None:
            raise RuntimeError(f"{explorer.title}: setting {name}={value!r} failed: {explorer.error}")
        if not stamps:
            raise RuntimeError(f"{explorer.title}: setting {name}={value!r} assigned no new image")
        if i:
            times.append(stamps[-1][0] - start)
            cpu.append(stamps[-1][1] - start_cpu)
    return statistics.median(times), statistics.median(cpu)


def blank_figure_seconds(repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fig = Figure(figsize=(6.4, 4.8), dpi=100)
        fig.add_subplot().set_title("blank")
        plot.figure_png(fig)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cases():
    """(explorer name, n or '-', control, values, target seconds, factory)."""
    out = []
    for n in (64, 256, 1024):
        target = 0.1 if n <= 256 else 0.3

        def make(n=n):
            return W.mask_explorer(n=n, family="window + sinks", window=8, global_tokens=4)

        out.append(("mask_explorer", n, "query", [n // 2, n - 1], target, make))
        out.append(("mask_explorer", n, "window", [8, 16], target, make))
        out.append(("mask_explorer", n, "family", ["BigBird", "band + global"], target, make))
    # a repaint of the kept figure, then a control that changes its layout (a new figure each time)
    out.append(("softmax_explorer", 16, "temperature", [1.0, 2.0], 0.1, lambda: W.softmax_explorer(keys=16)))
    out.append(("softmax_explorer", 16, "keys", [16, 17], 0.1, lambda: W.softmax_explorer(keys=16)))
    out.append(("receptive_field_explorer", 64, "layers", [3, 4], 0.1, lambda: W.receptive_field_explorer(n=64)))
    out.append(("receptive_field_explorer", 64, "n", [64, 65], 0.1, lambda: W.receptive_field_explorer(n=64)))
    out.append(("kv_budget_explorer", "-", "tokens", [32768, 65536], 0.1, lambda: W.kv_budget_explorer()))

    # the trained-model explorers: a model forward per new input, precomputed runs per cache step
    def attention():  # band + global token model, 1 + 64 positions
        return W.attention_explorer()

    out.append(("attention_explorer", 65, "layer", [0, 1], 0.1, attention))
    out.append(("attention_explorer", 65, "head", [0, "mean"], 0.1, attention))
    out.append(("attention_explorer", 65, "example", [0, 1], 0.1, attention))  # a new forward each time

    def cache():
        return W.cache_explorer(variant="sink token", policy="window", cache=16)

    out.append(("cache_explorer", 256, "step", [40, 41], 0.1, cache))  # what the Play button moves
    out.append(("cache_explorer", 256, "layer", [0, 1], 0.1, cache))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed changes per case (median reported)")
    args = parser.parse_args()

    blank = blank_figure_seconds(args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cores: {os.cpu_count()}, load average (1 min): {load:.1f}, repeats: {args.repeats}")
    print(f"blank figure to PNG: {blank * 1e3:.0f} ms (median)\n")
    header = (
        f"{'explorer':<26}{'n':>6}  {'control':<12}{'median ms':>10}{'cpu ms':>8}{'target ms':>10}"
        f"{'/ target':>9}{'/ blank':>8}  met"
    )
    print(header)
    print("-" * len(header))
    all_met = True
    for name, n, control, values, target, make in cases():
        seconds, cpu = latency(make(), control, values, args.repeats)
        met = seconds <= target
        all_met &= met
        print(
            f"{name:<26}{n!s:>6}  {control:<12}{seconds * 1e3:>10.0f}{cpu * 1e3:>8.0f}{target * 1e3:>10.0f}"
            f"{seconds / target:>9.2f}{seconds / blank:>8.1f}  {'yes' if met else 'NO'}"
        )
    print("\nall targets met" if all_met else "\nsome targets NOT met (see the rows marked NO)")


if __name__ == "__main__":
    main()
