"""Tiny-model experiments on global tokens: train, save checkpoints, evaluate them again.

    python -m globattn_lite.experiments long_range   # 1. window vs global tokens on long-range retrieval
    python -m globattn_lite.experiments streaming    # 2. StreamingLLM at toy scale: sinks and KV eviction
    python -m globattn_lite.experiments memory       # 3. k facts through g global tokens (NOT shipped, see MEMORY)
    (add --quick for a few-step smoke run written to a temporary folder)

Training writes ``checkpoints/<name>.pt`` (float16 state dicts) and ``checkpoints/<name>.json``
(the measured numbers, configs, steps, seed, torch version). Notebooks call
``evaluate_<name>()``, which loads the shipped checkpoint and recomputes the numbers in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
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
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],  # CPU contention behind train_seconds
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
        train_log[name] = {
            "steps": ran,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "loss_every_100": [round(float(np.mean(losses[j : j + 100])), 4) for j in range(0, ran, 100)],
        }
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
    "source": dict(vocab_size=16, alpha=0.1, seed=0),
    "model": dict(n_layer=3, n_head=4, d_model=64, positions="rotary"),
    "train_len": 64,
    "batch": 32,
    "steps": 1600,
    "lr": 2e-3,
    "train_stream": (64, 8192),  # (streams, length) the 64-token training windows are cropped from
    "test_streams": 4,
    "test_len": 512,
    "caches": [64, 16],  # KV entries kept by the eviction policies (prepended sink token included)
    "stream_sinks": 4,  # first tokens kept by "sinks + recent" for the model without a sink token
}


def _lm_nll(model, ids):
    """Per-token next-token NLL (B, n-1) under a causal mask."""
    n = ids.shape[1] + model.cfg.n_global
    logits = model(ids, P.causal().mask(n))
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")


def train_streaming(out_dir=CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None):
    c = STREAMING
    src = MarkovSource(**c["source"])
    streams = torch.from_numpy(src.sample(*c["train_stream"], seed=seed + 1))
    steps = 20 if quick else c["steps"]
    models, train_log = {}, {}
    for name, g in (("no sink token", 0), ("sink token", 1)):
        torch.manual_seed(seed)
        model = TinyTransformer(TinyConfig(src.vocab_size, n_global=g, **c["model"]))

        def batch_loss(step, model=model):
            rng = np.random.default_rng(seed * 1_000_000 + step)
            rows = rng.integers(0, streams.shape[0], c["batch"])
            starts = rng.integers(0, streams.shape[1] - c["train_len"] + 1, c["batch"])
            ids = torch.stack([streams[r, s : s + c["train_len"]] for r, s in zip(rows, starts)])
            return _lm_nll(model, ids).mean()

        t0 = time.perf_counter()
        losses, ran = train(model, batch_loss, steps, c["lr"], desc=name, progress=progress)
        train_log[name] = {
            "steps": ran,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "loss_every_100": [round(float(np.mean(losses[j : j + 100])), 4) for j in range(0, ran, 100)],
        }
        models[name] = model
    results = {
        **_meta("streaming", seed, threads),
        "config": c,
        "training": train_log,
        "results": evaluate_streaming(models=models),
        "measured": "perplexity exp(mean NLL) of tokens 1..511 of 4 test streams (seed 10000) under each "
        "cache policy (caches of 64 and 16 entries, positions renumbered inside the cache); "
        "'dense within training length' predicts tokens inside independent 64-token chunks; "
        "attention mass = mean weight (over heads, and queries 4..63 of 64-token test windows) on key 0 "
        "(the sink token for the sink model, the first real token otherwise) and on the first 4 keys",
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
            f"dense within training length ({L})": _lm_nll(model, chunks),
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
            "attention_mass": attention_mass(model, chunks[:16]),
        }
    return out


# ---------------------------------------------------------------- 3. many facts through g global tokens

# Status: NOT shipped. In the runs behind this config (seed 0, lr 2e-3 x 1,000 steps and lr 5e-3 x
# 2,500 steps) no model with g >= 1 left chance (loss stayed at ln 8 = 2.08): learning to route a fact
# through a global token takes two attention hops, and that plateau outlasted our CPU budget (in
# experiment 1 a single fact needed ~1,400 steps to start). There is no checkpoint, so
# evaluate_memory() raises FileNotFoundError; the code stays so the negative result can be reproduced.
# A throw-away probe (not in this module) that warm-started from the long_range global-token model
# (same vocabulary with n_keys=16, n_values=16, n_filler=32, band r=7) did learn: g=1 gave 59/37/25/11%
# for k=1/2/4/8 (chance 6.25%) after 1,000 steps, but g=2 and g=4 were no better (66/43/27/12% and
# 62/41/24/12% after 1,500): the g axis showed no capacity effect, so nothing of it is shipped.
# Second round of throw-away probes (seed 0, 2 layers, d_model 64, 4 heads, batch 64, lr 5e-3, band r=1 unless
# said; accuracy on 512 test sequences per k, so about +/-2 points):
# - From scratch at n=64 the route stayed at chance for every change tried: 8 keys, lr 1e-2 with 200 warm-up
#   steps and k=1 only for the first 600 steps, a single filler token (no distractor noise in the global
#   token's average), n=32 with band r=2 (1,500-2,000 steps each). Dense attention (same model) learned
#   at once: 64/50/44/36% for k=1/2/4/8 (8 keys x 8 values) after 400 steps.
# - Fewer tokens to average made the route findable: at n=16 a g=1 model left chance after ~500 steps.
#   A length curriculum n = 16 -> 32 -> 64 (800 / 600 / 1,200+ steps) carried it over to n=64 at once for
#   g=4 (k=1: 100%), but the same schedule left g=1 at chance, so per-g models from scratch are a lottery.
# - Every model that learned stored little more than ONE fact, whatever g was (the one-fact curve is
#   1/k + (1 - 1/k)/n_values). 4 keys x 4 values, g=4, 400 steps at n=16: 90/68/48/47% at k=1..4 (curve
#   100/63/50/44%). One model trained with a random number of active global tokens per step (the rest
#   masked out; all 8 active while at n=16), 8 keys x 8 values, 3,000 steps: 100/78/47/23% at k=1/2/4/8
#   for g=1, 2, 4 AND 8 alike (curve 100/56/34/23%; the extra tokens duplicated the first one).
#   d_model 32 (4 heads) or 16 (1 head): also flat in g, only lower; d_model 32 with 1 head: chance.
# - An ETC-style hard partition (global token j reads only segment j of g equal segments; all tokens read
#   all globals) with that nested training, 4 keys x 4 values, k=1..4 (chance 25%, g=0 25-27%):
#   g=1 79/65/55/49%, g=2 79/67/59/52%, g=4 77/67/59/55% after 3,800 steps (~8 min at load 3-6): a 3-6
#   point effect of g at k>=3, too small against sampling error to ship as "capacity binds"; and it did
#   not survive a longer rerun (2 threads, 8,000 steps, 371 s): g=1 100/71/52/45%, g=2 100/69/55/45%,
#   g=4 100/67/54/45%, flat in g and close to the one-fact curve (100/63/50/44%). The same
#   with d_model 32, or with 8 keys x 4 values, 8 segments and k up to 8, stayed at chance (1,800-3,200
#   steps); with 8 keys x 8 values it learned at d_model 32 but flat in g (39/36/26/20%) and not at 64.
# - Speed: one training step of this model (n=64, g=4, batch 64) took 41 ms with 2 torch threads and
#   57 ms with 1 (medians, load ~3), so training should use 2 threads.
MEMORY = {
    "task": dict(n=64, n_keys=16, n_values=8, n_filler=16, margin=16),
    "model": dict(n_layer=2, n_head=4, d_model=64, positions="learned"),
    "radius": 3,
    "globals": [0, 1, 2, 4],
    "ks": [1, 2, 4, 8],
    "batch": 32,
    "steps": 2500,
    "lr": 5e-3,  # as in experiment 1: at 2e-3 no global-token model left chance within 1,000 steps
    "test_size": 512,  # per k
}


def memory_pattern(g, radius):
    """band(radius) | global_tokens(g) over g + n positions (band only when g = 0)."""
    return P.band(radius) | P.global_tokens(g) if g else P.band(radius)


def train_memory(out_dir=CHECKPOINT_DIR, quick=False, seed=0, progress=True, threads=None):
    c = MEMORY
    task = ManyFacts(**c["task"])
    steps = 20 if quick else c["steps"]
    models, train_log = {}, {}
    for g in c["globals"]:
        torch.manual_seed(seed)
        model = TinyTransformer(TinyConfig(task.vocab_size, max_len=task.n + g, n_global=g, **c["model"]))
        mask = memory_pattern(g, c["radius"]).mask(task.n + g)

        def batch_loss(step, model=model, mask=mask):
            s = seed * 1_000_000 + step
            k = c["ks"][np.random.default_rng(s).integers(len(c["ks"]))]
            ids, ans = task.sample(c["batch"], k, s)
            return _classify_loss(model, mask, ids, ans)

        t0 = time.perf_counter()
        losses, ran = train(model, batch_loss, steps, c["lr"], desc=f"g={g}", progress=progress)
        train_log[f"g={g}"] = {
            "steps": ran,
            "train_seconds": round(time.perf_counter() - t0, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "loss_every_100": [round(float(np.mean(losses[j : j + 100])), 4) for j in range(0, ran, 100)],
        }
        models[f"g={g}"] = model
    results = {
        **_meta("memory", seed, threads),
        "config": c,
        "training": train_log,
        "results": evaluate_memory(models=models),
        "measured": "accuracy[g][k] on 512 fresh sequences per k (seeds 10000+k); one model per g trained on "
        "k drawn uniformly from ks each step; cost: (q, k) pairs scored per layer and KV entries (g + n)",
        "quick": quick,
    }
    save_checkpoint(out_dir, "memory", models, results)
    return results


@torch.no_grad()
def evaluate_memory(checkpoint_dir=None, models=None) -> dict:
    """Accuracy for each (g, k) and the cost of each g.

    Returns ``{"globals", "ks", "chance", "accuracy": [[acc for k in ks] for g in globals],
    "pairs_per_layer": [...], "kv_entries": [...]}``.
    """
    c = MEMORY
    task = ManyFacts(**c["task"])
    models = models or load_models("memory", checkpoint_dir)
    acc, pairs, kv = [], [], []
    tests = {k: task.sample(c["test_size"], k, TEST_SEED + k) for k in c["ks"]}
    for g in c["globals"]:
        mask = memory_pattern(g, c["radius"]).mask(task.n + g)
        acc.append([_accuracy(models[f"g={g}"], mask, *tests[k]) for k in c["ks"]])
        pairs.append(int(mask.sum()))
        kv.append(task.n + g)
    return {
        "globals": list(c["globals"]),
        "ks": list(c["ks"]),
        "chance": task.chance,
        "accuracy": acc,
        "pairs_per_layer": pairs,
        "dense_pairs_per_layer": (task.n + 1) ** 2,
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
        lines.append(f"chance {100 * r['chance']:.1f}%; dense pairs per layer {r['dense_pairs_per_layer']:,}")
    return "\n".join(lines)


TRAINERS = {"long_range": train_long_range, "streaming": train_streaming, "memory": train_memory}
EVALUATORS = {"long_range": evaluate_long_range, "streaming": evaluate_streaming, "memory": evaluate_memory}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m globattn_lite.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--quick", action="store_true", help="20 steps per model, written to a temporary folder")
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
