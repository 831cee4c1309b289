"""Experiment 1, long-range retrieval: causal windows, sinks and a band against one global token,
and how local the dense model's attention is (notebooks 03 and 04)."""

from __future__ import annotations

import time

import numpy as np
import torch

from .. import patterns as P
from .._validate import int_arg
from ..tasks import LongRangeRetrieval
from ..tiny import TinyConfig, TinyTransformer, as_bool_mask
from . import harness as H

NAME = "long_range"

LONG_RANGE = {
    # ONE fact per sequence, so the key asked at the end selects nothing: the model must find the
    # only fact token (positions 2..20 of 128, beyond the reach 2 * 7 = 14 of two band layers) and
    # carry its value to the last position. Several facts with a selecting key: experiment 3.
    "task": dict(n=128, n_keys=16, n_values=16, n_filler=32, fact_start=2, fact_stop=21),
    "model": dict(n_layer=2, n_head=4, d_model=64, positions="learned"),
    "window": 8,  # causal sliding window W (keys including the query)
    "radius": 7,  # bidirectional band radius r
    "sinks": 2,
    "batch": 64,
    # Budget per variant; a variant stops early once it scores >= 99% on a check batch (checked every
    # 100 steps). The global-token variant sits at chance for several hundred steps before it jumps,
    # so the budget must not be cut (see "probes").
    "steps": 1500,
    "lr": 1e-3,
    "warmup": 100,  # linear warm-up steps, then a cosine decay to 0 at "steps"
    "test_size": 2048,
    "second_seed_variant": "band r=7 + 1 global token",  # also trained from seed + 1 and shipped
    # Controls with no path from the fact to the last position (more hops than layers): whatever
    # they learn, their answer cannot depend on the fact. They train on the same schedule for as
    # many steps as the slower global-token run used (not the full budget: CPU time, same treatment).
    "matched_budget": ["causal window W=8", "causal window W=8 + 2 sinks", "band r=7 (control)"],
    # earlier designs and what they measured (recorded in the results file with the rest of the config)
    "probes": [
        "the first shipped design (n=64, batch 32, lr 5e-3 constant, 3,000 steps) ended at 66%, with values "
        "split into solved and collapsed: undertrained",
    ],
}
SECOND_SEED = " (second seed)"  # suffix of the second-seed model's name in checkpoints and results


def long_range_variants(window=8, radius=7, sinks=2) -> dict:
    """``{name: (n_global, Pattern over g + n positions, fact positions [start, stop) or None)}``.

    None = the task's default (after the sinks, far from the end). The "fact in the sinks" variant
    puts the fact inside the first ``sinks`` tokens: what causal sink-style tokens CAN hand out.
    The control prepends the same learnable token as the global variant but keeps it in the band
    (only tokens 1..r see it), so the two differ only in the token's global rows and columns.
    """
    sink_pattern = P.causal() & (P.sliding_window(window) | P.sinks(sinks))
    return {
        "dense causal": (0, P.causal(), None),
        f"causal window W={window}": (0, P.sliding_window(window), None),
        f"causal window W={window} + {sinks} sinks": (0, sink_pattern, None),
        f"causal window W={window} + {sinks} sinks, fact in the sinks": (0, sink_pattern, (0, sinks)),
        f"band r={radius} (control)": (1, P.band(radius), None),
        f"band r={radius} + 1 global token": (1, P.band(radius) | P.global_tokens(1), None),
    }


def configured_variants() -> dict:
    """``long_range_variants`` with the window, radius and sinks of ``LONG_RANGE``."""
    return long_range_variants(LONG_RANGE["window"], LONG_RANGE["radius"], LONG_RANGE["sinks"])


def long_range_runs(seed=0) -> dict:
    """``{model name: (variant, training seed)}``: every variant from ``seed``, and the variant named
    by ``LONG_RANGE["second_seed_variant"]`` once more from ``seed + 1`` (name + SECOND_SEED)."""
    runs = {name: (name, seed) for name in configured_variants()}
    variant = LONG_RANGE["second_seed_variant"]
    runs[variant + SECOND_SEED] = (variant, seed + 1)
    return runs


def long_range_task(fact=None) -> LongRangeRetrieval:
    """The task of ``LONG_RANGE``, with the facts at positions ``fact = (start, stop)`` if given."""
    c = dict(LONG_RANGE["task"])
    if fact is not None:
        c["fact_start"], c["fact_stop"] = fact
    return LongRangeRetrieval(**c)


def _train_run(name, seed=0, quick=False, progress=True, threads=None, stop_at=None):
    """Train model ``name`` of ``long_range_runs(seed)`` on the budget's schedule, for at most
    ``stop_at`` steps (default: the budget); returns ``(model, training log)``. A function of its
    arguments only, so runs can train in parallel processes (``jobs``)."""
    if threads is not None:
        torch.set_num_threads(threads)
    c = LONG_RANGE
    variant, run_seed = long_range_runs(seed)[name]
    g, pattern, fact = configured_variants()[variant]
    task = long_range_task(fact)
    check_ids, check_ans, _ = task.sample(256, H.TEST_SEED - 1)
    torch.manual_seed(run_seed)
    model = TinyTransformer(TinyConfig(task.vocab_size, max_len=task.n + g, n_global=g, **c["model"]))
    mask = pattern.mask(task.n + g)

    def batch_loss(step):
        ids, ans, _ = task.sample(c["batch"], run_seed * 1_000_000 + step)
        return H.classify_loss(model, mask, ids, ans)

    def solved():
        return H.accuracy(model, mask, check_ids, check_ans) >= 0.99

    budget = 20 if quick else c["steps"]
    t0 = time.perf_counter()
    losses, ran = H.train(
        model,
        batch_loss,
        budget if stop_at is None else stop_at,
        c["lr"],
        desc=name,
        progress=progress,
        stop=solved,
        warmup=c["warmup"],
        cosine=True,
        schedule_steps=budget,
    )
    return model, {**H.training_log(losses, ran, time.perf_counter() - t0), "seed": run_seed}


def _train_runs(names, jobs, **kwargs) -> dict:
    """``{name: _train_run(name, **kwargs)}``, in ``jobs`` processes when jobs > 1."""
    if jobs <= 1 or len(names) <= 1:
        return {name: _train_run(name, **kwargs) for name in names}
    import multiprocessing
    from functools import partial

    with multiprocessing.get_context("spawn").Pool(min(jobs, len(names))) as pool:
        return dict(zip(names, pool.map(partial(_train_run, **kwargs), names, chunksize=1), strict=True))


def long_range_measured(config, seed) -> str:
    """The results file's "measured" entry: what the numbers of a run with ``config`` and ``seed`` are."""
    return (
        f"test accuracy on {config['test_size']} fresh sequences (seed {H.TEST_SEED}), overall, per value and "
        "per fact position; the share of predictions that fall on the most predicted value (near 1 = collapsed "
        "onto one answer); (q, k) pairs scored per layer (mask.sum() over the g + n positions, prepended token "
        f"included). Models are trained from seed {seed}, the one marked{SECOND_SEED} from seed {seed + 1}"
    )


def train_long_range(out_dir=H.CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None, jobs=1):
    """Train every model of ``long_range_runs(seed)`` and save checkpoint + results: first the runs
    that can solve the task (each stops once solved), then the ``matched_budget`` controls for as
    many steps as the slower global-token run used. ``jobs`` > 1 trains runs in parallel processes;
    each run is seeded on its own, so the result does not depend on ``jobs``."""
    c = LONG_RANGE
    runs = long_range_runs(seed)
    common = dict(seed=seed, quick=quick, progress=progress, threads=threads)
    first = [name for name, (variant, _) in runs.items() if variant not in c["matched_budget"]]
    done = _train_runs(first[::-1], jobs, **common)  # the global-token runs (listed last) are the slowest
    matched = max(log["steps"] for name, (_, log) in done.items() if runs[name][0] == c["second_seed_variant"])
    done.update(_train_runs([name for name in runs if name not in done], jobs, stop_at=matched, **common))
    models = {name: done[name][0] for name in runs}
    results = {
        **H.meta(NAME, seed, threads),
        "config": c,
        "patterns": {name: str(v[1]) for name, v in configured_variants().items()},
        "training": {name: done[name][1] for name in runs},
        "results": evaluate_long_range(models=models),
        "measured": long_range_measured(c, seed),
        "quick": quick,
    }
    H.save_checkpoint(out_dir, NAME, models, results)
    return results


def _grouped_accuracy(hits, groups, labels) -> list:
    """Mean of ``hits`` over the rows whose group equals each label (None where a label has no row)."""
    return [round(float(hits[groups == g].mean()), 4) if (groups == g).any() else None for g in labels]


@torch.no_grad()
def evaluate_long_range(checkpoint_dir=None, models=None) -> dict:
    """Accuracy of each shipped model on a fixed test set, how it is spread, and what it costs.

    Returns ``{model: {"accuracy", "pairs_per_layer", "n_global", "pattern", "fact_positions",
    "accuracy_per_value" (value 0..n_values-1), "accuracy_per_fact_position" (positions
    fact_start..fact_stop-1), "values_at_least_95" (how many values score >= 95%),
    "top_prediction_share" (share of all answers that are the most predicted value; 1/n_values
    when answers are spread like the truth, near 1 when the model collapsed onto one value)}}``
    plus ``"chance"``. Models are those of ``long_range_runs()``; facts sit at positions 2..20 of
    128 unless the variant says otherwise. An undertrained model shows up as some values near 100%
    and others near 0%; a model that cannot reach the fact scores chance on every value.
    """
    c = LONG_RANGE
    models = models or H.read_models(NAME, checkpoint_dir)
    variants = configured_variants()
    n_values = c["task"]["n_values"]
    out = {"chance": long_range_task().chance}
    for name, (variant, _) in long_range_runs().items():
        g, pattern, fact = variants[variant]
        task = long_range_task(fact)
        ids, ans, pos = task.sample(c["test_size"], H.TEST_SEED)
        mask = pattern.mask(task.n + g)
        pred = H.predictions(models[name], mask, ids)
        hits = pred == ans
        per_value = _grouped_accuracy(hits, ans, range(n_values))
        out[name] = {
            "accuracy": float(hits.mean()),
            "pairs_per_layer": int(mask.sum()),
            "n_global": g,
            "pattern": str(pattern),
            "fact_positions": [task.fact_start, task.fact_stop],
            "accuracy_per_value": per_value,
            "accuracy_per_fact_position": _grouped_accuracy(hits, pos, range(task.fact_start, task.fact_stop)),
            "values_at_least_95": sum(a is not None and a >= 0.95 for a in per_value),
            "top_prediction_share": round(float(np.bincount(pred, minlength=n_values).max() / len(pred)), 4),
        }
    return out


def _md(text: str) -> str:
    """Escape ``|`` so a pattern formula stays in one Markdown table cell."""
    return text.replace("|", "\\|")


def long_range_table(results) -> str:
    """A Markdown table of ``evaluate_long_range()``'s results: one row per model, then chance."""
    lines = [
        "| variant | pattern | fact at | test accuracy | values at >= 95% | pairs scored per layer |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | `{_md(v['pattern'])}` | {v['fact_positions'][0]}..{v['fact_positions'][1] - 1} "
        f"| {100 * v['accuracy']:.1f}% | {v['values_at_least_95']} of {len(v['accuracy_per_value'])} "
        f"| {v['pairs_per_layer']:,} |"
        for k, v in results.items()
        if k != "chance"
    ]
    lines.append(f"| chance | | | {100 * results['chance']:.2f}% | | |")
    return "\n".join(lines)


def long_range_example(variant, model, example=0, tokens=None) -> dict:
    """Test sequence ``example`` of ``evaluate_long_range`` (the variant's task, seed TEST_SEED) under
    the pattern of model ``variant``; scored: the last token (answer: the value of the fact asked for).
    ``tokens``: typed ids instead (answer: the task's own answer if the sequence has one, else None).
    Returns what ``explorer_example`` does."""
    g = model.cfg.n_global
    runs = long_range_runs()  # model name -> (variant, seed): the second-seed model shares a variant
    if variant not in runs:
        raise ValueError(f"variant {variant!r} is not one of the long-range models {list(runs)}")
    _, pattern, fact = configured_variants()[runs[variant][0]]
    task = long_range_task(fact)
    if tokens is None:
        ids, answers, pos = task.sample(LONG_RANGE["test_size"], H.TEST_SEED)
        ids, answer = ids[example : example + 1], int(answers[example])
        p = int(pos[example])  # in the heatmap's coordinates the prepended tokens come first
        about = f"test sequence {example}: fact (token {p}) at key {g + p}, asked by query {g + task.n - 1}"
    else:
        ids = H.typed_tokens(tokens, model.cfg.vocab_size, model.cfg.max_len - g)
        try:
            answer = int(task.brute_force_answer(ids)[0])
            about = "typed tokens: the fact asked for is in the sequence"
        except (StopIteration, RuntimeError):  # no fact token for the key asked at the end
            answer, about = None, "typed tokens: no answer (no fact for the key asked at the end)"
    n = g + ids.shape[1]
    return {"ids": torch.from_numpy(ids), "mask": pattern.mask(n), "query": n - 1, "answer": answer, "about": about}


# ---------------------------------------------------------------- how local is the dense model's attention?


def kept_attention_share(weights, keep) -> torch.Tensor:
    """Share of each query's attention weight that falls on the keys ``keep`` marks:
    ``(weights * keep).sum(-1)``, shape ``weights.shape[:-1]``.

    weights: (..., n, n), each row a softmax (sums to 1); keep: a Pattern or boolean (n, n) mask.
    1 means a sparse attention restricted to ``keep`` would have lost nothing of that row's weight.
    """
    n = weights.shape[-1]
    keep = as_bool_mask(keep, n)
    return (weights * keep).sum(-1)


def top_keys_share(weights, k) -> torch.Tensor:
    """Share of each query's attention weight held by its ``k`` largest weights, wherever those keys
    sit: ``weights.topk(k).values.sum(-1)``. The best any sparse pattern with k keys per query could keep."""
    return weights.topk(min(int_arg("k", k, minimum=1), weights.shape[-1]), dim=-1).values.sum(-1)


@torch.no_grad()
def attention_locality(model, ids, windows, sinks=0, mask=None, queries=None) -> np.ndarray:
    """The "sparse attention weights" assumption, measured: for each causal window W in ``windows``,
    the mean share of each layer's and head's attention weight that falls inside
    ``causal() & (sliding_window(W) | sinks(sinks))``, the keys a window of W plus S sinks keeps.

    The model attends with ``mask`` (default: causal over its g + n positions); ``queries`` picks
    the query positions averaged over (default: all). Returns an array (len(windows), n_layer, n_head).
    """
    n = ids.shape[1] + model.cfg.n_global
    _, weights = model(ids, P.causal() if mask is None else mask, need_weights=True)
    rows = np.arange(n) if queries is None else np.asarray(queries)
    out = []
    for W in windows:
        keep = P.causal() & (P.sliding_window(W) | P.sinks(sinks)) if sinks else P.sliding_window(W)
        out.append([kept_attention_share(w, keep)[:, :, rows].mean(dim=(0, 2)).numpy() for w in weights])
    return np.array(out)


LOCALITY = {"windows": [2, 4, 8, 16, 32, 64], "sinks": 2, "sequences": 256}


@torch.no_grad()
def evaluate_attention_locality(checkpoint_dir=None, models=None) -> dict:
    """Is the dense causal long-range model's attention sparse, and is it local?

    For each W in ``LOCALITY["windows"]``, per layer and head (lists [window][layer][head]):
    ``"window: other queries"`` / ``"window: answer query"``, the share of attention weight inside
    a causal window of W keys plus S sinks (``attention_locality``), and ``"top keys: ..."``, the
    share held by the W + S largest weights wherever they sit (``top_keys_share``: the same key
    budget, chosen by content). "Other queries" are positions n/2 .. n-2; the answer query is the
    last position, which must fetch the fact. Also ``"on the fact"`` [layer][head] (the answer
    query's weight on the fact token) and ``"fact distance"`` [min, max]. Test sequences: the first
    ``LOCALITY["sequences"]`` of experiment 1's test set.
    """
    c, loc = LONG_RANGE, LOCALITY
    model = (models or H.read_models(NAME, checkpoint_dir))["dense causal"]
    task = long_range_task()
    ids, _, pos = task.sample(c["test_size"], H.TEST_SEED)
    ids, pos = torch.from_numpy(ids[: loc["sequences"]]), pos[: loc["sequences"]]
    n, S = task.n, loc["sinks"]
    groups = {"other queries": list(range(n // 2, n - 1)), "answer query": [n - 1]}
    _, weights = model(ids, P.causal(), need_weights=True)  # per layer (B, H, n, n)

    def per_head(share):  # (B, H, n) -> (H,) mean over sequences and the group's queries
        return {g: share[:, :, rows].mean(dim=(0, 2)).numpy() for g, rows in groups.items()}

    out = {f"{kind}: {g}": [] for kind in ("window", "top keys") for g in groups}
    for W in loc["windows"]:
        keep = P.causal() & (P.sliding_window(W) | P.sinks(S))
        kept = [per_head(kept_attention_share(w, keep)) for w in weights]
        top = [per_head(top_keys_share(w, W + S)) for w in weights]
        for g in groups:
            out[f"window: {g}"].append([layer[g] for layer in kept])
            out[f"top keys: {g}"].append([layer[g] for layer in top])
    rows = torch.arange(len(ids))
    on_fact = [w[rows, :, n - 1, torch.from_numpy(pos)].mean(0).numpy() for w in weights]  # (H,) per layer
    return {
        "windows": list(loc["windows"]),
        "sinks": S,
        "sequences": len(ids),
        "n": n,
        **{k: np.round(np.array(v, dtype=float), 4).tolist() for k, v in out.items()},
        "on the fact": np.round(np.array(on_fact, dtype=float), 4).tolist(),
        "fact distance": [int(n - 1 - pos.max()), int(n - 1 - pos.min())],
    }
