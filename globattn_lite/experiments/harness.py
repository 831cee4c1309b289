"""What every experiment shares: the training loop, checkpoints and results files, run metadata,
classification loss and accuracy, and the parsing of token ids typed into the explorers.

Knows no experiment by name: the experiment modules build on it, and the registry
(``experiments.registry``) checks learners' experiment names before calling it.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..tiny import TinyConfig, TinyTransformer

CHECKPOINT_DIR = Path(__file__).parent.parent / "checkpoints"
TEST_SEED = 10_000  # test batches use seeds from here; training uses seeds below it
EXAMPLES = 32  # test inputs the attention explorer offers: the first 32 of each evaluation


def lr_factor(step, steps, warmup=50, cosine=False) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up over ``warmup`` steps, then constant
    (or, with ``cosine``, ``0.5 * (1 + cos(pi * step / steps))``, which reaches 0 at ``steps``)."""
    factor = min(1.0, (step + 1) / warmup)
    return factor * 0.5 * (1 + math.cos(math.pi * step / steps)) if cosine else factor


def train(
    model,
    batch_loss,
    steps,
    lr=2e-3,
    desc="train",
    progress=True,
    stop=None,
    check_every=100,
    warmup=50,
    cosine=False,
    schedule_steps=None,
):
    """AdamW with a linear warm-up (and optionally a cosine decay over ``schedule_steps``, default
    ``steps``, see ``lr_factor``). ``batch_loss(step) -> loss`` builds the step's batch.

    ``stop()`` (optional) is called every ``check_every`` steps; training ends early when it
    returns True. Returns ``(losses, steps_run)``.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    horizon = steps if schedule_steps is None else schedule_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, horizon, warmup, cosine))
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


def read_models(name, checkpoint_dir=None) -> dict:
    """The models in ``<checkpoint_dir>/<name>.pt`` as ``{variant: TinyTransformer}`` (float32, eval mode)."""
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


def read_results(name, checkpoint_dir=None) -> dict:
    """The results JSON ``<checkpoint_dir>/<name>.json`` written beside the checkpoint."""
    return json.loads((Path(checkpoint_dir or CHECKPOINT_DIR) / f"{name}.json").read_text())


def meta(name, seed, threads) -> dict:
    """What a results file records of the run itself: versions, seed, threads, the command, the load."""
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


def training_log(losses, ran, seconds) -> dict:
    """What a results file records of one training run: steps, time, final loss, a loss curve."""
    return {
        "steps": ran,
        "train_seconds": round(seconds, 1),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "loss_every_100": [round(float(np.mean(losses[j : j + 100])), 4) for j in range(0, ran, 100)],
    }


def classify_loss(model, mask, ids, answers):
    """Cross-entropy of the model's last-position logits against ``answers``."""
    return F.cross_entropy(model.last_logits(torch.from_numpy(ids), mask), torch.from_numpy(answers))


@torch.no_grad()
def predictions(model, mask, ids, chunk=512) -> np.ndarray:
    """The model's answer (argmax at the last position) for each row of ``ids``."""
    return np.concatenate(
        [
            model.last_logits(torch.from_numpy(ids[i : i + chunk]), mask).argmax(-1).numpy()
            for i in range(0, len(ids), chunk)
        ]
    )


def accuracy(model, mask, ids, answers, chunk=512) -> float:
    """Share of rows of ``ids`` whose prediction equals ``answers``."""
    return float((predictions(model, mask, ids, chunk) == answers).mean())


def typed_tokens(tokens, vocab_size, max_len) -> np.ndarray:
    """Token ids typed by a learner (a string of integers, or a sequence) as a (1, n) int64 array."""
    if isinstance(tokens, str):
        parts = tokens.replace(",", " ").split()
        if not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"tokens must be integers separated by spaces or commas, got {tokens!r}")
        tokens = [int(p) for p in parts]
    ids = np.asarray(tokens)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError("tokens must be a string or a sequence of integer token ids")
    if not 2 <= len(ids) <= max_len:
        raise ValueError(f"tokens must hold 2 to {max_len} ids for this model, got {len(ids)}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(
            f"token ids must be in 0..{vocab_size - 1} (the model's vocabulary), got {ids.min()}..{ids.max()}"
        )
    return ids.astype(np.int64)[None, :]
