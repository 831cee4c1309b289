"""What attention patterns cost and what they buy: KV-cache memory, pairs scored, receptive field.

Two different quantities, often confused:

* memory while decoding = KV entries kept per layer (dense t, window min(t, W), sinks + window
  min(t, S + W)), times ``2 (K and V) * kv_heads * head_dim * bytes_per_element``;
* compute in prefill = (q, k) pairs scored = ``mask.sum()`` per head per layer.

And one thing they buy: how far information can travel. With the residual path, after L
layers position q has seen key k if there is a path k -> ... -> q of at most L attention
edges (``receptive_field``); ``hops`` is the length of the shortest such path.

Patterns are given either as a Pattern (anything with a ``.mask(n)`` method) or as an
(n, n) boolean numpy mask with ``mask[q, k] = True`` when query q may attend to key k.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ._validate import bool_mask_arg, choice_arg, float_arg, int_arg

__all__ = [
    "kv_cache_bytes",
    "kv_entries",
    "max_sequences",
    "ModelPreset",
    "PRESETS",
    "receptive_field",
    "hops",
    "pairs_scored",
]

POLICIES = ("dense", "window", "sinks")


# --- KV-cache arithmetic --------------------------------------------------------------


def kv_cache_bytes(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2) -> int:
    """``2 * layers * kv_heads * head_dim * tokens * batch * bytes_per_element``.

    The 2 is one K and one V vector per token, head and layer. Use the number of KV heads,
    not query heads: grouped-query (GQA) and multi-query attention share each KV head
    between several query heads, which is exactly how they shrink the cache.
    ``bytes_per_element``: 4 for fp32, 2 for fp16/bf16, 1 for int8/fp8.
    """
    layers = int_arg("layers", layers, minimum=1)
    kv_heads = int_arg("kv_heads", kv_heads, minimum=1)
    head_dim = int_arg("head_dim", head_dim, minimum=1)
    tokens = int_arg("tokens", tokens, minimum=0)
    batch = int_arg("batch", batch, minimum=1)
    bytes_per_element = int_arg("bytes_per_element", bytes_per_element, minimum=1)
    return 2 * layers * kv_heads * head_dim * tokens * batch * bytes_per_element


def kv_entries(policy, t, window=None, sinks=0) -> int:
    """KV entries one layer keeps after ``t`` tokens under a cache policy.

    * ``"dense"``: ``t`` (every token stays; ``window`` and ``sinks`` are ignored);
    * ``"window"``: ``min(t, window)`` (the most recent ``window`` tokens, Mistral's rolling buffer);
    * ``"sinks"``: ``min(t, sinks + window)`` (StreamingLLM: the first ``sinks`` tokens plus
      the most recent ``window``).

    ``window`` (>= 1) is required for "window" and "sinks"; ``sinks`` > 0 needs policy "sinks".
    """
    policy = choice_arg("policy", policy, POLICIES)
    t = int_arg("t", t, minimum=0)
    sinks = int_arg("sinks", sinks, minimum=0)
    if window is not None:
        window = int_arg("window", window, minimum=1)
    if policy == "dense":
        return t
    if window is None:
        raise ValueError(f"window is required for policy {policy!r}: pass the number of recent tokens kept (>= 1)")
    if policy == "window":
        if sinks:
            raise ValueError(f"sinks={sinks} needs policy 'sinks'; policy 'window' keeps only the recent window")
        return min(t, window)
    return min(t, sinks + window)


def max_sequences(budget_bytes, layers, kv_heads, head_dim, tokens, bytes_per_element=2) -> int:
    """Whole sequences of ``tokens`` tokens whose KV cache fits in ``budget_bytes``.

    ``floor(budget_bytes / kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element))``.
    ``budget_bytes`` may be an int or a float such as ``24e9``.
    """
    if isinstance(budget_bytes, numbers.Integral) and not isinstance(budget_bytes, (bool, np.bool_)):
        budget = int_arg("budget_bytes", budget_bytes, minimum=0)
    else:
        budget = int(float_arg("budget_bytes", budget_bytes, minimum=0.0))  # whole bytes
    tokens = int_arg("tokens", tokens, minimum=1)
    per_sequence = kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element)
    return budget // per_sequence


@dataclass(frozen=True)
class ModelPreset:
    """A model's attention shape, enough for KV-cache arithmetic.

    ``sliding_window`` is the model's own window (None if it has none) and ``local_layers``
    how many of its ``layers`` use it; the other layers attend to every earlier token.
    ``layer_pattern`` describes the arrangement in words, ``source`` says where the numbers
    come from.
    """

    name: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    sliding_window: int | None
    layer_pattern: str
    source: str
    local_layers: int = 0

    def __post_init__(self):
        for field in ("name", "layer_pattern", "source"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"{field} must be a string, got {getattr(self, field)!r}")
        for field in ("layers", "heads", "kv_heads", "head_dim"):
            int_arg(field, getattr(self, field), minimum=1)
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        int_arg("local_layers", self.local_layers, minimum=0, maximum=self.layers)
        if self.layers > self.local_layers > (self.layers + 1) // 2:
            raise ValueError(
                f"local_layers must be 0, all {self.layers} layers, or at most {(self.layers + 1) // 2} "
                f"(alternating local/global, local first), got {self.local_layers}"
            )
        if self.sliding_window is not None:
            int_arg("sliding_window", self.sliding_window, minimum=1)
        elif self.local_layers:
            raise ValueError("local_layers > 0 needs a sliding_window")

    @property
    def global_layers(self) -> int:
        """Layers that attend to every earlier token (and so keep every token's K and V)."""
        return self.layers - self.local_layers

    def kv_bytes_per_token(self, bytes_per_element=2) -> int:
        """KV-cache bytes one token adds when every layer keeps it: ``2 * layers * kv_heads * head_dim * bytes``."""
        return kv_cache_bytes(self.layers, self.kv_heads, self.head_dim, 1, 1, bytes_per_element)

    def kv_entries_per_layer(self, tokens, policy="dense", window=None, sinks=0) -> np.ndarray:
        """KV entries each layer holds after ``tokens`` tokens, shape (layers,), int64.

        * ``"dense"``: every layer keeps all tokens (no window anywhere);
        * ``"native"``: the model as built: its ``local_layers`` keep ``min(t, sliding_window)``,
          the other layers keep all ``t`` (Mistral's rolling buffer, Gemma 2's hybrid cache;
          Gemma 2 alternates local and global layers, local first);
        * ``"window"`` / ``"sinks"``: an eviction policy applied to every layer, each keeping
          ``kv_entries(policy, t, window, sinks)``; a local layer never keeps more than its
          own ``min(t, sliding_window)``, since it cannot look further back.
        """
        policy = choice_arg("policy", policy, POLICIES + ("native",))
        t = int_arg("tokens", tokens, minimum=0)
        per_layer = np.full(self.layers, t, dtype=np.int64)
        local = self._local_layer_flags()
        if policy == "native":
            if window is not None or sinks:
                raise ValueError("policy 'native' uses the model's own sliding_window: leave window and sinks unset")
        else:
            per_layer[:] = kv_entries(policy, t, window, sinks)
            if policy == "dense":
                return per_layer
        if self.sliding_window is not None:
            per_layer[local] = np.minimum(per_layer[local], min(t, self.sliding_window))
        return per_layer

    def kv_bytes(self, tokens, policy="dense", window=None, sinks=0, batch=1, bytes_per_element=2) -> int:
        """KV-cache bytes after ``tokens`` tokens for ``batch`` sequences under ``policy``.

        ``2 * kv_heads * head_dim * bytes_per_element * batch * sum_layers entries(layer)``,
        with the per-layer entries of ``kv_entries_per_layer`` (policies "dense", "native",
        "window", "sinks").
        """
        entries = int(self.kv_entries_per_layer(tokens, policy, window, sinks).sum())
        # the entries are already summed over the layers: count them as tokens of one layer
        return kv_cache_bytes(1, self.kv_heads, self.head_dim, entries, batch, bytes_per_element)

    def _local_layer_flags(self) -> np.ndarray:
        """Which layers use the sliding window: all of them, none, or (Gemma 2) every even index."""
        flags = np.zeros(self.layers, dtype=bool)
        if self.local_layers == self.layers:
            flags[:] = True
        elif self.local_layers:
            flags[0 : 2 * self.local_layers : 2] = True  # alternating, local first
        return flags


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset(
            name="Llama-2-7B",
            layers=32,
            heads=32,
            kv_heads=32,
            head_dim=128,
            sliding_window=None,
            layer_pattern="32 global (full causal) layers; no GQA (32 KV heads)",
            source=(
                "Hugging Face meta-llama/Llama-2-7b-hf config.json: num_hidden_layers=32, "
                "num_attention_heads=32, num_key_value_heads=32, hidden_size=4096 (head_dim 4096/32=128); "
                "Touvron et al. 2023, Llama 2 (GQA only in 34B/70B)"
            ),
        ),
        ModelPreset(
            name="Mistral-7B",
            layers=32,
            heads=32,
            kv_heads=8,
            head_dim=128,
            sliding_window=4096,
            layer_pattern="32 sliding-window layers, W=4096 (rolling buffer cache); GQA 32 query / 8 KV heads",
            source=(
                "Hugging Face mistralai/Mistral-7B-v0.1 config.json: num_hidden_layers=32, num_attention_heads=32, "
                "num_key_value_heads=8, hidden_size=4096 (head_dim 128), sliding_window=4096; "
                "Jiang et al. 2023, Mistral 7B, Table 1"
            ),
            local_layers=32,
        ),
        ModelPreset(
            name="Gemma-2-9B",
            layers=42,
            heads=16,
            kv_heads=8,
            head_dim=256,
            sliding_window=4096,
            layer_pattern="42 layers alternating local (W=4096) and global (8192 context), local first: 21 + 21",
            source=(
                "Hugging Face google/gemma-2-9b config.json: num_hidden_layers=42, num_attention_heads=16, "
                "num_key_value_heads=8, head_dim=256, sliding_window=4096; transformers Gemma2DecoderLayer: "
                "is_sliding = not layer_idx % 2; Gemma Team 2024, Gemma 2 (interleaved local-global attention)"
            ),
            local_layers=21,
        ),
    ]
}


# --- receptive field and hops ---------------------------------------------------------


def _mask_of(pattern, n: int) -> np.ndarray:
    """The (n, n) boolean mask of a Pattern (anything with ``.mask(n)``) or of a given mask."""
    if callable(getattr(pattern, "mask", None)):
        mask = pattern.mask(n)
    elif isinstance(pattern, (np.ndarray, list, tuple)) or hasattr(pattern, "__array__"):
        mask = pattern
    else:
        raise TypeError(
            f"pattern must be a Pattern (with a .mask(n) method) or an (n, n) boolean mask, "
            f"got {type(pattern).__name__}"
        )
    mask = bool_mask_arg("pattern", mask)
    if mask.shape != (n, n):
        raise ValueError(f"pattern mask must have shape (n, n) = ({n}, {n}), got {mask.shape}")
    return mask


def _bool_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean matrix product ``any_j a[q, j] and b[j, k]`` via float32 BLAS (exact: counts <= n < 2**24)."""
    return (a.astype(np.float32) @ b.astype(np.float32)) > 0


def receptive_field(pattern, n, layers) -> np.ndarray:
    """``R[q, k]`` True when information at position k can have reached position q after ``layers`` layers.

    With the residual path, one layer moves information along ``A = M | I``:
    ``R_0 = I`` and ``R_{l+1}[q, k] = any_j A[q, j] and R_l[j, k]``, i.e. ``R_L = A^L`` in
    boolean arithmetic (computed by repeated squaring; the reach stops growing after at
    most n - 1 layers). For a causal sliding window of W keys the reach grows by W - 1
    positions per layer; one global token joins any two positions in 2 layers.
    Returns a bool array (n, n).
    """
    n = int_arg("n", n, minimum=1)
    layers = int_arg("layers", layers, minimum=0)
    step = _mask_of(pattern, n) | np.eye(n, dtype=bool)
    reach = np.eye(n, dtype=bool)
    remaining = min(layers, n - 1)  # every shortest path has at most n - 1 edges
    while remaining:
        if remaining & 1:
            reach = _bool_matmul(step, reach)
        remaining >>= 1
        if remaining:
            step = _bool_matmul(step, step)
    return reach


def hops(pattern, n, src, dst):
    """Fewest layers after which information at position ``src`` has reached position ``dst``.

    0 if ``src == dst``; None if it never can (e.g. a causal mask from a later position to an
    earlier one). Breadth-first search along attention edges key -> query (``mask[q, k]``
    carries k's information to q), one vectorised step per layer, at most n - 1 steps.
    Equals the smallest L with ``receptive_field(pattern, n, L)[dst, src]``.
    """
    n = int_arg("n", n, minimum=1)
    src = int_arg("src", src, minimum=0, maximum=n - 1)
    dst = int_arg("dst", dst, minimum=0, maximum=n - 1)
    flows_to = _mask_of(pattern, n).T  # flows_to[k, q]: q attends to k
    if src == dst:
        return 0
    reached = np.zeros(n, dtype=bool)
    reached[src] = True
    frontier = np.array([src])
    for layer in range(1, n):
        new = flows_to[frontier].any(axis=0) & ~reached
        if new[dst]:
            return layer
        frontier = np.flatnonzero(new)
        if frontier.size == 0:
            return None
        reached |= new
    return None


def pairs_scored(pattern, n, layers=1, heads=1) -> int:
    """Prefill compute as (query, key) pairs scored: ``mask(n).sum() * layers * heads``.

    Dense causal attention scores n(n+1)/2 pairs per head and layer; a causal window of
    W keys plus S sinks about n(W + S).
    """
    n = int_arg("n", n, minimum=1)
    layers = int_arg("layers", layers, minimum=1)
    heads = int_arg("heads", heads, minimum=1)
    if callable(getattr(pattern, "num_pairs", None)) and callable(getattr(pattern, "mask", None)):
        per_head = int_arg("pattern.num_pairs(n)", pattern.num_pairs(n), minimum=0)
    else:
        per_head = int(_mask_of(pattern, n).sum())
    return per_head * layers * heads
