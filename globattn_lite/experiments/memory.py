"""Experiment 3, a fixed-size global memory: k facts through g global tokens (one model with nested
slots), and the question token global instead (notebook 06)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.nn import functional as F

from .. import patterns as P
from .._validate import int_arg
from ..tasks import ManyFacts
from ..tiny import TinyConfig, TinyTransformer
from . import harness as H

NAME = "memory"

MEMORY = {
    "task": dict(n_keys=8, n_values=8, n_filler=16),
    "model": dict(n_layer=2, n_head=4, d_model=32, positions="learned"),
    "radius": 1,  # band radius over the real tokens
    "slots": 8,  # prepended global slots S; g of them are active
    "globals": [0, 1, 2, 4, 8],  # evaluated g
    "ks": [1, 2, 4, 8],
    # length curriculum: (n, margin, steps, g drawn from); margin >= n_layer * radius keeps the facts
    # out of the band's reach from the last token
    "stages": [
        dict(n=16, margin=6, steps=800, globals=[8]),
        dict(n=32, margin=8, steps=600, globals=[1, 2, 4, 8]),
        dict(n=64, margin=16, steps=3000, globals=[1, 2, 4, 8]),
    ],
    "batch": 64,
    "lr": 5e-3,  # AdamW (weight decay 0.01), 50 warm-up steps, grad-norm clip 1.0 (see harness.train)
    "test_size": 512,  # per k, at the last stage's length
    # the Longformer QA practice for comparison: no slots, the question token itself global
    # (band r=1 | global_positions([n - 1])), same model size, trained at n=64 from scratch
    "question_steps": 1200,
    "usage_ks": [2, 8],  # k at which memory_slot_usage switches slots off one at a time
    # the evidence behind the design: throw-away probes, then the shipped run (recorded in the
    # results file with the rest of the config)
    "probes": [
        "setting of the probes: seed 0, 2 layers, 4 heads, batch 64, lr 5e-3, band r=1; accuracy on 512 test "
        "sequences per k, so about +/-2 points",
        "one model per g, trained from scratch at n=64, stayed at chance (loss ln 8) for every change tried "
        "(lr 2e-3 and 1e-2, longer warm-up, k=1 first, one filler token, n=32 with r=2; 1,000-3,000 steps): "
        "routing a fact through a global token takes two attention hops and that plateau outlasted the CPU "
        "budget. Dense attention (same model) learned at once. A warm start from experiment 1 learned, but "
        "g=1, 2, 4 scored the same (59-66% at k=1)",
        "fewer tokens to average make the route findable: at n=16 a g=1 model left chance after ~500 steps, "
        "and a length curriculum n = 16 -> 32 -> 64 carried it over to n=64. Per-g models with the same "
        "schedule were still a lottery (g=4 learned, g=1 did not), hence ONE model with nested slots",
        "every probe model that learned (<= 3,400 steps) stored about one fact whatever g was. ETC-style "
        "partitions (global j reads segment j only) gave a 3-6 point g effect at 4 keys x 4 values that "
        "vanished in an 8,000-step rerun",
        "speed: one step (d_model 64, n=64, batch 64) took 41 ms with 2 torch threads and 57 ms with 1 (load ~3)",
        "the shipped run (4,400 steps; memory.json records its time and load) is flat in g again, but above the "
        "one-fact curve 1/k + (1 - 1/k)/n_values: the memory keeps about two facts",
    ],
}


def memory_task(stage) -> ManyFacts:
    """The task of ``MEMORY`` at curriculum stage ``stage`` (its length n and margin)."""
    return ManyFacts(n=stage["n"], margin=stage["margin"], **MEMORY["task"])


def memory_pattern(g, radius):
    """band(radius) | global_tokens(g) over g + n positions (band only when g = 0)."""
    return P.band(radius) | P.global_tokens(g) if g else P.band(radius)


def memory_mask(g, n, slots=None, radius=None) -> np.ndarray:
    """Mask over ``slots + n`` positions with the first ``g`` slots active.

    The active slots and the real tokens follow ``memory_pattern(g, radius)`` over g + n positions
    (real token i sits at slots + i); an inactive slot attends only to itself and nobody reads it, so
    the model behaves exactly like one with g prepended global tokens.
    """
    S = MEMORY["slots"] if slots is None else slots
    int_arg("g", g, minimum=0, maximum=S)
    return active_slots_mask(range(g), n, slots=S, radius=radius)


def active_slots_mask(active, n, slots=None, radius=None) -> np.ndarray:
    """Like ``memory_mask``, but with any set of slots active (``active``: distinct slot indices).

    ``memory_mask(g, n)`` is ``active_slots_mask(range(g), n)``; switching slot j off is
    ``active_slots_mask([i for i in range(S) if i != j], n)``.
    """
    S = MEMORY["slots"] if slots is None else slots
    r = MEMORY["radius"] if radius is None else radius
    active = [int_arg("active slot", j, minimum=0, maximum=S - 1) for j in active]
    if len(set(active)) != len(active):
        raise ValueError(f"active slots must be distinct, got {active}")
    int_arg("n", n, minimum=1)
    g = len(active)
    small = memory_pattern(g, r).mask(g + n)
    keep = np.r_[np.array(sorted(active), dtype=int), np.arange(S, S + n)]  # where the g + n positions sit
    m = np.zeros((S + n, S + n), dtype=bool)
    m[np.ix_(keep, keep)] = small
    inactive = np.setdiff1d(np.arange(S), active)
    m[inactive, inactive] = True
    return m


def question_global_pattern(n, radius=None):
    """The Longformer QA practice on the memory task: band(radius) | the question token (last, n - 1) global."""
    r = MEMORY["radius"] if radius is None else radius
    return P.band(r) | P.global_positions([int_arg("n", n, minimum=1) - 1])


def memory_measured(config, seed) -> str:
    """The results file's "measured" entry: what the numbers of a run with ``config`` are (``seed``
    is named in the file's "seed" entry)."""
    S, n = config["slots"], config["stages"][-1]["n"]
    return (
        f"accuracy[g][k] of the one nested-slot model with the first g of {S} slots active, on {config['test_size']} "
        f"fresh sequences (n={n}) per k (seeds {H.TEST_SEED}+k); cost per g: (q, k) pairs scored per layer = "
        f"mask.sum() over the g + n positions (band r={config['radius']} | global_tokens(g); inactive slots excluded) "
        "and KV entries g + n; dense = n**2 pairs over the n real tokens. 'question_global': a second model of the "
        "same size without slots, the question token (position n - 1) global, on the same test sequences. "
        f"slot_usage: the nested model with all {S} slots active, then with each slot switched off, then with "
        "each slot alone, at k in usage_ks; similarity = mean over test sequences of the cosine between two "
        "slots' states after layer 1, each minus its mean over the test sequences"
    )


def train_memory(out_dir=H.CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None):
    """One model with S prepended global slots, trained with a random number g of them active per step.

    Why nested slots: one model per g trained from scratch mostly never left chance (see
    ``MEMORY["probes"]``). Here every g shares one set of weights, the first g slots are active
    (``memory_mask``), and a length curriculum n = 16 -> 32 -> 64 finds the route through the global
    tokens (all 8 slots active at n=16, g drawn from {1, 2, 4, 8} after that). k (facts per sequence)
    is drawn from ``ks`` each step.

    A second model of the same size, "question global", has no slots: the question token itself is
    global (``question_global_pattern``, Longformer's QA practice), trained ``question_steps`` at n=64.
    """
    c = MEMORY
    stages = [dict(s, steps=8 if quick else s["steps"]) for s in c["stages"]]
    final = memory_task(stages[-1])
    torch.manual_seed(seed)
    model = TinyTransformer(
        TinyConfig(final.vocab_size, max_len=final.n + c["slots"], n_global=c["slots"], **c["model"])
    )
    ends = np.cumsum([s["steps"] for s in stages])
    tasks = [memory_task(s) for s in stages]

    def batch_loss(step):
        i = int(np.searchsorted(ends, step, side="right"))
        stage, task = stages[i], tasks[i]
        s = seed * 1_000_000 + step
        rng = np.random.default_rng(s)
        k = c["ks"][rng.integers(len(c["ks"]))]
        g = stage["globals"][rng.integers(len(stage["globals"]))]
        ids, ans = task.sample(c["batch"], min(k, task.n - 1 - task.margin), s)
        return H.classify_loss(model, memory_mask(g, task.n), ids, ans)

    t0 = time.perf_counter()
    losses, ran = H.train(model, batch_loss, int(ends[-1]), c["lr"], desc="memory (nested g)", progress=progress)
    train_log = {**H.training_log(losses, ran, time.perf_counter() - t0), "parameters": model.num_params()}

    # the comparison: the question token global instead of slots (Longformer's QA practice)
    torch.manual_seed(seed)
    question = TinyTransformer(TinyConfig(final.vocab_size, max_len=final.n, **c["model"]))
    question_mask = question_global_pattern(final.n).mask(final.n)

    def question_loss(step):
        s = seed * 1_000_000 + 500_000 + step  # batches apart from the nested model's
        k = c["ks"][np.random.default_rng(s).integers(len(c["ks"]))]
        ids, ans = final.sample(c["batch"], k, s)
        return H.classify_loss(question, question_mask, ids, ans)

    t0 = time.perf_counter()
    q_steps = 8 if quick else c["question_steps"]
    losses, ran = H.train(question, question_loss, q_steps, c["lr"], desc="memory (question global)", progress=progress)
    question_log = {**H.training_log(losses, ran, time.perf_counter() - t0), "parameters": question.num_params()}

    models = {"nested": model, "question global": question}
    config = {**c, "stages": stages, "question_steps": q_steps}
    results = {
        **H.meta(NAME, seed, threads),
        "config": config,
        "training": train_log,
        "training_question_global": question_log,
        "results": evaluate_memory(models=models),
        "slot_usage": memory_slot_usage(models=models, test_size=64 if quick else None),
        "measured": memory_measured(config, seed),
        "quick": quick,
    }
    H.save_checkpoint(out_dir, NAME, models, results)
    return results


@torch.no_grad()
def evaluate_memory(checkpoint_dir=None, models=None) -> dict:
    """Accuracy of the shipped nested-slot model for each (g, k), and the cost of each g.

    Returns ``{"globals", "ks", "n", "chance", "one_fact": [1/k + (1 - 1/k)/n_values for k in ks],
    "accuracy": [[acc for k in ks] for g in globals], "pairs_per_layer": [...], "kv_entries": [g + n, ...],
    "dense_pairs_per_layer": n**2, "question_global": {"pattern", "accuracy": [per k], "pairs_per_layer",
    "kv_entries"}}``. The one-fact curve is what a memory holding one of the k facts scores.
    """
    c = MEMORY
    task = memory_task(c["stages"][-1])
    models = models or H.read_models(NAME, checkpoint_dir)
    model = models["nested"]
    tests = {k: task.sample(c["test_size"], k, H.TEST_SEED + k) for k in c["ks"]}
    acc, pairs, kv = [], [], []
    for g in c["globals"]:
        mask = memory_mask(g, task.n)
        acc.append([H.accuracy(model, mask, *tests[k]) for k in c["ks"]])
        pairs.append(int(memory_pattern(g, c["radius"]).mask(g + task.n).sum()))
        kv.append(g + task.n)
    question = question_global_pattern(task.n)
    nv = c["task"]["n_values"]
    return {
        "globals": list(c["globals"]),
        "ks": list(c["ks"]),
        "n": task.n,
        "chance": task.chance,
        "one_fact": [1 / k + (1 - 1 / k) / nv for k in c["ks"]],
        "accuracy": acc,
        "pairs_per_layer": pairs,
        "dense_pairs_per_layer": task.n**2,
        "kv_entries": kv,
        "question_global": {
            "pattern": str(question),
            "accuracy": [H.accuracy(models["question global"], question, *tests[k]) for k in c["ks"]],
            "pairs_per_layer": question.num_pairs(task.n),
            "kv_entries": task.n,
        },
    }


@torch.no_grad()
def memory_slot_usage(checkpoint_dir=None, models=None, ks=None, test_size=None) -> dict:
    """Does the nested model use its 8 slots as extra room, or as copies of one another?

    With all S slots active, measure accuracy at each k in ``ks`` (default ``MEMORY["usage_ks"]``)
    with every slot on, with slot j switched off (``without[j]``), and with slot j alone (``only[j]``);
    and ``similarity[i][j]``: the cosine between slots i and j's states after layer 1, each minus its
    mean over the test sequences (the part that depends on the sequence), averaged over the test
    sequences of the last k in ``ks``. Copies: ``without`` stays at ``all``, every ``only`` is close to it,
    similarity near 1. Extra room: switching one slot off costs accuracy, similarity well below 1.
    """
    c = MEMORY
    task = memory_task(c["stages"][-1])
    model = (models or H.read_models(NAME, checkpoint_dir))["nested"]
    S, n = model.cfg.n_global, task.n
    ks = [int_arg("k", k, minimum=1, maximum=task.n_keys) for k in (c["usage_ks"] if ks is None else ks)]
    size = c["test_size"] if test_size is None else int_arg("test_size", test_size, minimum=1)
    tests = {k: task.sample(size, k, H.TEST_SEED + k) for k in ks}

    def accuracy(active):
        mask = active_slots_mask(active, n, slots=S)
        return [H.accuracy(model, mask, *tests[k]) for k in ks]

    everyone = list(range(S))
    ids = torch.from_numpy(tests[ks[-1]][0])
    pos = torch.arange(S + n)
    state, _ = model.blocks[0](model.embed(ids, pos), torch.from_numpy(active_slots_mask(everyone, n, slots=S)), pos)
    part = state[:, :S] - state[:, :S].mean(0, keepdim=True)  # (B, S, d): what depends on the sequence
    unit = F.normalize(part, dim=-1)
    similarity = torch.einsum("bid,bjd->ij", unit, unit) / len(ids)
    return {
        "ks": ks,
        "slots": S,
        "all": accuracy(everyone),
        "without": [accuracy([i for i in everyone if i != j]) for j in everyone],
        "only": [accuracy([j]) for j in everyone],
        "similarity": [[round(float(x), 4) for x in row] for row in similarity],
    }


def memory_table(results) -> str:
    """A Markdown table of ``evaluate_memory()``'s results: accuracy per g (rows) and k (columns)
    with each g's cost, the one-fact curve, and the question-global model."""
    r = results
    lines = [
        "| g | " + " | ".join(f"k={k}" for k in r["ks"]) + " | pairs per layer | KV entries |",
        "|---|" + "---|" * (len(r["ks"]) + 2),
    ]
    for g, accs, pairs, kv in zip(r["globals"], r["accuracy"], r["pairs_per_layer"], r["kv_entries"], strict=True):
        lines.append(f"| {g} | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + f" | {pairs:,} | {kv} |")
    lines.append("| one-fact curve | " + " | ".join(f"{100 * a:.1f}%" for a in r["one_fact"]) + " | | |")
    q = r["question_global"]
    lines.append(
        "| no slots, question token global | "
        + " | ".join(f"{100 * a:.1f}%" for a in q["accuracy"])
        + f" | {q['pairs_per_layer']:,} | {q['kv_entries']} |"
    )
    lines.append(
        f"chance {100 * r['chance']:.1f}%; dense pairs per layer over the {r['n']} tokens "
        f"{r['dense_pairs_per_layer']:,}"
    )
    return "\n".join(lines)
