"""How dense, local + global and compiled FlexAttention scale with the sequence length on CPU.

Not a test. Prints one table from one run: median forward time of each method, the ratios
dense/local and local/flex, time(N_max) / time(N_max / 2) per method, and the extra peak memory
of one forward call. Setup: B=1, H=4, D=64, fp32, causal window W=256 plus 4 sink tokens, i.e.
``local_global_pattern(256, sinks=4)``; forward only (torch.no_grad()).

    .venv/bin/python benchmarks/attention_scaling.py            # N = 1024 ... 16384, several minutes
    .venv/bin/python benchmarks/attention_scaling.py --quick    # N = 1024 ... 4096, fewer repeats

The three methods:
- dense: ``dense_attention(q, k, v, mask)``, SDPA over all N x N pairs with the N x N bool mask,
  which is built once per N before timing (so dense is timed at its fastest);
- local: ``local_global_attention(q, k, v, 256, sinks=4)``, which builds its small masks in every call;
- flex: ``torch.compile(flex_attention, dynamic=False)`` with a ``create_block_mask`` from the
  pattern's mask_mod; compilation and the block mask are done once per N before timing.

What is measured:
- time: median of --repeats calls (3 for dense at N >= 8192, where one call takes seconds), after
  one untimed warm-up call per method and N (for flex the warm-up is the compilation).
  Threads: 1 by default (--threads). The machine is shared by several workers on 2 cores;
  with 2 threads every parallel region waits for a busy core and loops of small ops suffer most.
- memory: peak resident set size (Linux VmHWM) during ONE forward call minus the resident size
  just before it, in a fresh subprocess per cell (inputs and, for flex, the compiled kernel and
  block mask already exist). glibc is told to serve every allocation above 64 KiB with mmap
  (MALLOC_MMAP_THRESHOLD_) so freed memory is returned and not silently reused. It includes the
  output tensor (N * H * D * 4 bytes).
The machine is shared: quote the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import torch

from globattn_lite.attention import dense_attention, local_global_attention, local_global_pattern

B, H, D, WINDOW, SINKS = 1, 4, 64, 256, 4
METHODS = ("dense", "local", "flex")
MIB = 2**20


def make_inputs(n: int):
    g = torch.Generator().manual_seed(n)
    return tuple(torch.randn(B, H, n, D, generator=g) for _ in range(3))


def make_call(method: str, n: int):
    """A zero-argument function running one forward pass of ``method`` at length n, warmed up."""
    q, k, v = make_inputs(n)
    pattern = local_global_pattern(WINDOW, sinks=SINKS)
    if method == "dense":
        mask = torch.from_numpy(pattern.mask(n))
        call = lambda: dense_attention(q, k, v, mask)  # noqa: E731
    elif method == "local":
        call = lambda: local_global_attention(q, k, v, WINDOW, sinks=SINKS)  # noqa: E731
    else:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        block_mask = create_block_mask(pattern.mask_mod, None, None, n, n, device="cpu")
        flex = torch.compile(flex_attention, dynamic=False)
        call = lambda: flex(q, k, v, block_mask=block_mask)  # noqa: E731
    with torch.no_grad():
        call()  # warm-up (for flex: the compilation)
    return call


def median_time(call, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def memory_probe(method: str, n: int) -> None:
    """Run in a fresh process: print the extra peak RSS (bytes) of one forward call."""
    call = make_call(method, n)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    with torch.no_grad():
        out = call()
    print((_status_kib("VmHWM") - before) * 1024)
    del out


def peak_memory(method: str, n: int) -> float | None:
    """Extra peak RSS of one call in MiB, measured in a subprocess (None if it failed)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", method, str(n), "--threads", str(torch.get_num_threads())],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        print(f"  (memory probe {method} N={n} failed: {result.stderr.strip().splitlines()[-1:]})")
        return None
    return int(result.stdout.strip().splitlines()[-1]) / MIB


def check_agreement(n: int = 1024) -> float:
    """Largest |difference| of local and flex from dense at length n (they compute the same thing)."""
    with torch.no_grad():
        dense = make_call("dense", n)()
        return max(float((make_call(m, n)() - dense).abs().max()) for m in ("local", "flex"))


def dense_fits(n: int) -> bool:
    """The dense path needs at least the N x N bool mask plus fp32 scores for one head batch."""
    need = n * n * (1 + 4 * H)
    avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return need < 0.5 * avail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 4096 and fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per cell (default 7, quick 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--memory-probe", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]))
        return

    sizes = (1024, 2048, 4096) if args.quick else (1024, 2048, 4096, 8192, 16384)
    repeats = args.repeats or (5 if args.quick else 7)
    print(
        f"B={B} H={H} D={D} fp32, causal window {WINDOW} + {SINKS} sinks, forward only, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeats} runs "
        f"(dense: 3 at N >= 8192) after a warm-up; flex compile and create_block_mask excluded"
    )
    print(f"largest |local - dense|, |flex - dense| at N=1024: {check_agreement():.1e}")
    times: dict[tuple[str, int], float] = {}
    mems: dict[tuple[str, int], float | None] = {}
    for n in sizes:
        for method in METHODS:
            if method == "dense" and not dense_fits(n):
                print(f"  dense skipped at N={n}: not enough free memory")
                continue
            runs = 3 if (method == "dense" and n >= 8192) else repeats
            times[method, n] = median_time(make_call(method, n), runs)
            if not args.no_memory:
                mems[method, n] = peak_memory(method, n)

    def ms(key):
        return f"{times[key] * 1e3:9.1f}" if key in times else f"{'-':>9}"

    def ratio(a, b):
        return f"{times[a] / times[b]:7.1f}x" if a in times and b in times else f"{'-':>8}"

    def mib(key):
        value = mems.get(key)
        return f"{value:8.0f}" if value is not None else f"{'-':>8}"

    print()
    print("time in ms (median); memory = extra peak RSS of one call in MiB")
    print(
        f"{'N':>6} | {'dense':>9} {'local':>9} {'flex':>9} | {'dense/local':>11} {'local/flex':>10} "
        f"| {'mem dense':>9} {'mem local':>9} {'mem flex':>9}"
    )
    for n in sizes:
        dense, local, flex = ("dense", n), ("local", n), ("flex", n)
        print(
            f"{n:>6} | {ms(dense)} {ms(local)} {ms(flex)} | {ratio(dense, local):>11} {ratio(local, flex):>10} "
            f"| {mib(dense):>9} {mib(local):>9} {mib(flex):>9}"
        )
    top, half = sizes[-1], sizes[-2]
    print()
    print(f"time({top}) / time({half}) per method (linear = 2, quadratic = 4):")
    for method in METHODS:
        print(f"  {method:>5}: {ratio((method, top), (method, half)).strip()}")
    if not args.no_memory:
        print(f"memory({top}) / memory({half}) per method:")
        for method in METHODS:
            a, b = mems.get((method, top)), mems.get((method, half))
            print(f"  {method:>5}: {a / b:.1f}x" if a and b else f"  {method:>5}: -")
    if 8192 in sizes and 16384 in sizes:
        print_targets(times, mems)


def print_targets(times, mems) -> None:
    """The targets of the issue, each with the number from this run."""

    def verdict(ok):
        return "met" if ok else "MISSED"

    def line(text, value, ok):
        print(f"  {text:<48} {value:>7}  {verdict(ok) if value != '-' else 'not measured'}")

    get = lambda m, n: times.get((m, n))  # noqa: E731
    print("targets:")
    if get("dense", 8192) and get("local", 8192):
        r = get("dense", 8192) / get("local", 8192)
        line("N=8192: local >= 10x faster than dense", f"{r:.1f}x", r >= 10)
    if get("flex", 8192) and get("local", 8192):
        r = get("local", 8192) / get("flex", 8192)
        line("N=8192: local within 1.5x of compiled flex", f"{r:.2f}x", r <= 1.5)
    if get("local", 16384) and get("local", 8192):
        r = get("local", 16384) / get("local", 8192)
        line("local time(16384) / time(8192) <= 2.4", f"{r:.2f}x", r <= 2.4)
    a, b = mems.get(("local", 16384)), mems.get(("local", 8192))
    if a and b:
        line("local memory linear: mem(16384) / mem(8192) <= 2.4", f"{a / b:.2f}x", a / b <= 2.4)


if __name__ == "__main__":
    main()
