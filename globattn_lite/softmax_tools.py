"""What a softmax does to one query's attention scores: sinks, entropy and eviction.

:func:`softmax` itself lives here (``attention.softmax`` is the same function, re-exported).

Every function works on the LAST axis of ``scores``: a 1-D array is one query's scores
over its keys; a batched array (..., n) is many queries (or heads) at once. Scores may
contain ``-inf`` (a masked key, weight exactly 0) but not NaN or ``+inf``. All sums of
exponentials are taken after subtracting the largest logit, so scores of 1e4 or -1e4 and
large sink logits are fine.

Softmax with a sink::

    w_i  = exp(s_i) / (exp(b) + sum_j exp(s_j))      (weights over the real keys, sum < 1)
    sink = exp(b)   / (exp(b) + sum_j exp(s_j))      (the mass the sink takes, 1 - sum_i w_i)

With ``b = 0`` this is SoftMax_1, "softmax plus one" (Evan Miller, "Attention Is Off By
One", 2023; StreamingLLM, Xiao et al. 2024, section 3.3): ``exp(s_i) / (1 + sum_j exp(s_j))``.
It equals ordinary attention with one extra key and value of all zeros prepended: the
zero key scores ``q . 0 = 0`` (so its logit is 0 = b) and the zero value adds nothing to
the output, so the output is ``sum_i w_i v_i`` with weights that may sum to less than 1.
A head with nothing worth attending to can then put (almost) no weight anywhere.
gpt-oss (Hugging Face ``modeling_gpt_oss.py``) learns one sink logit ``b`` per head,
appends it to the logits, takes the softmax and drops the sink column: exactly
``softmax_with_sink(scores, sink_logit=b)``.

What a sink changes, exactly. With the sink's share ``s = sink_weight(scores, b)`` the real keys
get ``w = (1 - s) * softmax(scores)``:

* the distribution over the real keys, renormalised (``w / (1 - s)``), is ``softmax(scores)``
  whatever ``b`` is: a sink does not flatten or sharpen it;
* the head's output ``sum_i w_i v_i`` is the plain output scaled by ``1 - s``: with a zero sink
  value the sink is an "attend to nothing" gate (Bondarenko et al. 2023, "Quantizable
  Transformers: Removing Outliers by Helping Attention Heads Do Nothing");
* the fixed term ``exp(b)`` sits in every denominator, so one key entering or leaving a sliding
  window moves the absolute weights (and the output) less: :func:`window_weights`,
  :func:`slide_weight_change`, :func:`window_outputs` measure it.

``w`` sums to ``1 - s``, so it is not a distribution and has no entropy of its own
(``-sum w_i ln w_i = (1 - s)(H(softmax) - ln(1 - s))`` is an artefact of the formula).
:func:`entropy` refuses weights that do not sum to 1; take the entropy of
:func:`sink_distribution` (the full distribution, sink included) or of ``softmax(scores)``
(the real keys, renormalised), and say which.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validate import int_arg, real_array

__all__ = [
    "softmax",
    "softmax_with_sink",
    "sink_weight",
    "sink_distribution",
    "entropy",
    "window_weights",
    "slide_weight_change",
    "window_outputs",
    "evict",
    "eviction_renormalisation",
]

#: How far from 1 the weights given to :func:`entropy` may sum (float32 softmax rows over
#: thousands of keys are off by about 1e-6; a sink share below this changes an entropy by < 1e-4 nats).
SUM_TOLERANCE = 1e-5


def softmax(x, axis=-1) -> np.ndarray:
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis``.

    Subtracting the max keeps large inputs (1e4) finite. ``-inf`` means "masked": it gets
    weight exactly 0, and a slice that is entirely ``-inf`` gives all zeros instead of NaN.
    NaN and ``+inf`` are rejected. Ints become float64; floats keep their precision.
    """
    x = real_array("x", x, min_ndim=1)
    axis = int_arg("axis", axis, minimum=-x.ndim, maximum=x.ndim - 1)
    if x.shape[axis] == 0:
        raise ValueError(f"x must have at least one entry along axis {axis}, got shape {x.shape}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("x must not contain NaN or +inf (use -inf to mask an entry)")
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isneginf(top), 0.0, top)  # an all -inf slice: exp(-inf - 0) = 0
    e = np.exp(x - top)
    total = e.sum(axis=axis, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def _scores_arg(name: str, scores) -> np.ndarray:
    """``scores`` as a float64 array with at least one axis and one key; -inf allowed."""
    arr = real_array(name, scores, min_ndim=1, float64=True)
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one key along the last axis, got shape {arr.shape}")
    if np.isnan(arr).any() or np.isposinf(arr).any():
        raise ValueError(f"{name} must not contain NaN or +inf (-inf marks a masked key)")
    return arr


def _sink_arg(sink_logit, batch_shape: tuple) -> np.ndarray:
    """The sink logit as a float64 array that broadcasts to ``batch_shape + (1,)``.

    A scalar is shared by every row; an array (e.g. one logit per head, gpt-oss style)
    must broadcast against the scores' leading axes ``batch_shape``.
    """
    if isinstance(sink_logit, (bool, np.bool_)):
        raise TypeError(f"sink_logit must be a real number or array of them, got {sink_logit!r}")
    if isinstance(sink_logit, numbers.Real):
        sink = np.asarray(float(sink_logit))
    else:
        sink = real_array("sink_logit", sink_logit, float64=True)
    if not np.isfinite(sink).all():
        raise ValueError("sink_logit must be finite")
    try:
        fits = np.broadcast_shapes(sink.shape, batch_shape) == batch_shape
    except ValueError:
        fits = False
    if not fits:  # a sink may not add axes: the result keeps the shape of scores
        raise ValueError(
            f"sink_logit of shape {sink.shape} does not broadcast to the scores' leading "
            f"axes {batch_shape}: pass a scalar or one logit per row (e.g. per head)"
        )
    return sink[..., None]


def _sink_parts(scores, sink_logit):
    """Shifted exponentials of the keys and of the sink, and their total, all over the same max."""
    s = _scores_arg("scores", scores)
    b = _sink_arg(sink_logit, s.shape[:-1])
    m = np.maximum(s.max(axis=-1, keepdims=True), b)  # finite: b is finite
    e_keys = np.exp(s - m)
    e_sink = np.exp(b - m)
    total = e_sink + e_keys.sum(axis=-1, keepdims=True)  # >= 1 because one term is exp(0)
    return e_keys, e_sink, total


def softmax_with_sink(scores, sink_logit=0.0) -> np.ndarray:
    """Softmax over the last axis with an extra sink logit that takes mass but no key.

    ``w_i = exp(s_i) / (exp(b) + sum_j exp(s_j))`` with ``b = sink_logit``; the weights sum
    to ``1 - sink_weight(scores, b) < 1`` (in float64 the sum rounds to 1 once the sink's
    share is below about 1e-16). ``sink_logit=0`` is SoftMax_1 (= prepending a zero
    key and a zero value); a learned per-head ``b`` is gpt-oss's sink. ``sink_logit`` may be
    a scalar or an array broadcastable to ``scores.shape[:-1]`` (one logit per head).
    Returns an array of the same shape as ``scores``.
    """
    e_keys, _, total = _sink_parts(scores, sink_logit)
    return e_keys / total


def sink_weight(scores, sink_logit=0.0):
    """The mass the sink takes: ``exp(b) / (exp(b) + sum_j exp(s_j)) = 1 - sum_i w_i``.

    Returns a float for 1-D ``scores``, an array of shape ``scores.shape[:-1]`` otherwise.
    It is close to 1 when every score is far below ``b`` and close to 0 when some score is
    far above it.
    """
    _, e_sink, total = _sink_parts(scores, sink_logit)
    out = (e_sink / total)[..., 0]
    return float(out) if out.ndim == 0 else out


def sink_distribution(scores, sink_logit=0.0) -> np.ndarray:
    """The full distribution of a softmax with a sink, the sink first: ``[s, w_1, ..., w_n]``.

    ``s = sink_weight(scores, b)``, ``w = softmax_with_sink(scores, b)``; it sums to 1 and has
    one more entry than ``scores`` on the last axis. ``entropy(sink_distribution(s, b))`` is the
    entropy with the sink counted as an outcome: ``h(s) + (1 - s) H(softmax(scores))`` with
    ``h(s) = -s ln s - (1 - s) ln(1 - s)``.
    """
    e_keys, e_sink, total = _sink_parts(scores, sink_logit)
    e_sink = np.broadcast_to(e_sink, e_keys.shape[:-1] + (1,))
    return np.concatenate([e_sink, e_keys], axis=-1) / total


def entropy(weights, axis=-1):
    """Shannon entropy ``H = -sum_i w_i ln w_i`` (natural log, nats) of a distribution along ``axis``.

    Zero weights contribute 0 (the limit of ``w ln w``). The weights must sum to 1 (within
    ``SUM_TOLERANCE``): a softmax with a sink gives the real keys weights that sum to ``1 - s``,
    and ``-sum w ln w`` of those is not the entropy of any distribution, so it raises a
    ValueError naming the two entropies that exist: ``entropy(sink_distribution(scores, b))``
    (sink included) and ``entropy(softmax(scores))`` (real keys, renormalised). A uniform
    distribution over n keys gives ln n; all mass on one key gives 0. Returns a float for 1-D
    input, an array otherwise.
    """
    arr = real_array("weights", weights, min_ndim=1, float64=True, finite=True)
    axis = int_arg("axis", axis, minimum=-arr.ndim, maximum=arr.ndim - 1)
    if (arr < 0).any():
        raise ValueError(f"weights must be non-negative, got a minimum of {arr.min()}")
    total = arr.sum(axis=axis)
    if np.any(np.abs(total - 1.0) > SUM_TOLERANCE):
        raise ValueError(
            f"weights must sum to 1 along axis {axis} (a probability distribution), got sums from "
            f"{float(np.min(total)):.6g} to {float(np.max(total)):.6g}. Weights of a softmax with a sink "
            "sum to 1 - s and have no entropy of their own: use entropy(sink_distribution(scores, b)) "
            "for the full distribution (sink included), or entropy(softmax(scores)) for the real keys "
            "renormalised (a sink leaves that distribution unchanged)"
        )
    safe = np.where(arr > 0, arr, 1.0)  # ln 1 = 0, so zero weights add nothing
    out = 0.0 - (arr * np.log(safe)).sum(axis=axis)  # 0.0 - x, not -x: one-hot gives 0.0, not -0.0
    return float(out) if np.ndim(out) == 0 else out


def window_weights(scores, window, sink_logit=None) -> np.ndarray:
    """Weights of a causal window of ``window`` keys sliding along a stream of per-key ``scores``.

    ``scores`` (1-D, length T) is the score the sliding head gives each key of the stream (the
    toy assumes a head that scores keys by their content, the same at every step). Row i is the
    window of keys ``i .. i + window - 1`` (the query at ``t = i + window - 1`` sees its last
    ``window`` keys, itself included): ``softmax`` over them, or with ``sink_logit`` b,
    ``softmax_with_sink`` (an always-present sink that holds no key of the stream).
    Returns an array of shape ``(T - window + 1, window)``.
    """
    s = _scores_arg("scores", scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (one score per key of the stream), got shape {s.shape}")
    window = int_arg("window", window, minimum=1, maximum=s.size)
    rows = np.lib.stride_tricks.sliding_window_view(s, window)
    return softmax(rows) if sink_logit is None else softmax_with_sink(rows, sink_logit)


def slide_weight_change(scores, window, sink_logit=None) -> np.ndarray:
    """Largest absolute change of the weight of any key that stays in the window, per slide.

    Sliding from row i to row i + 1 of ``window_weights`` drops key i and adds key
    ``i + window``; the ``window - 1`` keys in between stay, each weight multiplied by
    ``Z_i / Z_(i+1)`` (the two denominators). Returns ``max_j |w_(i+1)(j) - w_i(j)|`` over the
    staying keys j, shape ``(T - window,)``. With a sink, ``exp(b)`` sits in both denominators, so
    every staying weight moves less: exactly ``(1 - s_i)(1 - s_(i+1))`` times the plain head's
    change (s the sink's share in the two windows). Example: all scores 0 and one key of score a
    arriving gives ``(e^a - 1) / ((e^b + W)(e^b + W - 1 + e^a))`` (no sink: drop the e^b).
    """
    w = window_weights(scores, window, sink_logit)
    if w.shape[1] < 2:
        raise ValueError("window must be at least 2: with one key no key stays in the window as it slides")
    if w.shape[0] < 2:
        raise ValueError("scores must be longer than window: the window needs room to slide")
    return np.abs(w[1:, :-1] - w[:-1, 1:]).max(axis=-1)


def window_outputs(scores, values, window, sink_logit=None) -> np.ndarray:
    """The head's output ``sum_j w_j v_j`` at each position of the sliding window.

    ``values`` (T, d) holds one value vector per key of the stream; the weights are
    ``window_weights(scores, window, sink_logit)`` and the sink's value is zero (SoftMax_1,
    gpt-oss). So with a sink the output is exactly ``(1 - s_t)`` times the plain output, s_t the
    sink's share at that position: a gate, "attend to nothing" when s_t is near 1.
    Returns an array of shape ``(T - window + 1, d)``.
    """
    v = real_array("values", values, float64=True, finite=True)
    s = _scores_arg("scores", scores)
    if v.ndim != 2 or s.ndim != 1 or v.shape[0] != s.size:
        raise ValueError(
            f"values must have shape (T, d) with one row per score, got values {v.shape} for scores {s.shape}"
        )
    w = window_weights(s, window, sink_logit)
    rows = np.lib.stride_tricks.sliding_window_view(v, w.shape[1], axis=0)  # (T - W + 1, d, W)
    return np.einsum("tw,tdw->td", w, rows)


def _keep_arg(keep, shape: tuple) -> np.ndarray:
    arr = np.asarray(keep)
    if arr.dtype != np.bool_:
        raise TypeError(f"keep must be a boolean array (True = key stays in the cache), got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"keep must have the same shape as scores {shape}, got {arr.shape}")
    return arr


def _kept_logsumexp(s: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``ln sum_{i kept} exp(s_i)`` along the last axis (keepdims); raises if a row keeps nothing."""
    masked = np.where(keep, s, -np.inf)
    m = masked.max(axis=-1, keepdims=True)
    if not np.isfinite(m).all():
        raise ValueError(
            "keep must leave at least one key with a finite score in every row: a softmax over "
            "no keys is undefined (keep all False, or only -inf scores kept)"
        )
    return m + np.log(np.exp(masked - m).sum(axis=-1, keepdims=True))


def evict(scores, keep) -> np.ndarray:
    """Softmax over the kept keys only: ``w_i = exp(s_i) / sum_{j kept} exp(s_j)`` if ``keep[i]``, else 0.

    This is what a query sees after the evicted keys have left the KV cache: the kept
    weights again sum to 1, each one larger than before by ``eviction_renormalisation``.
    ``keep`` is a boolean array of the same shape as ``scores``; a row that keeps no key
    raises ValueError.
    """
    s = _scores_arg("scores", scores)
    keep = _keep_arg(keep, s.shape)
    lse = _kept_logsumexp(s, keep)
    return np.where(keep, np.exp(np.where(keep, s, -np.inf) - lse), 0.0)


def eviction_renormalisation(scores, keep):
    """``Z_all / Z_kept = sum_i exp(s_i) / sum_{i kept} exp(s_i) >= 1``.

    The factor by which every kept weight grows when the other keys are evicted:
    ``evict(s, keep)[i] == softmax(s)[i] * factor`` for kept i. Evicting a key that held
    half the mass (an attention sink) doubles every remaining weight. Computed from
    log-sum-exps; a factor beyond the float64 range (above about 1e308) is returned as inf.
    Returns a float for 1-D input, an array of shape ``scores.shape[:-1]`` otherwise.
    """
    s = _scores_arg("scores", scores)
    keep = _keep_arg(keep, s.shape)
    lse_kept = _kept_logsumexp(s, keep)
    m = s.max(axis=-1, keepdims=True)  # finite: the kept row has a finite score
    lse_all = m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True))
    with np.errstate(over="ignore"):
        out = np.exp(np.maximum(lse_all - lse_kept, 0.0))[..., 0]
    return float(out) if out.ndim == 0 else out
