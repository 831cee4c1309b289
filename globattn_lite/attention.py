"""Attention with a mask: a numpy version to read, a dense torch reference, and an efficient
local + global torch version that never builds the N x N score matrix.

Conventions (the whole package): indices are 0-based and ``mask[q, k] is True`` means query ``q``
may attend to key ``k``. Scores are ``q k^T / sqrt(d)``; the mask is applied BEFORE the softmax,
so a masked weight is exactly 0. A query row with no visible key at all gets zero weights and a
zero output (not NaN): it "attends to nothing".

torch is imported lazily inside the torch functions, so ``import globattn_lite.attention`` stays
numpy-only.
"""

from __future__ import annotations

import math

import numpy as np

from globattn_lite import patterns
from globattn_lite._validate import int_arg, real_array
from globattn_lite.softmax_tools import softmax  # re-exported: attention.softmax is softmax_tools.softmax

__all__ = [
    "softmax",
    "attention",
    "top_k_mask",
    "local_global_pattern",
    "dense_attention",
    "local_global_attention",
]


# --------------------------------------------------------------------------- numpy


def _mask_arg(mask, shape: tuple) -> np.ndarray:
    """``mask`` (a bool array or a Pattern) as a bool array that broadcasts to ``shape`` =
    (..., n, m), the leading dimensions of q, k and v (v's may add a batch)."""
    n, m = shape[-2:]
    if isinstance(mask, patterns.Pattern) and n != m:
        raise ValueError(f"mask is a Pattern, which needs as many queries as keys, got n={n} and m={m}")
    mask = patterns.as_mask(mask, n, name="mask", square=False)
    try:
        ok = np.broadcast_shapes(mask.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"mask must broadcast to the scores' shape {shape} (queries x keys), got shape {mask.shape}")
    return mask


def attention(q, k, v, mask=None):
    """Scaled dot-product attention in numpy: returns ``(out, weights)``.

    weights = softmax(q k^T / sqrt(d) with masked scores set to -inf), out = weights v.

    q: (..., n, d), k: (..., m, d), v: (..., m, d_v); leading dimensions broadcast.
    mask: None (every key visible), a boolean array broadcastable to (..., n, m), or a
    ``patterns.Pattern`` (then n must equal m). A fully masked query row gets zero weights and a
    zero output.
    """
    q = real_array("q", q, min_ndim=2, finite=True)
    k = real_array("k", k, min_ndim=2, finite=True)
    v = real_array("v", v, min_ndim=2, finite=True)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension d, got q {q.shape} and k {k.shape}")
    if q.shape[-1] == 0 or k.shape[-2] == 0:
        raise ValueError(f"q and k need a key dimension d >= 1 and k at least one key, got q {q.shape} and k {k.shape}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys m (axis -2), got k {k.shape} and v {v.shape}")
    try:
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(
            f"the leading (batch) dimensions of q, k and v must broadcast, got q {q.shape}, k {k.shape}, v {v.shape}"
        ) from None
    n, d, m = q.shape[-2], q.shape[-1], k.shape[-2]

    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(d)  # (..., n, m)
    if mask is not None:
        scores = np.where(_mask_arg(mask, (*lead, n, m)), scores, -np.inf)
    weights = softmax(scores, axis=-1)
    return weights @ v, weights


def top_k_mask(scores, k, mask=None) -> np.ndarray:
    """Content-chosen index sets: ``out[q, j]`` True for the ``k`` highest scores of row q.

    ``scores``: (n, m) real array, e.g. ``q k^T / sqrt(d)``. ``mask``: None or a bool array (or a
    Pattern, then n must equal m) of the keys a query may choose from, e.g. ``causal()``; a row
    with at most k allowed keys keeps all of them. Ties go to the lower key index, so the result
    is deterministic. Unlike a positional pattern this needs every allowed score first: it saves
    the softmax and the value sum, not the scoring, and any key may be chosen later.
    """
    s = real_array("scores", scores, min_ndim=2, finite=True)
    if s.ndim != 2 or 0 in s.shape:
        raise ValueError(f"scores must be a non-empty 2-D array (queries x keys), got shape {s.shape}")
    k = int_arg("k", k, minimum=1)
    allowed = np.ones(s.shape, dtype=bool) if mask is None else np.broadcast_to(_mask_arg(mask, s.shape), s.shape)
    ranked = np.argsort(np.where(allowed, -s, np.inf), axis=-1, kind="stable")[:, :k]  # best first
    out = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(out, ranked, True, axis=-1)
    return out & allowed


# --------------------------------------------------------------------------- patterns


def _check_local_global_args(window, sinks, global_tokens, causal, n=None, radius=None):
    """Validate the local + global arguments (and, given the length n, their upper bounds).

    Returns (local, sinks, global_tokens, causal): local is W keys when causal, else the radius r,
    given as ``radius=r`` or (the older spelling) ``window=r``.
    """
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    causal = bool(causal)
    if causal and radius is not None:
        raise ValueError(
            f"radius={radius!r} is for causal=False (a band |q - k| <= r); a causal window takes "
            "window=W, the number of keys a query sees (itself included)"
        )
    if not causal and window is not None and radius is not None:
        raise ValueError(
            f"give the band's radius once: radius={radius!r} or window={window!r} (for causal=False "
            "window means the same radius), not both"
        )
    if window is None and radius is None:
        raise ValueError(
            "give window=W (causal=True: W keys, the query included) or radius=r (causal=False: "
            "the keys with |q - k| <= r)"
        )
    local = int_arg("window", window, minimum=1) if radius is None else int_arg("radius", radius, minimum=1)
    sinks = int_arg("sinks", sinks, minimum=0)
    global_tokens = int_arg("global_tokens", global_tokens, minimum=0)
    if causal and global_tokens:
        raise ValueError(
            f"global_tokens must be 0 when causal=True (got {global_tokens}): a causal token cannot "
            "see later tokens, so use sinks=... for the causal global tokens, or causal=False"
        )
    if n is not None:
        for name, value in (("sinks", sinks), ("global_tokens", global_tokens)):
            if value > n:
                raise ValueError(f"{name} must be between 0 and the sequence length N={n}, got {value}")
    return local, sinks, global_tokens, causal


def local_global_pattern(window=None, sinks=0, global_tokens=0, causal=True, *, radius=None):
    """The Pattern that ``local_global_attention`` computes.

    causal=True:  ``causal() & (sliding_window(window) | sinks(sinks))``  (window W >= 1 keys,
                  the query included; sink tokens are the causal global tokens; global_tokens must be 0);
                  with no sinks just ``sliding_window(window)``, which is causal by itself
    causal=False: ``band(radius) | sinks(sinks) | global_tokens(global_tokens)``  (the one-sided
                  radius r >= 1: 2r + 1 local keys; ``window=r`` is the older spelling of ``radius=r``)

    Give ``window`` or ``radius``, once. Terms with a zero count are left out of the formula
    (they add no pair).
    """
    window, sinks, global_tokens, causal = _check_local_global_args(window, sinks, global_tokens, causal, radius=radius)
    if causal:
        local = patterns.sliding_window(window)
        if not sinks:
            return local  # already causal: causal() & sliding_window(W) would be the same mask
        return patterns.causal() & (local | patterns.sinks(sinks))
    pattern = patterns.band(window)
    if sinks:
        pattern = pattern | patterns.sinks(sinks)
    if global_tokens:
        pattern = pattern | patterns.global_tokens(global_tokens)
    return pattern


# --------------------------------------------------------------------------- torch


def _check_qkv(q, k, v):
    """q and k: (..., N, D), v: (..., N, D_v); float tensors of one dtype and device."""
    import torch

    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have shape (B, H, N, D) or (N, D), got {tuple(t.shape)}")
    if q.shape[-2] == 0 or q.shape[-1] == 0:
        raise ValueError(f"q must have N >= 1 positions and D >= 1 dimensions, got {tuple(q.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != q.shape:
        raise ValueError(f"k must have the same shape as q, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(
            f"v must match q in every dimension but the last, got q {tuple(q.shape)} and v {tuple(v.shape)}"
        )


def dense_attention(q, k, v, pattern):
    """Reference masked attention in torch: softmax(q k^T / sqrt(D), masked) v over all N x N pairs.

    q, k: (B, H, N, D) or (N, D); v the same with its own last dimension. ``pattern`` is a
    Pattern, a numpy bool array or a torch bool tensor of shape (N, N). Runs
    ``torch.nn.functional.scaled_dot_product_attention`` with the boolean mask; rows with no
    visible key give 0 (not NaN), and pass no gradient.
    """
    import torch.nn.functional as F

    _check_qkv(q, k, v)
    mask = patterns.as_torch_mask(pattern, q.shape[-2], q.device, name="pattern")
    has_key = mask.any(dim=-1, keepdim=True)  # (N, 1)
    if bool(has_key.all()):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # Give empty rows every key so the kernel never divides by zero, then zero those rows.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key)
    return out.masked_fill(~has_key, 0.0)


BLOCK = 128  # queries per block in local_global_attention (timed in benchmarks/attention_scaling.py)


def local_global_attention(q, k, v, window=None, sinks=0, global_tokens=0, causal=True, *, radius=None):
    """Attention over ``local_global_pattern(window, sinks, global_tokens, causal, radius=radius)`` in O(N) memory.

    ``window=W`` keys when causal; ``radius=r`` (or, the older spelling, ``window=r``) when not.

    The queries are cut into blocks of ``BLOCK`` rows. A block [s, e) sees
      - its local keys, one contiguous slice [lo, hi) of K and V: [s - window + 1, e) when causal,
        [s - r, e + r) for a band of radius r (clipped to [0, N)), and
      - the first P keys, which every query sees (P = sinks when causal, max(sinks, global_tokens)
        otherwise), except those already inside [lo, hi), so no key is counted twice.
    Each block is one call of scaled_dot_product_attention with a small (block x keys) mask made
    from the positions, so the N x N matrix is never built: work and memory grow like N (W + P).
    The rows of the global tokens (causal=False) see all N keys: one extra call with g x N scores.

    q, k: (B, H, N, D) or (N, D) (any leading dimensions); v the same with its own last dimension.
    Supports autograd; equals ``dense_attention(q, k, v, local_global_pattern(...))``.
    """
    import torch
    import torch.nn.functional as F

    _check_qkv(q, k, v)
    n = q.shape[-2]
    window, sinks, global_tokens, causal = _check_local_global_args(
        window, sinks, global_tokens, causal, n=n, radius=radius
    )
    prefix = sinks if causal else max(sinks, global_tokens)
    before, after = (window - 1, 0) if causal else (window, window)

    def visible(i, j):  # the pattern's predicate on positions, for rows that are not global tokens
        if causal:
            return (j <= i) & ((i - j < window) | (j < prefix))
        return ((i - j).abs() <= window) | (j < prefix)

    outs = []
    if global_tokens:  # global rows attend to every key
        outs.append(F.scaled_dot_product_attention(q[..., :global_tokens, :], k, v))
    for s in range(global_tokens, n, BLOCK):
        e = min(n, s + BLOCK)
        lo, hi = max(0, s - before), min(n, e + after)
        # keys: prefix keys left of the slice, prefix keys right of it (masked if causal), the slice
        parts = [(0, min(prefix, lo)), (hi, max(prefix, hi)), (lo, hi)]
        keys = torch.cat([k[..., a:b, :] for a, b in parts], dim=-2)
        values = torch.cat([v[..., a:b, :] for a, b in parts], dim=-2)
        j = torch.cat([torch.arange(a, b, device=q.device) for a, b in parts])
        i = torch.arange(s, e, device=q.device)[:, None]
        mask = visible(i, j)  # (e - s, keys)
        outs.append(F.scaled_dot_product_attention(q[..., s:e, :], keys, values, attn_mask=mask))
    return torch.cat(outs, dim=-2)
