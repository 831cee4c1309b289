"""The in-notebook checks: right answers pass, typical mistakes fail with the right hint.

The implementations below are written independently of the checks' references and of the
checks' own mistake catalogue (loops, other dtypes, other numpy routes), so these tests
exercise the checks, not a copy of them.
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from collections import deque

import numpy as np
import pytest

from globattn_lite.checks import (
    EXERCISE_SETS,
    check,
    ex1_dense,
    ex2_sparse,
    ex3_global,
    ex4_softmax,
    ex5_costs,
    run_check,
    specs,
)

# ------------------------------------------------------------------------------------------
# Alternative correct implementations (at least two per exercise function)
# ------------------------------------------------------------------------------------------


def causal_loops(n):
    return np.array([[k <= q for k in range(n)] for q in range(n)], dtype=bool).reshape(n, n)


def causal_tril(n):
    return np.tril(np.ones((n, n), dtype=bool))


def softmax_float32(x):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def softmax_rows_loop(x):
    x = np.asarray(x, dtype=float)
    rows = x.reshape(-1, x.shape[-1])
    out = []
    for row in rows:
        m = max(row)
        e = [math.exp(v - m) for v in row]
        out.append([v / sum(e) for v in e])
    return np.array(out).reshape(x.shape)


def softmax_logsumexp(x):
    x = np.asarray(x, dtype=float)
    return np.exp(x - np.logaddexp.reduce(x, axis=-1, keepdims=True))


def attention_loops(q, k, v, mask=None):
    n, m = q.shape[0], k.shape[0]
    weights = np.zeros((n, m))
    for i in range(n):
        scores = [float(q[i] @ k[j]) / math.sqrt(q.shape[1]) for j in range(m)]
        allowed = [j for j in range(m) if mask is None or mask[i, j]]
        top = max(scores[j] for j in allowed)
        total = sum(math.exp(scores[j] - top) for j in allowed)
        for j in allowed:
            weights[i, j] = math.exp(scores[j] - top) / total
    return weights @ v, weights


def attention_float32_big_negative(q, k, v, mask=None):
    q, k, v = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
    scores = np.einsum("nd,md->nm", q, k) / np.float32(np.sqrt(q.shape[-1]))
    if mask is not None:
        scores = np.where(mask, scores, np.float32(-1e30))
    weights = softmax_float32(scores)
    return weights @ v, weights


def window_loops(n, window):
    mask = np.zeros((n, n), dtype=bool)
    for q in range(n):
        for k in range(max(0, q - window + 1), q + 1):
            mask[q, k] = True
    return mask


def window_tril(n, window):
    ones = np.ones((n, n), dtype=bool)
    return np.tril(ones) & ~np.tril(ones, -window)


def positions_list(mask, i):
    return [k for k, allowed in enumerate(mask[i]) if allowed]


def positions_nonzero(mask, i):
    return np.nonzero(mask[i])[0]


def count_loops(mask):
    total = 0
    for row in mask:
        for allowed in row:
            total += bool(allowed)
    return total


def count_sum(mask):
    return mask.sum()  # a numpy integer is an int too


def local_global_loops(n, window, num_global):
    mask = window_loops(n, window)
    for q in range(n):
        for k in range(min(num_global, q + 1)):
            mask[q, k] = True
    return mask


def local_global_columns(n, window, num_global):
    mask = window_tril(n, window)
    mask[:, :num_global] = True
    return mask & np.tril(np.ones((n, n), dtype=bool))


def longformer_loops(n, radius, global_positions):
    g = set(global_positions)
    return np.array(
        [[abs(q - k) <= radius or q in g or k in g for k in range(n)] for q in range(n)], dtype=bool
    ).reshape(n, n)


def longformer_isin(n, radius, global_positions):
    idx = np.arange(n)
    band = np.abs(idx[:, None] - idx[None, :]) <= radius
    g = np.isin(idx, np.asarray(global_positions, dtype=int))
    return band | g[:, None] | g[None, :]


def receptive_bfs(mask, layers):
    n = mask.shape[0]
    result = np.zeros((n, n), dtype=bool)
    for src in range(n):
        reached = {src}
        for _ in range(layers):
            reached = reached | {q for q in range(n) if any(mask[q, j] for j in reached)}
        for q in reached:
            result[q, src] = True
    return result


def receptive_matrix_power(mask, layers):
    step = (mask | np.eye(mask.shape[0], dtype=bool)).astype(np.int64)
    return np.linalg.matrix_power(step, layers) > 0


def hops_deque(mask, src, dst):
    n = mask.shape[0]
    dist = {src: 0}
    todo = deque([src])
    while todo:
        j = todo.popleft()
        for q in range(n):
            if mask[q, j] and q not in dist:
                dist[q] = dist[j] + 1
                todo.append(q)
    return dist.get(dst)


def hops_by_powers(mask, src, dst):
    n = mask.shape[0]
    for layers in range(n + 1):
        if receptive_matrix_power(mask, layers)[dst, src]:
            return np.int64(layers)
    return None


def sink_by_appending(scores, sink_logit):
    full = softmax_logsumexp(np.append(np.asarray(scores, dtype=float), sink_logit))
    return full[:-1]


def sink_loops_float32(scores, sink_logit):
    m = max(max(scores), sink_logit)
    e = [math.exp(s - m) for s in scores]
    z = math.exp(sink_logit - m) + sum(e)
    return np.array([x / z for x in e], dtype=np.float32)


def entropy_loops(weights):
    return -sum(w * math.log(w) for w in weights if w > 0)


def entropy_where(weights):
    w = np.asarray(weights, dtype=np.float32)
    safe = np.where(w > 0, w, 1)
    return np.float32(-(w * np.log(safe)).sum())


def evict_loops(scores, keep):
    kept = [i for i in range(len(scores)) if keep[i]]
    m = max(scores[i] for i in kept)
    z = sum(math.exp(scores[i] - m) for i in kept)
    out = np.zeros(len(scores))
    for i in kept:
        out[i] = math.exp(scores[i] - m) / z
    return out


def evict_scatter(scores, keep):
    out = np.zeros_like(np.asarray(scores, dtype=float))
    out[keep] = softmax_logsumexp(np.asarray(scores, dtype=float)[keep])
    return out


def bytes_prod(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return math.prod([2, layers, kv_heads, head_dim, tokens, batch, bytes_per_element])


def bytes_numpy(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2):
    return np.prod(np.array([2, layers, kv_heads, head_dim, tokens, batch, bytes_per_element], dtype=np.int64))


def entries_dispatch(policy, t, window=None, sinks=0):
    rules = {"dense": lambda: t, "window": lambda: min(t, window), "sinks": lambda: min(t, sinks + window)}
    return rules[policy]()


def entries_simulated(policy, t, window=None, sinks=0):
    cache = []
    for token in range(t):
        cache.append(token)
        if policy == "window" and len(cache) > window:
            cache.pop(0)
        if policy == "sinks" and len(cache) > sinks + window:
            cache.pop(sinks)  # keep the first `sinks` tokens, evict the oldest of the rest
    return len(cache)


def sequences_divmod(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    return divmod(budget_bytes, 2 * layers * kv_heads * head_dim * tokens * bytes_per_element)[0]


def sequences_loop(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2):
    per = bytes_prod(layers, kv_heads, head_dim, tokens, 1, bytes_per_element)
    count = 0
    while budget_bytes >= per * (count + 1):
        count += 1
        if count > 10**6:  # big budgets: finish with a division
            return budget_bytes // per
    return count


CORRECT = {
    "causal_mask": [causal_loops, causal_tril],
    "softmax": [softmax_float32, softmax_rows_loop, softmax_logsumexp],
    "attention": [attention_loops, attention_float32_big_negative],
    "sliding_window_mask": [window_loops, window_tril],
    "attended_positions": [positions_list, positions_nonzero],
    "count_kv_pairs": [count_loops, count_sum],
    "local_global_mask": [local_global_loops, local_global_columns],
    "longformer_mask": [longformer_loops, longformer_isin],
    "receptive_field": [receptive_bfs, receptive_matrix_power],
    "min_layers": [hops_deque, hops_by_powers],
    "softmax_with_sink": [sink_by_appending, sink_loops_float32],
    "entropy": [entropy_loops, entropy_where],
    "evict": [evict_loops, evict_scatter],
    "kv_cache_bytes": [bytes_prod, bytes_numpy],
    "kv_entries": [entries_dispatch, entries_simulated],
    "max_sequences": [sequences_divmod, sequences_loop],
}

# ------------------------------------------------------------------------------------------
# Typical wrong implementations, each with a phrase its hint must contain (at least 3 each)
# ------------------------------------------------------------------------------------------


def _grid(n):
    return np.arange(n)[:, None], np.arange(n)[None, :]


def attention_variant(scale=True, mask_how="before"):
    def impl(q, k, v, mask=None):
        scores = q @ k.T / (np.sqrt(q.shape[-1]) if scale else 1.0)
        if mask is not None and mask_how == "before":
            scores = np.where(mask, scores, -np.inf)
        if mask is not None and mask_how == "multiply":
            scores = scores * mask
        if mask is not None and mask_how == "inverted":
            scores = np.where(mask, -np.inf, scores)
        weights = softmax_logsumexp(scores)
        if mask is not None and mask_how == "after":
            weights = weights * mask
        return weights @ v, weights

    return impl


def naive_softmax(x):
    e = np.exp(np.asarray(x, dtype=float))
    return e / e.sum(axis=-1, keepdims=True)


WRONG = {
    "causal_mask": [
        (lambda n: np.triu(np.ones((n, n), dtype=bool)), "upper instead of lower triangle"),
        (lambda n: np.tril(np.ones((n, n), dtype=bool), -1), "keep the diagonal"),
        (lambda n: np.ones((n, n), dtype=bool), "hides the future"),
        (lambda n: np.tril(np.ones((n, n))), "return a boolean array"),
        (lambda n: np.tril(np.ones((n, n), dtype=bool), k=1), "np.tril(..., k=1)"),
    ],
    "softmax": [
        (naive_softmax, "softmax overflow"),
        (lambda x: np.exp(x - np.max(x)) / np.exp(x - np.max(x)).sum(axis=0, keepdims=True), "last axis"),
        (lambda x: np.exp(x - np.max(x)) / np.exp(x - np.max(x)).sum(axis=-1, keepdims=True), "own maximum"),
        (lambda x: np.exp(x - np.max(x)) / np.exp(x - np.max(x)).sum(), "each row separately"),
        (lambda x: np.exp(x - x.max(axis=-1)) / np.exp(x - x.max(axis=-1)).sum(axis=-1), "keepdims=True"),
    ],
    "attention": [
        (attention_variant(scale=False), "unscaled scores"),
        (attention_variant(mask_how="after"), "masking after the softmax"),
        (attention_variant(mask_how="multiply"), "exp(0) = 1"),
        (attention_variant(mask_how="inverted"), "mask is inverted"),
        (
            lambda q, k, v, mask=None: (attention_loops(q, k, v, mask)[1], attention_loops(q, k, v, mask)[0]),
            "order (out, weights)",
        ),
        (
            lambda q, k, v, mask=None: attention_loops(q, k * math.sqrt(q.shape[-1] / k.shape[0]), v, mask),
            "not the number of keys",
        ),
        (
            lambda q, k, v, mask=None: attention_loops(q, k * math.sqrt(q.shape[-1] / v.shape[-1]), v, mask),
            "not the value dimension",
        ),
    ],
    "sliding_window_mask": [
        (lambda n, w: (_grid(n)[1] <= _grid(n)[0]) & (_grid(n)[0] - _grid(n)[1] <= w), "look-back"),
        (lambda n, w: np.abs(_grid(n)[0] - _grid(n)[1]) < w, "must be causal"),
        (lambda n, w: window_loops(n, w).T, "upper instead of lower triangle"),
        (lambda n, w: window_loops(n, max(w - 1, 0)), "window off by one"),
        (lambda n, w: _grid(n)[0] - _grid(n)[1] < w, "causal condition is missing"),
    ],
    "attended_positions": [
        (lambda mask, i: [q for q in range(mask.shape[0]) if i < mask.shape[1] and mask[q, i]], "row i is query i"),
        (lambda mask, i: [k + 1 for k in positions_list(mask, i)], "0-based"),
        (lambda mask, i: mask[i].copy(), "not the boolean row"),
        (lambda mask, i: set(positions_list(mask, i)), "sets have no order"),
        (lambda mask, i: np.nonzero(mask[i]), "take [0]"),
    ],
    "count_kv_pairs": [
        (lambda mask: int((~mask).sum()), "count the True entries"),
        (lambda mask: mask.sum(axis=1), "one total for the whole mask"),
        (lambda mask: len(mask) * (len(mask) + 1) // 2, "count the mask you are given"),
        (lambda mask: float(mask.sum()), "convert with int"),
        (lambda mask: len(mask), "len(mask) is the number of rows"),
    ],
    "local_global_mask": [
        (lambda n, w, g: window_loops(n, w) | (_grid(n)[1] < g), "non-causal global tokens"),
        (lambda n, w, g: window_loops(n, w) | (_grid(n)[1] < g) | (_grid(n)[0] < g), "must not see the future"),
        (lambda n, w, g: local_global_loops(n, w + 1, g), "window off by one"),
        (lambda n, w, g: window_loops(n, w) & (_grid(n)[1] < g), "in addition to the window"),
        (
            lambda n, w, g: window_loops(n, w) | (np.tril(np.ones((n, n), dtype=bool)) & (_grid(n)[1] <= g)),
            "not k <= num_global",
        ),
        (lambda n, w, g: (_grid(n)[0] - _grid(n)[1] < w) | (_grid(n)[1] < g), "causal condition is missing"),
        (
            lambda n, w, g: (_grid(n)[1] <= _grid(n)[0]) & (_grid(n)[0] - _grid(n)[1] < w) | _grid(n)[1] < g,
            "operator precedence",
        ),
    ],
    "longformer_mask": [
        (lambda n, r, g: (np.abs(_grid(n)[0] - _grid(n)[1]) <= r) | np.isin(_grid(n)[1], g), "symmetric"),
        (
            lambda n, r, g: longformer_loops(n, r - 1, g) if r > 0 else longformer_loops(n, 0, g) & False,
            "radius off by one",
        ),
        (
            lambda n, r, g: (np.tril(longformer_loops(n, r, []))) | np.isin(_grid(n)[0], g) | np.isin(_grid(n)[1], g),
            "bidirectional",
        ),
        (
            lambda n, r, g: np.abs(_grid(n)[0] - _grid(n)[1]) <= r | np.isin(_grid(n)[0], g) | np.isin(_grid(n)[1], g),
            "operator precedence",
        ),
    ],
    "receptive_field": [
        (lambda mask, layers: np.linalg.matrix_power(mask.astype(np.int64), layers) > 0, "residual path"),
        (lambda mask, layers: receptive_bfs(mask, layers).T, "orientation"),
        (lambda mask, layers: receptive_bfs(mask, layers + 1), "exactly `layers` layers"),
        (lambda mask, layers: receptive_matrix_power(mask, min(layers, 10)), "capped at a fixed count"),
    ],
    "min_layers": [
        (lambda mask, src, dst: hops_deque(mask.T, src, dst), "direction"),
        (lambda mask, src, dst: -1 if hops_deque(mask, src, dst) is None else hops_deque(mask, src, dst), "not -1"),
        (
            lambda mask, src, dst: math.inf if hops_deque(mask, src, dst) is None else hops_deque(mask, src, dst),
            "not infinity",
        ),
        (
            lambda mask, src, dst: None if hops_deque(mask, src, dst) is None else hops_deque(mask, src, dst) + 1,
            "count layers",
        ),
        (
            lambda mask, src, dst: next((i for i in range(11) if i == hops_deque(mask, src, dst)), None),
            "capped at a fixed number",
        ),
    ],
    "softmax_with_sink": [
        (lambda s, sink: softmax_logsumexp(s), "plain softmax"),
        (lambda s, sink: np.exp(s - s.max()) / (np.exp(-s.max()) + np.exp(s - s.max()).sum()), "1 only when"),
        (lambda s, sink: np.exp(s - s.max()) / (np.exp(sink) + np.exp(s - s.max()).sum()), "shift the sink"),
        (lambda s, sink: softmax_logsumexp(np.append(s, sink)), "real keys only"),
    ],
    "entropy": [
        (lambda w: entropy_loops(w) / math.log(2), "natural log"),
        (lambda w: float(-(w * np.log(w)).sum()), "zero weights"),
        (lambda w: -entropy_loops(w), "minus sign"),
    ],
    "evict": [
        (lambda s, keep: softmax_logsumexp(s) * keep, "renormalising wrongly"),
        (lambda s, keep: evict_loops(s, ~keep) if (~keep).any() else np.zeros(len(s)), "STAY"),
        (lambda s, keep: softmax_logsumexp(s[keep]), "same shape"),
        (lambda s, keep: np.exp(s) * keep / (np.exp(s) * keep).sum(), "overflow"),
        (lambda s, keep: np.exp(s - s.max()) * keep / (np.exp(s - s.max()) * keep).sum(), "maximum of the KEPT"),
    ],
    "kv_cache_bytes": [
        (lambda L, h, d, t, batch=1, bytes_per_element=2: L * h * d * t * batch * bytes_per_element, "factor 2"),
        (lambda L, h, d, t, batch=1, bytes_per_element=2: 2 * L * h * d * t * 2, "batch and bytes_per_element"),
        (lambda L, h, d, t, batch=1, bytes_per_element=2: 16 * L * h * d * t * batch * bytes_per_element, "bits"),
        (lambda L, h, d, t, batch=1, bytes_per_element=2: 2.0 * L * h * d * t * batch * bytes_per_element, "int"),
    ],
    "kv_entries": [
        (
            lambda p, t, window=None, sinks=0: t if p == "dense" else (window if p == "window" else sinks + window),
            "only t entries exist",
        ),
        (lambda p, t, window=None, sinks=0: t if p == "dense" else min(t, window), "sinks + window"),
        (lambda p, t, window=None, sinks=0: t if p == "dense" else max(t, window + sinks), "min, not max"),
    ],
    "max_sequences": [
        (
            lambda b, L, h, d, t, bytes_per_element=2: math.ceil(b / bytes_prod(L, h, d, t, 1, bytes_per_element)),
            "round down",
        ),
        (lambda b, L, h, d, t, bytes_per_element=2: b // (L * h * d * t * bytes_per_element), "factor 2"),
        (lambda b, L, h, d, t, bytes_per_element=2: b // bytes_prod(L, h, d, t), "bytes_per_element"),
    ],
}

FUNCTIONS = [n for names in EXERCISE_SETS.values() for n in names if not specs()[n].is_answer]


def test_every_exercise_function_has_a_catalogue():
    for name in FUNCTIONS:
        assert len(CORRECT[name]) >= 2, name
        assert len(WRONG[name]) >= 3, name


@pytest.mark.parametrize(
    "name,impl", [(n, f) for n in FUNCTIONS for f in CORRECT[n]], ids=lambda x: getattr(x, "__name__", str(x))
)
def test_alternative_correct_implementations_pass(name, impl):
    result = run_check(name, impl)
    assert result.ok, result.report()
    assert result.total >= 5


@pytest.mark.parametrize(
    "name,impl,phrase",
    [(n, f, p) for n in FUNCTIONS for f, p in WRONG[n]],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_typical_mistakes_fail_with_the_right_hint(name, impl, phrase):
    result = run_check(name, impl)
    assert not result.ok
    assert result.passed < result.total
    hint = result.failures[0].hint or ""
    assert phrase in hint, result.report()


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.slow
def test_every_catalogued_hint_is_reachable(name):
    """Each mistake in the checks' own catalogue is caught, with its own hint."""
    spec = specs()[name]
    for hint, wrong in spec.mistakes:
        result = run_check(name, wrong, allow_course_code=True)  # the catalogue lives in the package
        assert not result.ok, hint
        assert result.failures[0].hint == hint, result.report()


# ------------------------------------------------------------------------------------------
# Answers (constants)
# ------------------------------------------------------------------------------------------

ANSWERS = {
    "kv_pairs_at_500": (4, [(None, "not answered"), (500, "full causal"), (3, "itself"), ("4", "without quotes")]),
    "mistral_kv_bytes_per_token": (131072, [(None, "not answered"), (524288, "query heads"), (65536, "factor 2")]),
    "global_tokens_always_help": (False, [(None, "not answered"), (True, "diminish"), ("False", "without quotes")]),
    "legal_contracts_choice": ("B", [(None, "not answered"), ("A", "N^2"), ("C", "N / W layers"), ("E", "one letter")]),
}


def test_every_answer_is_covered():
    answers = {n for names in EXERCISE_SETS.values() for n in names if specs()[n].is_answer}
    assert answers == set(ANSWERS) | {"global_tokens_reason"}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_quiz_verdicts_never_give_the_answer_away(name):
    right, wrongs = ANSWERS[name]
    spec = specs()[name]
    texts = [run_check(name, value).report() for value, _ in wrongs]
    texts += [run_check(name, value).report() for value in (0, 1, 7, 4.0, "x", True)]
    texts += [hint for hint, _ in spec.mistakes]
    for text in texts:
        lowered = text.lower()
        assert f"expected {str(right).lower()}" not in lowered, text
        if name == "legal_contracts_choice":
            assert 'e.g. "b"' not in lowered and "is b" not in lowered, text
        if isinstance(right, int) and not isinstance(right, bool) and right >= 100:
            assert str(right) not in text, text


def test_free_text_is_recorded_for_review_not_graded_by_keywords():
    good = "A few global tokens are a bottleneck: each one is a single vector that every position shares."
    for text in (good, "cost cost cost cost"):
        result = run_check("global_tokens_reason", text)
        assert not result.ok and result.needs_review == text and "RECORDED" in result.report()
    for value, phrase in ((None, "not answered"), ("", "too short"), (3, "expected a string")):
        result = run_check("global_tokens_reason", value)
        assert result.needs_review is None and phrase in result.report()


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_answers(name):
    right, wrongs = ANSWERS[name]
    assert run_check(name, right).ok
    for value, phrase in wrongs:
        result = run_check(name, value)
        assert not result.ok and result.total == 1
        text = result.report()
        assert phrase in text, text


def test_answer_variants_accepted():
    assert run_check("kv_pairs_at_500", np.int64(4)).ok
    assert run_check("global_tokens_always_help", np.bool_(False)).ok
    assert run_check("legal_contracts_choice", " b ").ok


# ------------------------------------------------------------------------------------------
# Robustness: a check never raises, has time limits, and is reproducible
# ------------------------------------------------------------------------------------------


class Weird:
    def __eq__(self, other):
        raise RuntimeError("no comparing me")

    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array either")

    def __repr__(self):
        raise RuntimeError("and no repr")


class BadMessage(Exception):
    def __str__(self):
        raise RuntimeError("broken __str__")


def exits(n):
    raise SystemExit(3)


def raises_bad_message(n):
    raise BadMessage()


@pytest.mark.parametrize(
    "impl,phrase",
    [
        (exits, "raised SystemExit"),
        (raises_bad_message, "raised BadMessage"),
        (lambda n: Weird(), "expected a boolean numpy array"),
        (lambda n: None, "forget the `return`"),
        (lambda n: (x for x in range(n)), "expected a boolean numpy array"),
        (lambda n: "1 0\n1 1", "expected a boolean numpy array"),
    ],
)
def test_check_never_raises_on_wrong_answers(impl, phrase, capsys):
    result = check("causal_mask", impl)
    out = capsys.readouterr().out
    assert not result.ok
    assert "FAILED" in out and phrase in out, out


def test_weird_answers_and_names_do_not_raise(capsys):
    assert not check("kv_pairs_at_500", Weird()).ok
    assert not check("softmax", lambda x: [Weird()]).ok
    result = check("causal_masks", causal_tril)
    assert result.total == 0 and "unknown exercise name" in capsys.readouterr().out
    result = check("causal_mask", causal_tril(3))  # called instead of passed
    assert "without calling it" in result.report()


def test_stub_reports_not_implemented_with_its_hint():
    def causal_mask(n):
        raise NotImplementedError("compare a column of query indices with a row of key indices")

    result = run_check("causal_mask", causal_mask)
    assert result.passed == 0 and result.total == 5
    assert result.failures[0].reason == "not implemented yet"
    assert "column of query indices" in result.failures[0].hint


def forever(n):
    while True:
        pass


def test_infinite_loop_times_out_in_the_main_thread():
    assert threading.current_thread() is threading.main_thread()
    result = run_check("causal_mask", forever, timeout=0.2)
    assert result.passed == 0
    assert "timed out after 0.2 s" in result.failures[0].reason
    assert all("not run" in f.reason for f in result.failures[1:])


def test_previous_alarm_timer_is_given_back():
    if not hasattr(signal, "setitimer"):
        pytest.skip("no SIGALRM timers on this platform")
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 60.0)
        run_check("causal_mask", forever, timeout=0.1)
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 50 < left <= 60
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not fired


def test_thread_fallback_times_out_and_says_so():
    stop = threading.Event()

    def slow(n):
        stop.wait(30)  # a runaway call we can end when the test is over
        return causal_tril(n)

    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", run_check("causal_mask", slow, timeout=0.2)))
    worker.start()
    worker.join(20)
    stop.set()
    result = box["r"]
    assert "timed out" in result.failures[0].reason
    assert any("background" in note for note in result.notes)


def test_correct_answer_in_thread_fallback():
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", run_check("softmax", softmax_float32)))
    worker.start()
    worker.join(60)
    assert box["r"].ok


def test_verdicts_are_reproducible():
    first = run_check("attention", attention_variant(scale=False)).report()
    second = run_check("attention", attention_variant(scale=False)).report()
    assert first == second


def test_smallest_failing_input_first_and_expected_vs_got():
    result = run_check("causal_mask", lambda n: np.triu(np.ones((n, n), dtype=bool)))
    first = result.failures[0]
    assert first.input == "n=2"  # n = 1 passes: the first failing size
    assert first.expected == "1 .\n1 1" and first.got == "1 1\n. 1"
    assert [f.size for f in result.failures] == sorted(f.size for f in result.failures)


def test_a_function_that_modifies_its_input_fails_with_a_hint():
    def softmax_in_place(x):
        x -= x.max(axis=-1, keepdims=True)  # modifies the caller's array
        np.exp(x, out=x)
        x /= x.sum(axis=-1, keepdims=True)
        return x

    result = run_check("softmax", softmax_in_place)
    assert not result.ok
    assert "modified its input x in place" in result.failures[0].reason
    assert "copy" in result.failures[0].hint
    case = specs()["softmax"].cases[1].args[0]
    assert case.tolist() == [1.0, 2.0, 3.0]  # the expected values were never touched


def test_the_learners_prints_are_hidden_during_a_check(capsys):
    def chatty(weights):
        print("debugging", weights)
        return entropy_loops(weights)

    result = check("entropy", chatty)
    out = capsys.readouterr().out
    assert result.ok and "debugging" not in out and out.count("\n") == 1


def test_check_prints_and_returns_the_result(capsys):
    result = check("entropy", entropy_loops)
    assert result.ok and result.score == 1.0
    assert capsys.readouterr().out.startswith("entropy: PASSED")
    assert repr(result) == f"<CheckResult entropy: {result.total}/{result.total} passed>"


# ------------------------------------------------------------------------------------------
# The checks' references agree with the course package
# ------------------------------------------------------------------------------------------


def test_references_agree_with_the_core_package():
    from globattn_lite import attention, costs, patterns, softmax_tools

    rng = np.random.default_rng(0)
    for n in range(1, 10):
        assert (ex1_dense._ref_causal_mask(n) == patterns.causal().mask(n)).all()
        for w in range(1, n + 2):
            assert (ex2_sparse._ref_sliding_window_mask(n, w) == patterns.sliding_window(w).mask(n)).all()
            for g in range(0, n + 1):
                core = (
                    (patterns.causal() & (patterns.sliding_window(w) | patterns.sinks(g)))
                    if g
                    else patterns.sliding_window(w)
                )
                assert (ex3_global._ref_local_global_mask(n, w, g) == core.mask(n)).all()
        for r in range(0, n + 1):
            g = sorted(rng.choice(n, size=min(2, n), replace=False).tolist())
            core = patterns.band(r) | patterns.global_positions(g)
            assert (ex3_global._ref_longformer_mask(n, r, g) == core.mask(n)).all()
    for _ in range(100):
        n = int(rng.integers(1, 8))
        mask = rng.random((n, n)) < 0.3
        layers = int(rng.integers(0, 5))
        assert (ex3_global._ref_receptive_field(mask, layers) == costs.receptive_field(mask, n, layers)).all()
        src, dst = (int(x) for x in rng.integers(0, n, 2))
        assert ex3_global._ref_min_layers(mask, src, dst) == costs.hops(mask, n, src, dst)
        x = rng.normal(size=n) * 10
        keep = rng.random(n) < 0.5
        keep[0] = True
        sink = float(rng.normal())
        assert np.allclose(ex4_softmax._ref_softmax_with_sink(x, sink), softmax_tools.softmax_with_sink(x, sink))
        assert np.allclose(ex4_softmax._ref_evict(x, keep), softmax_tools.evict(x, keep))
        w = softmax_tools.evict(x, keep)
        assert np.isclose(ex4_softmax._ref_entropy(w), softmax_tools.entropy(w))
        q, k, v = rng.normal(size=(n, 3)), rng.normal(size=(n + 1, 3)), rng.normal(size=(n + 1, 2))
        m = rng.random((n, n + 1)) < 0.5
        m[:, 0] = True
        for ours, theirs in zip(ex1_dense._ref_attention(q, k, v, m), attention.attention(q, k, v, m), strict=True):
            assert np.allclose(ours, theirs)
        assert np.allclose(ex1_dense._ref_softmax(q), attention.softmax(q))
    for args in [(32, 32, 128, 1), (3, 5, 7, 11, 2, 4), (1, 1, 1, 1, 1, 1)]:
        assert ex5_costs._ref_kv_cache_bytes(*args) == costs.kv_cache_bytes(*args)
    for policy, t, window, sinks in [
        ("dense", 5, None, 0),
        ("window", 3, 5, 0),
        ("window", 10, 4, 0),
        ("sinks", 10, 4, 2),
        ("sinks", 3, 4, 2),
    ]:
        assert ex5_costs._ref_kv_entries(policy, t, window, sinks) == costs.kv_entries(
            policy, t, window=window, sinks=sinks
        )
    assert ex5_costs._ref_max_sequences(24 * 2**30, 32, 32, 128, 4096) == costs.max_sequences(
        24 * 2**30, 32, 32, 128, 4096
    )
    assert specs()["mistral_kv_bytes_per_token"].reference() == costs.PRESETS["Mistral-7B"].kv_bytes_per_token()
    quiz = patterns.causal() & (patterns.sliding_window(3) | patterns.sinks(1))
    assert specs()["kv_pairs_at_500"].reference() == quiz.kv_counts(1024)[499]


RECORD_INPUTS = """
import json, sys
sys.path.insert(0, ".")
if sys.argv[1] == "with-local-module":
    import many_constants  # a local module full of integer constants
from globattn_lite.checks import ex2_sparse, ex5_costs, run_check
seen = []
def spy(n, window):
    seen.append([n, window])
    return ex2_sparse._ref_sliding_window_mask(n, window)
run_check("sliding_window_mask", spy, allow_course_code=True)
def spy_entries(policy, t, window=None, sinks=0):
    seen.append([policy, t, window, sinks])
    return ex5_costs._ref_kv_entries(policy, t, window, sinks)
run_check("kv_entries", spy_entries, allow_course_code=True)
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_random_inputs_do_not_depend_on_the_context(tmp_path):
    """Same inputs whatever else is imported (hypothesis would otherwise mix in constants
    from local modules), and no .hypothesis folder is written next to the notebook."""
    import subprocess
    import sys

    values = ", ".join(str(i) for i in range(1, 5000, 3))
    (tmp_path / "many_constants.py").write_text(f"VALUES = [{values}]\n", encoding="utf-8")
    (tmp_path / "record.py").write_text(RECORD_INPUTS, encoding="utf-8")
    runs = [
        subprocess.run([sys.executable, "record.py", mode], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        for mode in ("with-local-module", "plain")
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert runs[0].stdout == runs[1].stdout
    assert not (tmp_path / ".hypothesis").exists()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [  # the caller's mistakes, not the learner's function's: they raise, naming the argument
        ({"timeout": 0}, ValueError, "timeout must be > 0"),  # setitimer(0) would switch the limit off
        ({"timeout": -1}, ValueError, "timeout must be > 0"),
        ({"timeout": "2"}, TypeError, "timeout must be a real number"),
        ({"budget": float("nan")}, ValueError, "budget must be finite"),
        ({"name": ["causal_mask"]}, TypeError, "name must be the exercise name as a string"),
    ],
)
def test_bad_check_arguments_raise_naming_the_argument(kwargs, error, words, capsys):
    name = kwargs.pop("name", "causal_mask")
    for fn in (run_check, check):
        with pytest.raises(error, match=words):
            fn(name, causal_tril, **kwargs)


# ------------------------------------------------------------------------------------------
# Fairness: same verdict as the grader, no credit for the course's own code, partial credit
# ------------------------------------------------------------------------------------------


def test_strings_compared_with_is_fail_with_a_hint_to_use_equals():
    source = (
        "def kv_entries_is(policy, t, window=None, sinks=0):\n"
        "    if policy is 'dense':\n"  # the mistake under test (Python warns about it when compiling)
        "        return t\n"
        "    if policy is 'window':\n"
        "        return min(t, window)\n"
        "    return min(t, sinks + window)\n"
    )
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        exec(compile(source, "<learner>", "exec"), namespace)
    kv_entries_is = namespace["kv_entries_is"]
    result = run_check("kv_entries", kv_entries_is)
    assert not result.ok
    assert "not `is`" in result.failures[0].hint, result.report()


def test_the_course_implementation_gets_no_credit():
    from globattn_lite import patterns, softmax_tools

    for name, candidate in [
        ("evict", softmax_tools.evict),
        ("evict", ex4_softmax._ref_evict),
        ("causal_mask", lambda n: patterns.causal().mask(n)),
    ]:
        result = run_check(name, candidate)
        assert result.passed == 0 and result.score == 0.0, result.report()
        assert "uses the course's implementation" in result.failures[0].reason
        assert "no credit" in result.failures[0].hint


def test_calling_the_course_code_for_some_inputs_only_still_gets_no_credit():
    from globattn_lite import patterns

    def sometimes(n):
        return patterns.causal().mask(n) if n > 3 else causal_tril(n)

    result = run_check("causal_mask", sometimes)
    assert result.passed >= 3 and result.score == 0.0
    assert result.failures[0].reason.startswith("uses the course's implementation"), result.report()


def test_a_mask_right_only_at_n_1_scores_nothing():
    result = run_check("causal_mask", lambda n: np.ones((n, n), dtype=bool))
    assert result.passed == 1 and result.score == 0.0
    half = run_check("causal_mask", lambda n: causal_tril(n) if n <= 3 else np.ones((n, n), dtype=bool))
    assert 0 < half.score < 1 and half.points == 2 and half.max_points == 3 + 2


def test_a_wrong_mask_carries_both_masks_for_a_picture():
    from globattn_lite.checks.picture import mask_difference_svg

    result = run_check("causal_mask", lambda n: np.triu(np.ones((n, n), dtype=bool)))
    expected, got = result.failures[0].masks
    svg = mask_difference_svg(expected, got)
    differing = int((expected != got).sum())
    assert svg.startswith("<svg") and svg.count('stroke="#d62728"') == 2 * differing  # in both panels
    with pytest.raises(ValueError, match=r"two 2-D masks of one shape, got \(2, 2\) and \(3, 3\)"):
        mask_difference_svg(np.ones((2, 2), bool), np.ones((3, 3), bool))


def test_seeded_inputs_differ_from_the_public_ones_and_repeat():
    def recorder():
        seen = []

        def spy(n, window):
            seen.append((n, window))
            return window_loops(n, window)

        return seen, spy

    runs = {}
    for seed in (None, None, 1, 1, 2):
        seen, spy = recorder()
        assert run_check("sliding_window_mask", spy, seed=seed).ok
        runs.setdefault(seed, []).append(seen)
    assert runs[None][0] == runs[None][1] and runs[1][0] == runs[1][1]
    assert runs[None][0] != runs[1][0] != runs[2][0]
    with pytest.raises(ValueError, match="seed must be None or an int >= 0, got -1"):
        run_check("causal_mask", causal_tril, seed=-1)
