"""Tiny-model experiments on global tokens: train, save checkpoints, evaluate them again.

    python -m globattn_lite.experiments long_range   # 1. window vs global tokens on long-range retrieval
    python -m globattn_lite.experiments streaming    # 2. StreamingLLM at toy scale: sinks and KV eviction
    python -m globattn_lite.experiments memory       # 3. k facts through g global tokens (one nested-slot model)
    (add --quick for a few-step smoke run written to a temporary folder)

Training writes ``checkpoints/<name>.pt`` (float16 state dicts) and ``checkpoints/<name>.json``
(the measured numbers, configs, steps, seed, torch version). Notebooks call
``evaluate_<name>()``, which loads the shipped checkpoint and recomputes the numbers in seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import patterns as P
from ._validate import choice_arg, int_arg
from .tasks import LongRangeRetrieval, ManyFacts, MarkovSource
from .tiny import KVCache, TinyConfig, TinyTransformer

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
EXPERIMENTS = ("long_range", "streaming", "memory")
TEST_SEED = 10_000  # test batches use seeds from here; training uses seeds below it


# ---------------------------------------------------------------- training and checkpoints


def train(model, batch_loss, steps, lr=2e-3, desc="train", progress=True, stop=None, check_every=100):
    """AdamW with a short linear warm-up. ``batch_loss(step) -> loss`` builds the step's batch.

    ``stop()`` (optional) is called every ``check_every`` steps; training ends early when it
    returns True. Returns ``(losses, steps_run)``.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    losses = []
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        loss = batch_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if stop is not None and (step + 1) % check_every == 0:
            model.eval()
            done = stop()
            model.train()
            if done:
                break
    model.eval()
    return losses, len(losses)


def save_checkpoint(out_dir, name, models: dict, results: dict):
    """Write ``<name>.pt`` (config + float16 state dict per model) and ``<name>.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = {
        key: {"config": m.cfg.to_dict(), "state": {k: v.half() for k, v in m.state_dict().items()}}
        for key, m in models.items()
    }
    torch.save(blob, out_dir / f"{name}.pt")
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")


def load_models(name, checkpoint_dir=None) -> dict:
    """The shipped models of experiment ``name`` as ``{variant: TinyTransformer}`` (float32, eval mode)."""
    choice_arg("name", name, set(EXPERIMENTS))
    path = Path(checkpoint_dir or CHECKPOINT_DIR) / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint {path}; train it with: python -m globattn_lite.experiments {name}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    models = {}
    for key, entry in blob.items():
        m = TinyTransformer(TinyConfig(**entry["config"]))
        m.load_state_dict({k: v.float() for k, v in entry["state"].items()})
        models[key] = m.eval()
    return models


def load_results(name, checkpoint_dir=None) -> dict:
    """The results JSON written by the training run of experiment ``name``."""
    choice_arg("name", name, set(EXPERIMENTS))
    return json.loads((Path(checkpoint_dir or CHECKPOINT_DIR) / f"{name}.json").read_text())


def _meta(name, seed, threads):
    return {
        "experiment": name,
        "seed": seed,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": threads,
        "command": f"python -m globattn_lite.experiments {name} --seed {seed} --threads {threads}",
        # CPU contention behind train_seconds (os.getloadavg is POSIX-only: None on Windows)
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _training_log(losses, ran, seconds):
    """What a results file records of one training run: steps, time, final loss, a loss curve."""
    return {
        "steps": ran,
        "train_seconds": round(seconds, 1),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "loss_every_100": [round(float(np.mean(losses[j : j + 100])), 4) for j in range(0, ran, 100)],
    }


def _classify_loss(model, mask, ids, answers):
    logits = model(torch.from_numpy(ids), mask)[:, -1]
    return F.cross_entropy(logits, torch.from_numpy(answers))


@torch.no_grad()
def _accuracy(model, mask, ids, answers, chunk=512):
    hits = 0
    for i in range(0, len(ids), chunk):
        logits = model(torch.from_numpy(ids[i : i + chunk]), mask)[:, -1]
        hits += int((logits.argmax(-1).numpy() == answers[i : i + chunk]).sum())
    return hits / len(ids)


# ---------------------------------------------------------------- 1. long-range retrieval

LONG_RANGE = {
    "task": dict(n=64, n_keys=16, n_values=16, n_filler=32, fact_start=2, fact_stop=10),
    "model": dict(n_layer=2, n_head=4, d_model=64, positions="learned"),
    "window": 8,  # causal sliding window W (keys including the query)
    "radius": 7,  # bidirectional band radius r
    "sinks": 2,
    "batch": 32,
    # Budget per variant; a variant stops early once it scores >= 99% on a check batch. With seed 0
    # the global-token variant sits at chance for ~1,300 steps, then jumps (to 66% by step 3,000).
    # The jump is fragile at this scale: in probes with the same data, lr 2e-3 (1,600 steps), a
    # cosine schedule, or 2 or 4 global tokens had not left chance within 2,600-3,000 steps.
    "steps": 3000,
    "lr": 5e-3,
    "test_size": 1024,
}


def long_range_variants(window=8, radius=7, sinks=2) -> dict:
    """``{name: (n_global, Pattern over g + n positions, fact positions [start, stop) or None)}``.

    None = the task's default (after the sinks, far from the end). The "fact in the sinks" variant
    puts the fact inside the first ``sinks`` tokens: what causal sink-style tokens CAN hand out.
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


def _long_range_task(fact):
    c = dict(LONG_RANGE["task"])
    if fact is not None:
        c["fact_start"], c["fact_stop"] = fact
    return LongRangeRetrieval(**c)


def train_long_range(out_dir=CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None):
    c = LONG_RANGE
    steps = 20 if quick else c["steps"]
    models, train_log = {}, {}
    for name, (g, pattern, fact) in long_range_variants(c["window"], c["radius"], c["sinks"]).items():
        task = _long_range_task(fact)
        check_ids, check_ans, _ = task.sample(256, TEST_SEED - 1)
        torch.manual_seed(seed)
        model = TinyTransformer(TinyConfig(task.vocab_size, max_len=task.n + g, n_global=g, **c["model"]))
        mask = pattern.mask(task.n + g)

        def batch_loss(step, model=model, mask=mask, task=task):
            ids, ans, _ = task.sample(c["batch"], seed * 1_000_000 + step)
            return _classify_loss(model, mask, ids, ans)

        def solved(model=model, mask=mask, check_ids=check_ids, check_ans=check_ans):
            return _accuracy(model, mask, check_ids, check_ans) >= 0.99

        t0 = time.perf_counter()
        losses, ran = train(model, batch_loss, steps, c["lr"], desc=name, progress=progress, stop=solved)
        train_log[name] = _training_log(losses, ran, time.perf_counter() - t0)
        models[name] = model
    results = {
        **_meta("long_range", seed, threads),
        "config": c,
        "patterns": {name: str(v[1]) for name, v in long_range_variants(c["window"], c["radius"], c["sinks"]).items()},
        "training": train_log,
        "results": evaluate_long_range(models=models),
        "measured": "test accuracy on 1024 fresh sequences (seed 10000) and (q, k) pairs scored per layer "
        "(mask.sum() over the g + n positions, prepended global token included)",
        "quick": quick,
    }
    save_checkpoint(out_dir, "long_range", models, results)
    return results


@torch.no_grad()
def evaluate_long_range(checkpoint_dir=None, models=None) -> dict:
    """Accuracy of each shipped variant on a fixed test set, and what it costs.

    Returns ``{variant: {"accuracy", "pairs_per_layer", "n_global", "pattern", "fact_positions"}}``
    plus ``"chance"``. Facts sit at positions [2, 10) of 64 unless the variant says otherwise.
    """
    c = LONG_RANGE
    models = models or load_models("long_range", checkpoint_dir)
    out = {"chance": _long_range_task(None).chance}
    for name, (g, pattern, fact) in long_range_variants(c["window"], c["radius"], c["sinks"]).items():
        task = _long_range_task(fact)
        ids, ans, _ = task.sample(c["test_size"], TEST_SEED)
        mask = pattern.mask(task.n + g)
        out[name] = {
            "accuracy": _accuracy(models[name], mask, ids, ans),
            "pairs_per_layer": int(mask.sum()),
            "n_global": g,
            "pattern": str(pattern),
            "fact_positions": [task.fact_start, task.fact_stop],
        }
    return out


# ---------------------------------------------------------------- 2. streaming and attention sinks

STREAMING = {
    "source": dict(vocab_size=16, alpha=0.06, seed=3),  # true perplexity exp(H) = 2.31
    "model": dict(n_layer=3, n_head=4, d_model=64, positions="rotary"),
    "train_len": 64,  # positions per training window; the sink token takes the first (StreamingLLM 3.3)
    "batch": 32,
    # Measured with this design: 1,600 steps gave a sink of about 30% of layer 0's attention only, and evicting
    # it cost 8% (seed 0) and 1.5% (seed 1) with a 64-entry cache; 2,400 steps (shipped) changed little
    # (see streaming.json). A throw-away study with the same recipe had reported x2.1-2.6: not reproduced.
    "steps": 2400,
    "lr": 2e-3,
    "train_stream": (64, 8192),  # (streams, length) the 64-token training windows are cropped from
    "test_streams": 4,
    "test_len": 1024,
    "caches": [64, 16],  # KV entries kept by the eviction policies (prepended sink token included)
    "stream_sinks": 4,  # first tokens kept by "sinks + recent" for the model without a sink token
    "extra_seeds": [1],  # trained too, numbers recorded in the results file (the checkpoint ships `seed`)
}


def _lm_nll(model, ids):
    """Per-token next-token NLL (B, n-1) under a causal mask."""
    n = ids.shape[1] + model.cfg.n_global
    logits = model(ids, P.causal().mask(n))
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")


def _train_streaming_models(seed, steps, progress=True):
    """The two models of experiment 2 trained with ``seed``: ``({name: model}, {name: training log})``."""
    c = STREAMING
    src = MarkovSource(**c["source"])
    streams = torch.from_numpy(src.sample(*c["train_stream"], seed=seed + 1))
    models, train_log = {}, {}
    for name, g in (("no sink token", 0), ("sink token", 1)):
        torch.manual_seed(seed)
        model = TinyTransformer(TinyConfig(src.vocab_size, n_global=g, **c["model"]))

        def batch_loss(step, model=model, g=g):
            rng = np.random.default_rng(seed * 1_000_000 + step)
            rows = rng.integers(0, streams.shape[0], c["batch"])
            starts = rng.integers(0, streams.shape[1] - c["train_len"] + 1, c["batch"])
            ids = torch.stack([streams[r, s : s + c["train_len"]] for r, s in zip(rows, starts)])
            return _lm_nll(model, ids[:, g:]).mean()  # the sink token replaces the window's first slot

        t0 = time.perf_counter()
        losses, ran = train(model, batch_loss, steps, c["lr"], desc=f"{name} (seed {seed})", progress=progress)
        train_log[name] = _training_log(losses, ran, time.perf_counter() - t0)
        models[name] = model
    return models, train_log


def _streaming_other_seed(seed, steps, threads):
    """Train and evaluate experiment 2 with another seed (run in a worker process): its numbers only."""
    if threads is not None:
        torch.set_num_threads(threads)
    models, log = _train_streaming_models(seed, steps, progress=False)
    return {"training": log, "results": evaluate_streaming(models=models)}


def train_streaming(out_dir=CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None):
    """Train both models with ``seed`` (shipped) and again with each of ``STREAMING["extra_seeds"]``
    (only their numbers are recorded, under ``"other_seeds"``: a check that the effect is not one seed's luck).

    The extra seeds train at the same time in worker processes, each with ``threads`` torch threads.
    """
    c = STREAMING
    steps = 20 if quick else c["steps"]
    extra = [s for s in c["extra_seeds"] if s != seed]
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state forked
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, len(extra)), mp_context=spawn) as pool:
        pending = {s: pool.submit(_streaming_other_seed, s, steps, threads) for s in extra}
        models, train_log = _train_streaming_models(seed, steps, progress)
        others = {str(s): job.result() for s, job in pending.items()}
    results = {
        **_meta("streaming", seed, threads),
        "config": c,
        "training": train_log,
        "results": evaluate_streaming(models=models),
        "other_seeds": others,
        "measured": f"perplexity exp(mean NLL) of tokens 1..{c['test_len'] - 1} of {c['test_streams']} test "
        f"streams (seed {TEST_SEED}) under each cache policy (caches of {c['caches']} entries, the sink token "
        "included, positions renumbered inside the cache); 'dense within training length' predicts tokens "
        f"inside independent {c['train_len']}-position chunks (the sink token in the first slot for the sink model); "
        "attention mass = mean weight (over heads, and queries 4.. of those chunks) on key 0 "
        "(the sink token for the sink model, the first real token otherwise) and on the first 4 keys; "
        "other_seeds: the same run with another seed (training data and initialisation), models not shipped",
        "quick": quick,
    }
    save_checkpoint(out_dir, "streaming", models, results)
    return results


@torch.no_grad()
def stream_nll(model, ids, policy, cache=64, sinks=0) -> torch.Tensor:
    """Per-token NLL (B, T-1) of predicting ids[:, 1:] while streaming ``ids`` (B, T) through ``model``.

    policy: "dense" (one forward over the whole stream, positions 0..T-1 (+g)),
            "window" (KV cache of the last ``cache`` entries),
            "sinks" (KV cache: the first ``sinks`` entries ever added + the most recent ones, ``cache`` in all),
            "recompute" (for each token, a fresh forward over the last ``cache`` entries).
    The model's prepended sink/global tokens count as cache entries and enter the cache first.
    """
    choice_arg("policy", policy, {"dense", "window", "sinks", "recompute"})
    g = model.cfg.n_global
    B, T = ids.shape
    if policy == "dense":
        return _lm_nll(model, ids)
    if policy == "recompute":
        C = cache - g  # real tokens in each window
        if T <= C:
            return _lm_nll(model, ids)
        first = _lm_nll(model, ids[:, :C])  # predictions of tokens 1..C-1 see the whole prefix
        windows = ids.unfold(1, C, 1)  # (B, T-C+1, C): window ending at token t predicts t+1
        x = windows[:, :-1].reshape(-1, C)
        mask = P.causal().mask(C + g)
        logits = torch.cat([model(x[i : i + 256], mask)[:, -1] for i in range(0, len(x), 256)]).view(B, T - C, -1)
        rest = F.cross_entropy(logits.transpose(1, 2), ids[:, C:], reduction="none")
        return torch.cat([first, rest], dim=1)
    kv = KVCache(model.cfg.n_layer, size=cache, sinks=sinks if policy == "sinks" else 0)
    for j in range(g):  # the prepended tokens go in first (position 0..g-1)
        model.step(model.globals[j].expand(B, -1), kv)
    nll = []
    for t in range(T - 1):
        logits = model.step(model.tok(ids[:, t]), kv)
        nll.append(F.cross_entropy(logits, ids[:, t + 1], reduction="none"))
    return torch.stack(nll, dim=1)


@torch.no_grad()
def attention_mass(model, ids, first=4, skip=4) -> dict:
    """Mean attention weight per layer (averaged over heads and queries ``skip..``) on key 0, on the
    first ``first`` keys, and on the query itself and the 2 keys before it. ids: (B, n) windows."""
    n = ids.shape[1] + model.cfg.n_global
    _, weights = model(ids, P.causal().mask(n), need_weights=True)
    out = {"key 0": [], f"first {first} keys": [], "self + 2 previous": []}
    for w in weights:  # (B, H, n, n)
        w = w[:, :, skip:]
        out["key 0"].append(round(float(w[..., 0].mean()), 4))
        out[f"first {first} keys"].append(round(float(w[..., :first].sum(-1).mean()), 4))
        local = sum(w.diagonal(offset=skip - d, dim1=-2, dim2=-1).mean() for d in range(3))
        out["self + 2 previous"].append(round(float(local), 4))
    return out


@torch.no_grad()
def evaluate_streaming(checkpoint_dir=None, models=None) -> dict:
    """Perplexity of each model under each cache policy on long test streams, and where attention goes.

    Returns ``{"floor_ppl", "true_model_ppl", model: {"ppl": {policy: value}, "attention_mass": {...}}}``.
    """
    c = STREAMING
    src = MarkovSource(**c["source"])
    models = models or load_models("streaming", checkpoint_dir)
    ids_np = src.sample(c["test_streams"], c["test_len"], seed=TEST_SEED)
    ids = torch.from_numpy(ids_np)
    L = c["train_len"]
    chunks = ids.reshape(-1, L)  # independent 64-token windows
    out = {
        "floor_ppl": round(math.exp(src.entropy_rate()), 4),
        "true_model_ppl": round(float(np.exp(src.nll(ids_np).mean())), 4),
        "caches": list(c["caches"]),
        "test_len": c["test_len"],
        "train_len": L,
    }
    for name, model in models.items():
        g = model.cfg.n_global
        policies = {
            f"dense within training length ({L})": _lm_nll(model, chunks[:, g:]),  # g + (L - g) = L positions
            f"dense over the whole stream ({c['test_len']})": stream_nll(model, ids, "dense"),
        }
        for C in c["caches"]:
            S = g or c["stream_sinks"]  # kept first entries: the sink token, or the first 4 stream tokens
            kept = f"sink token + {C - g} recent" if g else f"{S} sinks + {C - S} recent"
            policies[f"window (last {C})"] = stream_nll(model, ids, "window", C)
            policies[kept] = stream_nll(model, ids, "sinks", C, sinks=S)
            policies[f"recompute (last {C})"] = stream_nll(model, ids, "recompute", C)
        out[name] = {
            "ppl": {k: round(float(v.mean().exp()), 4) for k, v in policies.items()},
            "attention_mass": attention_mass(model, chunks[:16, g:]),
        }
    return out


# ---------------------------------------------------------------- 3. many facts through g global tokens

# Evidence behind the design (throw-away probes, seed 0, 2 layers, 4 heads, batch 64, lr 5e-3, band r=1;
# accuracy on 512 test sequences per k, so about +/-2 points):
# - One model per g, trained from scratch at n=64, stayed at chance (loss ln 8) for every change tried
#   (lr 2e-3 and 1e-2, longer warm-up, k=1 first, one filler token, n=32 with r=2; 1,000-3,000 steps):
#   routing a fact through a global token takes two attention hops and that plateau outlasted the CPU
#   budget. Dense attention (same model) learned at once. A warm start from experiment 1 learned, but
#   g=1, 2, 4 scored the same (59-66% at k=1).
# - Fewer tokens to average make the route findable: at n=16 a g=1 model left chance after ~500 steps,
#   and a length curriculum n = 16 -> 32 -> 64 carried it over to n=64. Per-g models with the same
#   schedule were still a lottery (g=4 learned, g=1 did not), hence ONE model with nested slots below.
# - Every probe model that learned (<= 3,400 steps) stored about one fact whatever g was. ETC-style partitions (global j reads
#   segment j only) gave a 3-6 point g effect at 4 keys x 4 values that vanished in an 8,000-step rerun.
# - Speed: one step (d_model 64, n=64, batch 64) took 41 ms with 2 torch threads and 57 ms with 1 (load ~3).
# - The shipped run (below, 4,400 steps, ~2.5 min with 1 thread at load ~1) is flat in g again, but
#   above the one-fact curve 1/k + (1 - 1/k)/n_values: the memory keeps about two facts (see memory.json).
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
    "lr": 5e-3,  # AdamW (weight decay 0.01), 50 warm-up steps, grad-norm clip 1.0 (see train())
    "test_size": 512,  # per k, at the last stage's length
}


def _memory_task(stage) -> ManyFacts:
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
    r = MEMORY["radius"] if radius is None else radius
    int_arg("g", g, minimum=0, maximum=S)
    int_arg("n", n, minimum=1)
    small = memory_pattern(g, r).mask(g + n)
    keep = np.r_[np.arange(g), np.arange(S, S + n)]  # where the g + n positions sit among S + n
    m = np.zeros((S + n, S + n), dtype=bool)
    m[np.ix_(keep, keep)] = small
    m[np.arange(g, S), np.arange(g, S)] = True
    return m


def train_memory(out_dir=CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None):
    """One model with S prepended global slots, trained with a random number g of them active per step.

    Why nested slots: one model per g trained from scratch mostly never left chance (see the comment
    above MEMORY). Here every g shares one set of weights, the first g slots are active
    (``memory_mask``), and a length curriculum n = 16 -> 32 -> 64 finds the route through the global
    tokens (all 8 slots active at n=16, g drawn from {1, 2, 4, 8} after that). k (facts per sequence)
    is drawn from ``ks`` each step.
    """
    c = MEMORY
    stages = [dict(s, steps=8 if quick else s["steps"]) for s in c["stages"]]
    final = _memory_task(stages[-1])
    torch.manual_seed(seed)
    model = TinyTransformer(
        TinyConfig(final.vocab_size, max_len=final.n + c["slots"], n_global=c["slots"], **c["model"])
    )
    ends = np.cumsum([s["steps"] for s in stages])
    tasks = [_memory_task(s) for s in stages]

    def batch_loss(step):
        i = int(np.searchsorted(ends, step, side="right"))
        stage, task = stages[i], tasks[i]
        s = seed * 1_000_000 + step
        rng = np.random.default_rng(s)
        k = c["ks"][rng.integers(len(c["ks"]))]
        g = stage["globals"][rng.integers(len(stage["globals"]))]
        ids, ans = task.sample(c["batch"], min(k, task.n - 1 - task.margin), s)
        return _classify_loss(model, memory_mask(g, task.n), ids, ans)

    t0 = time.perf_counter()
    losses, ran = train(model, batch_loss, int(ends[-1]), c["lr"], desc="memory (nested g)", progress=progress)
    train_log = {**_training_log(losses, ran, time.perf_counter() - t0), "parameters": model.num_params()}
    results = {
        **_meta("memory", seed, threads),
        "config": {**c, "stages": stages},
        "training": train_log,
        "results": evaluate_memory(models={"nested": model}),
        "measured": "accuracy[g][k] of the one nested-slot model with the first g of 8 slots active, on 512 "
        "fresh sequences (n=64) per k (seeds 10000+k); cost per g: (q, k) pairs scored per layer = "
        "mask.sum() over the g + n positions (band r=1 | global_tokens(g); inactive slots excluded) and KV "
        "entries g + n; dense = n**2 pairs over the n real tokens",
        "quick": quick,
    }
    save_checkpoint(out_dir, "memory", {"nested": model}, results)
    return results


@torch.no_grad()
def evaluate_memory(checkpoint_dir=None, models=None) -> dict:
    """Accuracy of the shipped nested-slot model for each (g, k), and the cost of each g.

    Returns ``{"globals", "ks", "n", "chance", "one_fact": [1/k + (1 - 1/k)/n_values for k in ks],
    "accuracy": [[acc for k in ks] for g in globals], "pairs_per_layer": [...], "kv_entries": [g + n, ...],
    "dense_pairs_per_layer": n**2}``. The one-fact curve is what a memory holding one of the k facts scores.
    """
    c = MEMORY
    task = _memory_task(c["stages"][-1])
    model = (models or load_models("memory", checkpoint_dir))["nested"]
    tests = {k: task.sample(c["test_size"], k, TEST_SEED + k) for k in c["ks"]}
    acc, pairs, kv = [], [], []
    for g in c["globals"]:
        mask = memory_mask(g, task.n)
        acc.append([_accuracy(model, mask, *tests[k]) for k in c["ks"]])
        pairs.append(int(memory_pattern(g, c["radius"]).mask(g + task.n).sum()))
        kv.append(g + task.n)
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
    }


def _md(text: str) -> str:
    """Escape ``|`` so a pattern formula stays in one Markdown table cell."""
    return text.replace("|", "\\|")


def results_table(name, results=None) -> str:
    """A Markdown table of experiment ``name``'s results (``results`` from ``evaluate_<name>()``;
    default: the recorded results JSON of the shipped checkpoint)."""
    choice_arg("name", name, set(EXPERIMENTS))
    r = results if results is not None else load_results(name)["results"]
    if name == "long_range":
        lines = ["| variant | pattern | fact at | test accuracy | pairs scored per layer |", "|---|---|---|---|---|"]
        lines += [
            f"| {k} | `{_md(v['pattern'])}` | {v['fact_positions'][0]}..{v['fact_positions'][1] - 1} "
            f"| {100 * v['accuracy']:.1f}% | {v['pairs_per_layer']:,} |"
            for k, v in r.items()
            if k != "chance"
        ]
        lines.append(f"| chance | | | {100 * r['chance']:.2f}% | |")
    elif name == "streaming":
        models = [k for k in r if isinstance(r[k], dict)]
        lines = [f"perplexity on streams of {r['test_len']} tokens (trained on {r['train_len']}); "
                 f"floor exp(H) = {r['floor_ppl']:.3f}, true model on these streams {r['true_model_ppl']:.3f}", ""]
        for m in models:
            lines += [f"**{m}**", "", "| policy | perplexity |", "|---|---|"]
            lines += [f"| {p} | {v:.3f} |" for p, v in r[m]["ppl"].items()]
            mass = r[m]["attention_mass"]
            layers = len(mass["key 0"])
            lines += ["", "| attention mass (per layer) | " + " | ".join(f"layer {i}" for i in range(layers)) + " |"]
            lines += ["|---|" + "---|" * layers]
            lines += [f"| {w} | " + " | ".join(f"{x:.3f}" for x in v) + " |" for w, v in mass.items()]
            lines.append("")
    else:
        lines = ["| g | " + " | ".join(f"k={k}" for k in r["ks"]) + " | pairs per layer | KV entries |",
                 "|---|" + "---|" * (len(r["ks"]) + 2)]
        for g, accs, pairs, kv in zip(r["globals"], r["accuracy"], r["pairs_per_layer"], r["kv_entries"]):
            lines.append(f"| {g} | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + f" | {pairs:,} | {kv} |")
        lines.append("| one-fact curve | " + " | ".join(f"{100 * a:.1f}%" for a in r["one_fact"]) + " | | |")
        lines.append(f"chance {100 * r['chance']:.1f}%; dense pairs per layer over the {r['n']} tokens "
                     f"{r['dense_pairs_per_layer']:,}")
    return "\n".join(lines)


TRAINERS = {"long_range": train_long_range, "streaming": train_streaming, "memory": train_memory}
EVALUATORS = {"long_range": evaluate_long_range, "streaming": evaluate_streaming, "memory": evaluate_memory}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m globattn_lite.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--quick", action="store_true", help="a few steps per model (20, or 8 per memory stage), written to a temporary folder")
    parser.add_argument("--out", default=None, help="output folder (default: the package's checkpoints/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int_arg("threads", args.threads, minimum=1))
    out = args.out or (tempfile.mkdtemp(prefix="globattn_quick_") if args.quick else CHECKPOINT_DIR)
    t0 = time.perf_counter()
    results = TRAINERS[args.name](out_dir=out, quick=args.quick, seed=args.seed, threads=args.threads)
    print(results_table(args.name, results["results"]))
    print(f"wrote {Path(out) / args.name}.pt and .json in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
