"""Checks of exercise set 5 (memory and cost): kv_cache_bytes, kv_entries, max_sequences
and the quiz answers (the free-text reason is recorded for the instructor, not scored)."""

from __future__ import annotations

import numpy as np

from globattn_lite.checks.compare import _compare_int, _fmt, compare_whole_number_answer
from globattn_lite.checks.engine import Case, Spec, warmup
from globattn_lite.checks.inputs import _answer

SET = "ex5_costs"


def _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    values_per_token = 2 * layers * kv_heads * head_dim  # 2: one K and one V vector per head
    return values_per_token * tokens * batch * bytes_per_element


def _ref_kv_entries(policy, t, window=None, sinks=0):
    if policy == "dense":
        return t
    if policy == "window":
        return min(t, window)
    if policy == "sinks":
        return min(t, sinks + window)
    raise ValueError(policy)


def _ref_max_sequences(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    per_sequence = _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element)
    return budget_bytes // per_sequence


def _kv_entries_without_min(policy, t, window=None, sinks=0):
    if policy == "dense":
        return t
    return window if policy == "window" else sinks + window


def _kv_entries_forgetting_sinks(policy, t, window=None, sinks=0):
    return t if policy == "dense" else min(t, window)


def _kv_entries_with_max(policy, t, window=None, sinks=0):
    if policy == "dense":
        return t
    return max(t, window) if policy == "window" else max(t, sinks + window)


def _kv_entries_sinks_only(policy, t, window=None, sinks=0):
    return min(t, sinks) if policy == "sinks" else _ref_kv_entries(policy, t, window, sinks)


def _compare_answer_bool(got, expected):
    if got is None:
        return "not answered yet (still None)", "replace None with True or False"
    if isinstance(got, str):
        return f"a string {got!r}, expected a bool", "write True or False without quotes"
    if not isinstance(got, (bool, np.bool_)):
        return f"{_fmt(got, 60)} ({type(got).__name__}), expected a bool", "answer True or False"
    if bool(got) != expected:
        return f"{bool(got)} is not the right answer", None
    return None


def _record_reason(got, expected):
    """Free text is read by the instructor (the grader's needs_review column): the check only
    asks for a sentence, never for keywords."""
    if got is None:
        return "not answered yet (still None)", "write your reason as a string"
    if not isinstance(got, str):
        return f"a {type(got).__name__}, expected a string", "write your reason in quotes"
    if len(got.split()) < 4:
        return "too short: explain in a sentence or two", None
    return None


_CHOICE_HINTS = {
    "A": "dense attention sees everything but its cost grows as N^2 in compute and N in KV memory",
    "C": "a window alone needs about N / W layers to carry a theme across the document",
    "D": "truncating drops the rest of the document, including clauses that matter",
}


def _compare_choice(got, expected):
    if got is None:
        return "not answered yet (still None)", 'replace None with one letter as a string: "A", "B", "C" or "D"'
    if not isinstance(got, str) or got.strip().upper() not in ("A", "B", "C", "D"):
        return f"{_fmt(got, 60)} is not one of the letters A, B, C, D", "answer with one letter as a string"
    if got.strip().upper() != expected:
        return f"{got.strip().upper()} is not the best choice", _CHOICE_HINTS.get(got.strip().upper())
    return None


def _bytes_without_k_and_v(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return layers * kv_heads * head_dim * tokens * batch * bytes_per_element


def _bytes_ignoring_batch_and_dtype(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return 2 * layers * kv_heads * head_dim * tokens * 2


def _bytes_as_bits(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return 8 * _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, batch, bytes_per_element)


def _bytes_of_one_layer(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return 2 * kv_heads * head_dim * tokens * batch * bytes_per_element


def _sequences_rounded_up(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    return -(-budget_bytes // _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element))


def _sequences_rounded(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    return round(budget_bytes / _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element))


def _sequences_without_k_and_v(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    return budget_bytes // (layers * kv_heads * head_dim * tokens * bytes_per_element)


def _sequences_ignoring_dtype(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    return budget_bytes // _ref_kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, 2)


def specs(st, hnp) -> list[Spec]:
    small = st.integers(1, 64)

    @st.composite
    def bytes_case(draw):
        args = tuple(draw(small) for _ in range(4))
        kwargs = {}
        if draw(st.booleans()):
            kwargs["batch"] = draw(st.integers(1, 8))
        if draw(st.booleans()):
            kwargs["bytes_per_element"] = draw(st.sampled_from([1, 2, 4]))
        return Case(args, kwargs)

    @st.composite
    def entries_case(draw):
        policy = draw(st.sampled_from(["dense", "window", "sinks"]))
        t = draw(st.integers(0, 5000))
        if policy == "dense":
            return Case((policy, t))
        kwargs = {"window": draw(st.integers(1, 4096))}
        if policy == "sinks":
            kwargs["sinks"] = draw(st.integers(0, 8))
        return Case((policy, t), kwargs)

    @st.composite
    def budget_case(draw):
        args = tuple(draw(small) for _ in range(4))
        per = _ref_kv_cache_bytes(*args)
        budget = draw(st.integers(0, 20 * per))
        kwargs = {"bytes_per_element": draw(st.sampled_from([1, 2, 4]))} if draw(st.booleans()) else {}
        return Case((budget,) + args, kwargs)

    gib = 2**30
    return [
        Spec(
            "kv_cache_bytes",
            ("layers", "kv_heads", "head_dim", "tokens", "batch", "bytes_per_element"),
            _ref_kv_cache_bytes,
            _compare_int,
            cases=[
                Case((1, 1, 1, 1)),
                Case((1, 1, 1, 1), {"bytes_per_element": 4}),
                Case((2, 2, 4, 3), {"batch": 2}),
                Case((32, 32, 128, 1)),
                Case((32, 8, 128, 4096), {"batch": 3, "bytes_per_element": 1}),
            ],
            properties=[("random model shapes, batch and dtype sizes", bytes_case)],
            mistakes=[
                (
                    "forgetting the factor 2 for K and V: every token stores a key AND a value vector",
                    _bytes_without_k_and_v,
                ),
                ("use the batch and bytes_per_element arguments (defaults 1 and 2)", _bytes_ignoring_batch_and_dtype),
                ("count bytes, not bits", _bytes_as_bits),
                ("the cache grows with every layer: multiply by layers too", _bytes_of_one_layer),
            ],
        ),
        Spec(
            "kv_entries",
            ("policy", "t", "window", "sinks"),
            _ref_kv_entries,
            _compare_int,
            cases=[
                warmup("dense", 0),
                Case(("dense", 7)),
                Case(("window", 3), {"window": 5}),
                Case(("window", 10), {"window": 4}),
                Case(("sinks", 10), {"window": 4, "sinks": 2}),
                Case(("sinks", 5), {"window": 4, "sinks": 4}),
            ],
            properties=[("random policies and lengths", entries_case)],
            mistakes=[
                ("before the cache fills up only t entries exist: min(t, window)", _kv_entries_without_min),
                (
                    "the sinks policy keeps the sink tokens AND the window: min(t, sinks + window)",
                    _kv_entries_forgetting_sinks,
                ),
                ("the cache keeps at most the window: min, not max", _kv_entries_with_max),
                (
                    "the sinks policy keeps the sink tokens AND the window: min(t, sinks + window)",
                    _kv_entries_sinks_only,
                ),
            ],
        ),
        Spec(
            "max_sequences",
            ("budget_bytes", "layers", "kv_heads", "head_dim", "tokens", "bytes_per_element"),
            _ref_max_sequences,
            _compare_int,
            cases=[
                warmup(0, 1, 1, 1, 1),
                Case((4, 1, 1, 1, 1)),
                Case((7, 1, 1, 1, 1)),
                Case((100, 1, 2, 3, 4), {"bytes_per_element": 1}),
                Case((24 * gib, 32, 32, 128, 4096)),
            ],
            properties=[("random budgets and model shapes", budget_case)],
            mistakes=[
                (
                    "only whole sequences fit: round down with //, not up (ceil) or to the nearest",
                    _sequences_rounded_up,
                ),
                ("only whole sequences fit: round down with //, not up (ceil) or to the nearest", _sequences_rounded),
                (
                    "forgetting the factor 2 for K and V: every token stores a key AND a value vector",
                    _sequences_without_k_and_v,
                ),
                ("use the bytes_per_element argument (default 2)", _sequences_ignoring_dtype),
            ],
        ),
        Spec(
            "mistral_kv_bytes_per_token",
            (),
            _answer(2 * 32 * 8 * 128 * 2),
            compare_whole_number_answer("a whole number of bytes"),
            is_answer=True,
            mistakes=[
                (
                    "counting query heads instead of KV heads: Mistral-7B has 32 query heads but only 8 "
                    "KV heads (grouped-query attention), and only KV heads are cached",
                    2 * 32 * 32 * 128 * 2,
                ),
                ("forgetting the factor 2 for K and V", 32 * 8 * 128 * 2),
                ("fp16 is 2 bytes per element", 2 * 32 * 8 * 128 * 4),
                ("count bytes for one token across all 32 layers", 2 * 8 * 128 * 2),
            ],
        ),
        Spec(
            "global_tokens_always_help",
            (),
            _answer(False),
            _compare_answer_bool,
            is_answer=True,
            mistakes=[
                (
                    "each global token adds about N pairs per layer and KV entries that are never "
                    "evicted, and a few tokens can only carry so much: returns diminish",
                    True,
                )
            ],
        ),
        Spec("global_tokens_reason", (), _answer(None), _record_reason, is_answer=True, free_text=True),
        Spec("legal_contracts_choice", (), _answer("B"), _compare_choice, is_answer=True),
    ]
