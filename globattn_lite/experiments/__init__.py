"""Tiny-model experiments on global tokens: train, save checkpoints, evaluate them again.

    python -m globattn_lite.experiments long_range   # 1. window vs global tokens on long-range retrieval
    python -m globattn_lite.experiments streaming    # 2. StreamingLLM at toy scale: sinks and KV eviction
    python -m globattn_lite.experiments memory       # 3. k facts through g global tokens (one nested-slot model),
                                                     #    and the question token global instead
    (add --quick for a few-step smoke run written to a temporary folder)

Training writes ``checkpoints/<name>.pt`` (float16 state dicts) and ``checkpoints/<name>.json``
(the measured numbers, configs with the probes behind each design, steps, seed, torch version).
Notebooks call ``evaluate_<name>()``, which loads the shipped checkpoint and recomputes the numbers
in seconds.

Modules: ``harness`` (training loop, checkpoints, run metadata), one module per experiment
(``long_range``, ``streaming``, ``memory``: config, train, evaluate, table), and ``registry``
(``EXPERIMENTS``, the one table of them, and the CLI). Everything is importable from here.
"""

from .harness import CHECKPOINT_DIR, EXAMPLES, TEST_SEED, lr_factor, save_checkpoint, train
from .long_range import (
    LOCALITY,
    LONG_RANGE,
    SECOND_SEED,
    attention_locality,
    evaluate_attention_locality,
    evaluate_long_range,
    kept_attention_share,
    long_range_runs,
    long_range_variants,
    top_keys_share,
    train_long_range,
)
from .memory import (
    MEMORY,
    active_slots_mask,
    evaluate_memory,
    memory_mask,
    memory_pattern,
    memory_slot_usage,
    question_global_pattern,
    train_memory,
)
from .registry import (
    EXPERIMENTS,
    EXPLORED,
    Experiment,
    explorer_example,
    load_models,
    load_results,
    main,
    results_table,
)
from .streaming import (
    MODELS as STREAMING_MODELS,
)
from .streaming import (
    STREAMING,
    attention_mass,
    evaluate_streaming,
    running_perplexity,
    sink_ablation,
    sink_ablation_nll,
    sink_ablations,
    stream_nll,
    stream_steps,
    stream_trace,
    streaming_sinks,
    train_streaming,
)

__all__ = [
    "CHECKPOINT_DIR",
    "EXAMPLES",
    "EXPERIMENTS",
    "EXPLORED",
    "Experiment",
    "LOCALITY",
    "LONG_RANGE",
    "MEMORY",
    "SECOND_SEED",
    "STREAMING",
    "STREAMING_MODELS",
    "TEST_SEED",
    "active_slots_mask",
    "attention_locality",
    "attention_mass",
    "evaluate_attention_locality",
    "evaluate_long_range",
    "evaluate_memory",
    "evaluate_streaming",
    "explorer_example",
    "kept_attention_share",
    "load_models",
    "load_results",
    "long_range_runs",
    "long_range_variants",
    "lr_factor",
    "main",
    "memory_mask",
    "memory_pattern",
    "memory_slot_usage",
    "question_global_pattern",
    "results_table",
    "running_perplexity",
    "save_checkpoint",
    "sink_ablation",
    "sink_ablation_nll",
    "sink_ablations",
    "stream_nll",
    "stream_steps",
    "stream_trace",
    "streaming_sinks",
    "top_keys_share",
    "train",
    "train_long_range",
    "train_memory",
    "train_streaming",
]
