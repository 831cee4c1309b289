"""What attention patterns cost and what they buy: KV-cache memory, pairs scored, receptive field.

Two different quantities, often confused:

* memory while decoding = KV entries kept per layer (dense t, window min(t, W), sinks + window
  min(t, S + W)), times ``2 (K and V) * kv_heads * head_dim * bytes_per_element``;
* compute in prefill = (q, k) pairs scored = ``mask.sum()`` per head per layer.

Both scale with the element size: ``bytes_per_element`` is 4 (fp32), 2 (bf16/fp16), 1 (fp8/int8)
or 0.5 (4-bit), plus any per-group scale overhead (``element_bytes``). A *layer stack* lists what
each layer keeps (``layer_stack_kv_bytes``); presets carry their native stack, their trained
context and their parameter count, so a budget is weights + cache (``ModelPreset.weights_bytes``),
and serving effects (shared prefixes, paged blocks) and compute (prefill FLOPs, decode bytes,
``Hardware``) are computed from the same stacks.

And one thing they buy: how far information can travel. With the residual path, after L
layers position q has seen key k if there is a path k -> ... -> q of at most L attention
edges (``receptive_field``); ``hops`` is the length of the shortest such path (exercise 3's
``min_layers``), and ``hop_matrix`` gives it for every pair at once.

Patterns are given either as a ``patterns.Pattern`` or as an (n, n) boolean numpy mask with
``mask[q, k] = True`` when query q may attend to key k (``patterns.as_mask`` reads both).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ._validate import choice_arg, float_arg, int_arg
from .patterns import Pattern, as_mask

__all__ = [
    "PRECISIONS",
    "element_bytes",
    "layer_stack_entries",
    "layer_stack_kv_bytes",
    "layer_stack_pairs",
    "describe_stack",
    "kv_pool_bytes",
    "max_concurrent_sequences",
    "prefill_flops",
    "decode_bytes_per_token",
    "Hardware",
    "kv_cache_bytes",
    "kv_entries",
    "max_sequences",
    "ModelPreset",
    "PRESETS",
    "receptive_field",
    "hop_matrix",
    "hops",
    "pairs_scored",
]

POLICIES = ("dense", "window", "sinks")


# --- KV-cache arithmetic --------------------------------------------------------------


PRECISIONS = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}  # bytes per element


def _bytes_per_element_arg(value) -> float:
    """A positive element size in bytes: an int (4, 2, 1) or a real number such as 0.5 (4-bit)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int_arg("bytes_per_element", value, minimum=1)
    return float_arg("bytes_per_element", value, strictly_positive=True)


def _whole_bytes(elements, bytes_per_element) -> int:
    """``elements * bytes_per_element`` rounded up to whole bytes (exact for 4, 2, 1 and 0.5)."""
    return math.ceil(int(elements) * Fraction(bytes_per_element))


def element_bytes(precision, group_size=None, scale_bytes=2) -> float:
    """Bytes per stored element: the precision's size plus ``scale_bytes / group_size`` when every
    group of ``group_size`` elements carries its own scale (and zero point) in ``scale_bytes`` bytes.

    ``precision``: a name in ``PRECISIONS`` ("fp32", "bf16", "fp16", "fp8", "int8", "int4") or a
    number of bytes. Example: 4-bit with one fp16 scale per 32 elements is 0.5 + 2/32 = 0.5625.
    """
    if isinstance(precision, str):
        size = PRECISIONS[choice_arg("precision", precision, PRECISIONS)]
    else:
        size = _bytes_per_element_arg(precision)
    if group_size is None:
        return float(size)
    group_size = int_arg("group_size", group_size, minimum=1)
    scale_bytes = float_arg("scale_bytes", scale_bytes, minimum=0.0)
    return float(size) + scale_bytes / group_size


def kv_cache_bytes(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2) -> int:
    """``2 * layers * kv_heads * head_dim * tokens * batch * bytes_per_element``.

    The 2 is one K and one V vector per token, head and layer. Use the number of KV heads,
    not query heads: grouped-query (GQA) and multi-query attention share each KV head
    between several query heads, which is exactly how they shrink the cache.
    ``bytes_per_element``: 4 for fp32, 2 for fp16/bf16, 1 for int8/fp8, 0.5 for 4-bit (a
    non-integer size is rounded up to whole bytes in the total).
    """
    layers = int_arg("layers", layers, minimum=1)
    kv_heads = int_arg("kv_heads", kv_heads, minimum=1)
    head_dim = int_arg("head_dim", head_dim, minimum=1)
    tokens = int_arg("tokens", tokens, minimum=0)
    batch = int_arg("batch", batch, minimum=1)
    bytes_per_element = _bytes_per_element_arg(bytes_per_element)
    return _whole_bytes(2 * layers * kv_heads * head_dim * tokens * batch, bytes_per_element)


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
    budget = _budget_arg(budget_bytes)
    tokens = int_arg("tokens", tokens, minimum=1)
    per_sequence = kv_cache_bytes(layers, kv_heads, head_dim, tokens, 1, bytes_per_element)
    return budget // per_sequence


def _budget_arg(budget_bytes) -> int:
    """A budget in whole bytes from an int or a float such as ``24e9``."""
    if isinstance(budget_bytes, numbers.Integral) and not isinstance(budget_bytes, (bool, np.bool_)):
        return int_arg("budget_bytes", budget_bytes, minimum=0)
    return int(float_arg("budget_bytes", budget_bytes, minimum=0.0))


# --- layer stacks -----------------------------------------------------------------------
#
# A stack has one entry per layer: None (full causal: keeps every token), an int W (a sliding
# window: keeps the last W tokens, the query included) or a pair (W, S) (S sinks + W recent:
# keeps min(t, S + W)).


def _stack_arg(layers) -> tuple:
    """The stack as a tuple of None or (W, S) pairs, or a ValueError/TypeError naming the bad layer."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__") or len(layers) == 0:
        raise TypeError(
            "layers must be a non-empty sequence with one entry per layer: None (full causal), "
            f"an int W (window) or a pair (W, S) (S sinks + W recent), got {layers!r}"
        )
    out = []
    for i, layer in enumerate(layers):
        if layer is None:
            out.append(None)
        elif isinstance(layer, (tuple, list)) and len(layer) == 2:
            out.append(
                (
                    int_arg(f"layers[{i}] window W", layer[0], minimum=1),
                    int_arg(f"layers[{i}] sinks S", layer[1], minimum=0),
                )
            )
        elif isinstance(layer, (tuple, list)):
            raise ValueError(f"layers[{i}] must be None, an int W or a pair (W, S), got {layer!r}")
        else:
            out.append((int_arg(f"layers[{i}] window W", layer, minimum=1), 0))
    return tuple(out)


def layer_stack_entries(layers, tokens) -> np.ndarray:
    """KV entries each layer of a stack keeps after ``tokens`` tokens, shape (len(layers),), int64.

    None: ``t``; W: ``min(t, W)``; (W, S): ``min(t, S + W)`` (``kv_entries`` of "dense", "window", "sinks").
    """
    stack = _stack_arg(layers)
    t = int_arg("tokens", tokens, minimum=0)
    return np.array([t if layer is None else min(t, layer[0] + layer[1]) for layer in stack], dtype=np.int64)


def layer_stack_kv_bytes(layers, kv_heads, head_dim, tokens, batch=1, bytes_per_element=2) -> int:
    """KV-cache bytes of a layer stack: ``2 * kv_heads * head_dim * batch * bytes_per_element *
    sum over layers of layer_stack_entries(layers, tokens)``.

    Equals ``kv_cache_bytes(len(layers), kv_heads, head_dim, tokens, ...)`` when every layer is None.
    """
    kv_heads = int_arg("kv_heads", kv_heads, minimum=1)
    head_dim = int_arg("head_dim", head_dim, minimum=1)
    batch = int_arg("batch", batch, minimum=1)
    bytes_per_element = _bytes_per_element_arg(bytes_per_element)
    entries = int(layer_stack_entries(layers, tokens).sum())
    return _whole_bytes(2 * kv_heads * head_dim * batch * entries, bytes_per_element)


def _window_pairs(n: int, window: int, sinks: int) -> int:
    """Causal pairs of ``k <= q and (q - k < W or k < S)`` for n queries, in closed form:
    sum_i min(i + 1, W) plus, for i >= W, min(S, i - W + 1) sinks outside the window."""
    w = min(n, window)
    pairs = w * (w + 1) // 2 + (n - w) * window
    m = n - w  # queries whose window no longer reaches key 0
    s = min(m, sinks)
    return pairs + s * (s + 1) // 2 + (m - s) * sinks


def layer_stack_pairs(layers, tokens) -> int:
    """(query, key) pairs one head scores in a causal prefill of ``tokens`` tokens, summed over the
    stack's layers: ``N(N+1)/2`` for a full layer, about ``N(W + S)`` for a window with sinks
    (exact closed form; equals ``mask.sum()`` of ``patterns.causal() & (sliding_window(W) | sinks(S))``)."""
    stack = _stack_arg(layers)
    n = int_arg("tokens", tokens, minimum=0)
    return sum(n * (n + 1) // 2 if layer is None else _window_pairs(n, *layer) for layer in stack)


def describe_stack(layers) -> str:
    """A short description such as ``"40 x window 1,024 + 8 x full"`` (counts of each layer kind,
    in first-seen order)."""
    stack = _stack_arg(layers)
    counts = {}
    for layer in stack:
        if layer is None:
            key = "full"
        elif layer[1]:
            key = f"{layer[1]} sinks + {layer[0]:,} recent"
        else:
            key = f"window {layer[0]:,}"
        counts[key] = counts.get(key, 0) + 1
    return " + ".join(f"{count} x {key}" for key, count in counts.items())


@dataclass(frozen=True)
class ModelPreset:
    """A model's attention shape, enough for KV-cache, weights and compute arithmetic.

    ``sliding_window`` is the model's own window (None if it has none) and ``local_layers``
    how many of its ``layers`` use it; the other layers attend to every earlier token. Local and
    global layers repeat with period ``global_every``: layer i is global when
    ``(i + 1) % global_every == 0`` (2: alternating, local first, Gemma 2 and gpt-oss; 6: five
    local then one global, Gemma 3). With ``global_every == 2`` fewer local layers may be given:
    they are the first even-indexed layers.
    ``kv_latent_dim`` (multi-head latent attention, DeepSeek-V2/V3): each layer caches one latent
    vector of that many elements per token, shared by all heads, instead of ``2 * kv_heads *
    head_dim`` elements of K and V.
    ``max_context``: the context the model was trained (or extended) for; longer rows are
    arithmetic about the shape, not about the model. ``parameters`` (total) and
    ``active_parameters`` (used per token; smaller for mixture-of-experts models) size the weights
    and the compute. ``layer_pattern`` describes the arrangement in words, ``source`` says where
    every number comes from.
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
    global_every: int = 2
    max_context: int | None = None
    parameters: float | None = None
    active_parameters: float | None = None
    kv_latent_dim: int | None = None

    def __post_init__(self):  # every preset is filled by this module (PRESETS): assert, do not explain
        texts = (self.name, self.layer_pattern, self.source)
        assert all(isinstance(t, str) for t in texts), "name, layer_pattern, source: strings"
        assert min(self.layers, self.heads, self.kv_heads, self.head_dim) >= 1, self.name
        assert self.heads % self.kv_heads == 0, f"{self.name}: heads must be a multiple of kv_heads"
        assert 0 <= self.local_layers <= self.layers and self.global_every >= 2, self.name
        if self.global_every == 2:  # alternating local/global, local first
            assert self.local_layers in (0, self.layers) or self.local_layers <= (self.layers + 1) // 2, (
                f"{self.name}: local_layers"
            )
        else:  # every global_every-th layer global
            assert self.local_layers in (0, self.layers, self.layers - self.layers // self.global_every), (
                f"{self.name}: local_layers with global_every={self.global_every}"
            )
        assert self.sliding_window is None or self.sliding_window >= 1, f"{self.name}: sliding_window"
        assert self.sliding_window is not None or not self.local_layers, f"{self.name}: needs a sliding_window"
        optional = (self.max_context, self.kv_latent_dim, self.parameters, self.active_parameters)
        assert all(x is None or x > 0 for x in optional), f"{self.name}: max_context, kv_latent_dim, parameters"

    @property
    def global_layers(self) -> int:
        """Layers that attend to every earlier token (and so keep every token's K and V)."""
        return self.layers - self.local_layers

    @property
    def kv_elements_per_token_layer(self) -> int:
        """Elements one token adds to one layer's cache: ``2 * kv_heads * head_dim`` (K and V),
        or ``kv_latent_dim`` for multi-head latent attention."""
        return self.kv_latent_dim or 2 * self.kv_heads * self.head_dim

    @property
    def native_stack(self) -> tuple:
        """The model as built, one entry per layer: None (full causal) or its ``sliding_window``."""
        local = self._local_layer_flags()
        return tuple(self.sliding_window if is_local else None for is_local in local)

    def kv_bytes_per_token(self, bytes_per_element=2) -> int:
        """KV-cache bytes one token adds when every layer keeps it:
        ``layers * kv_elements_per_token_layer * bytes_per_element`` (``2 * layers * kv_heads * head_dim * bytes``)."""
        return _whole_bytes(self.layers * self.kv_elements_per_token_layer, _bytes_per_element_arg(bytes_per_element))

    def kv_entries_per_layer(self, tokens, policy="dense", window=None, sinks=0) -> np.ndarray:
        """KV entries each layer holds after ``tokens`` tokens, shape (layers,), int64.

        * ``"dense"``: every layer keeps all tokens (no window anywhere);
        * ``"native"``: the model as built (``native_stack``): its ``local_layers`` keep
          ``min(t, sliding_window)``, the other layers keep all ``t`` (Mistral's rolling buffer,
          Gemma 2's and gpt-oss's alternating layers, Gemma 3's 5 local : 1 global);
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

        ``kv_elements_per_token_layer * bytes_per_element * batch * sum_layers entries(layer)``,
        with the per-layer entries of ``kv_entries_per_layer`` (policies "dense", "native",
        "window", "sinks").
        """
        entries = int(self.kv_entries_per_layer(tokens, policy, window, sinks).sum())
        batch = int_arg("batch", batch, minimum=1)
        elements = entries * batch * self.kv_elements_per_token_layer
        return _whole_bytes(elements, _bytes_per_element_arg(bytes_per_element))

    def stack_problems(self, layers) -> list:
        """Layers where ``layers`` (a stack for this model) would keep what the model cannot attend to.

        A local layer of the model sees only its last ``sliding_window`` keys: a stack layer that is
        full, keeps a longer window, or adds sink tokens there describes a different model (one that
        would have to be retrained). Evicting on a global layer is an eviction policy, not a problem.
        Returns a list of messages, empty when the stack runs on the released model.
        """
        stack = _stack_arg(layers)
        if len(stack) != self.layers:
            raise ValueError(f"a stack for {self.name} needs {self.layers} layers, got {len(stack)}")
        problems = []
        for i, (own, layer) in enumerate(zip(self.native_stack, stack, strict=True)):
            if own is None:
                continue
            if layer is None:
                problems.append(f"layer {i}: full attention, but the model's layer sees only the last {own:,} keys")
            elif layer[0] > own or layer[1]:
                problems.append(
                    f"layer {i}: keeps {layer[1]} sinks + {layer[0]:,} recent, "
                    f"but the model's layer sees only the last {own:,} keys"
                )
        return problems

    def stack_kv_bytes(self, layers, tokens, batch=1, bytes_per_element=2, retrained=False) -> int:
        """KV-cache bytes of a candidate stack on this model's shape (``kv_elements_per_token_layer``
        per entry). A stack that keeps more than the model can attend to (``stack_problems``) is
        refused with a ValueError, unless ``retrained=True`` says it is a hypothetical retrained model."""
        problems = self.stack_problems(layers)
        if problems and not retrained:
            raise ValueError(
                f"this stack keeps entries {self.name} can never attend to ({len(problems)} layers; {problems[0]}): "
                "use the model's native_stack, a smaller window, or pass retrained=True to count it as a "
                "hypothetical model trained with that stack"
            )
        entries = int(layer_stack_entries(layers, tokens).sum())
        batch = int_arg("batch", batch, minimum=1)
        elements = entries * batch * self.kv_elements_per_token_layer
        return _whole_bytes(elements, _bytes_per_element_arg(bytes_per_element))

    def beyond_context(self, tokens) -> bool:
        """True when ``tokens`` exceeds ``max_context`` (the model was never trained that long)."""
        t = int_arg("tokens", tokens, minimum=0)
        return self.max_context is not None and t > self.max_context

    def weights_bytes(self, bytes_per_parameter=2) -> int:
        """Memory of the weights: ``parameters * bytes_per_parameter`` (2 for bf16, 0.5 for 4-bit;
        use ``element_bytes`` for per-group scales). All experts of a mixture-of-experts model stay
        in memory, so this uses the total, not the active, parameter count."""
        if self.parameters is None:
            raise ValueError(f"{self.name} has no parameter count: weights_bytes needs ModelPreset.parameters")
        return math.ceil(self.parameters * float(_bytes_per_element_arg(bytes_per_parameter)))

    def _local_layer_flags(self) -> np.ndarray:
        """Which layers use the sliding window: all, none, every layer but each ``global_every``-th,
        or (``global_every == 2``) the first ``local_layers`` even indices."""
        flags = np.zeros(self.layers, dtype=bool)
        if self.local_layers == self.layers:
            flags[:] = True
        elif self.local_layers and self.global_every == 2:
            flags[0 : 2 * self.local_layers : 2] = True  # alternating, local first
        elif self.local_layers:
            flags[:] = (np.arange(self.layers) + 1) % self.global_every != 0
        return flags


def _llama_style_parameters(vocab, hidden, layers, heads, kv_heads, head_dim, intermediate, tied) -> int:
    """Parameters of a Llama-style decoder (no biases): embeddings (twice if untied), per layer the
    q, k, v, o projections, a gated MLP (3 matrices) and 2 norms, and a final norm."""
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    return vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden


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
                "num_attention_heads=32, num_key_value_heads=32, hidden_size=4096 (head_dim 4096/32=128), "
                "intermediate_size=11008, vocab_size=32000, max_position_embeddings=4096; "
                "Touvron et al. 2023, Llama 2 (4k context; GQA only in 34B/70B); "
                "parameters computed from the config (untied embeddings): 6,738,415,616"
            ),
            max_context=4096,
            parameters=_llama_style_parameters(32000, 4096, 32, 32, 32, 128, 11008, tied=False),
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
                "num_key_value_heads=8, hidden_size=4096 (head_dim 128), intermediate_size=14336, vocab_size=32000, "
                "sliding_window=4096; Jiang et al. 2023, Mistral 7B, Table 1 (window_size 4096, context_len 8192); "
                "parameters computed from the config (untied): 7,241,732,096"
            ),
            local_layers=32,
            max_context=8192,
            parameters=_llama_style_parameters(32000, 4096, 32, 32, 8, 128, 14336, tied=False),
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
                "num_key_value_heads=8, head_dim=256, sliding_window=4096, max_position_embeddings=8192, "
                "hidden_size=3584, intermediate_size=14336, vocab_size=256000 (tied embeddings); transformers "
                "Gemma2DecoderLayer: is_sliding = not layer_idx % 2; Gemma Team 2024, Gemma 2 (interleaved "
                "local-global attention); parameters computed from the config (4 norms per layer): 9,241,705,984"
            ),
            local_layers=21,
            max_context=8192,
            parameters=_llama_style_parameters(256000, 3584, 42, 16, 8, 256, 14336, tied=True) + 42 * 2 * 3584,
        ),
        ModelPreset(
            name="Falcon-7B",
            layers=32,
            heads=71,
            kv_heads=1,
            head_dim=64,
            sliding_window=None,
            layer_pattern="32 global layers; multi-query attention: 71 query heads share 1 KV head",
            source=(
                "Hugging Face tiiuae/falcon-7b config.json: num_hidden_layers=32, num_attention_heads=71, "
                "hidden_size=4544 (head_dim 4544/71=64), multi_query=true (one KV head; the fused query_key_value "
                "projection is 4544 -> 4672 = 71*64 + 2*64); model card: 7B parameters, sequence length 2048"
            ),
            max_context=2048,
            parameters=7e9,
        ),
        ModelPreset(
            name="Llama-3.1-8B",
            layers=32,
            heads=32,
            kv_heads=8,
            head_dim=128,
            sliding_window=None,
            layer_pattern="32 global layers; GQA 32 query / 8 KV heads; 128K context",
            source=(
                "Hugging Face meta-llama/Llama-3.1-8B config.json: num_hidden_layers=32, num_attention_heads=32, "
                "num_key_value_heads=8, hidden_size=4096 (head_dim 128), intermediate_size=14336, vocab_size=128256, "
                "max_position_embeddings=131072 (rope_scaling llama3, original 8192); parameters computed from the "
                "config (untied): 8,030,261,248"
            ),
            max_context=131072,
            parameters=_llama_style_parameters(128256, 4096, 32, 32, 8, 128, 14336, tied=False),
        ),
        ModelPreset(
            name="Mistral-7B-v0.2",
            layers=32,
            heads=32,
            kv_heads=8,
            head_dim=128,
            sliding_window=None,
            layer_pattern="32 global layers (no sliding window); GQA 32 query / 8 KV heads; 32K context",
            source=(
                "Mistral-7B-Instruct-v0.2 model card: changes from v0.1 are a 32k context window, rope_theta=1e6 and "
                "no sliding-window attention; config.json: num_hidden_layers=32, num_attention_heads=32, "
                "num_key_value_heads=8, head_dim 128, sliding_window=null, max_position_embeddings=32768; "
                "parameters as Mistral-7B v0.1 (same shape): 7,241,732,096"
            ),
            max_context=32768,
            parameters=_llama_style_parameters(32000, 4096, 32, 32, 8, 128, 14336, tied=False),
        ),
        ModelPreset(
            name="Gemma-3-12B",
            layers=48,
            heads=16,
            kv_heads=8,
            head_dim=256,
            sliding_window=1024,
            layer_pattern="48 layers, 5 local (W=1024) : 1 global, local first: 40 + 8; 128K context",
            source=(
                "google/gemma-3-12b text config (as in MaxText configs/models/gemma3-12b.yml): 48 decoder layers, "
                "16 query / 8 KV heads, head_dim 256, emb_dim 3840, mlp_dim 15360, vocab 262144, sliding window 1024; "
                "transformers Gemma3TextConfig: sliding_window_pattern=6, layer i global when (i + 1) % 6 == 0; "
                "Gemma Team 2025, Gemma 3 technical report (5 local : 1 global, 128K context for 4B/12B/27B); "
                "parameters: the text decoder computed from the config (tied embeddings, 4 norms per layer plus q/k "
                "norms), the vision encoder excluded: 11,765,788,416"
            ),
            local_layers=40,
            global_every=6,
            max_context=131072,
            parameters=_llama_style_parameters(262144, 3840, 48, 16, 8, 256, 15360, tied=True)
            + 48 * (2 * 3840 + 2 * 256),
        ),
        ModelPreset(
            name="gpt-oss-20b",
            layers=24,
            heads=64,
            kv_heads=8,
            head_dim=64,
            sliding_window=128,
            layer_pattern=(
                "24 layers alternating banded (W=128) and full, banded first: 12 + 12; a learned sink "
                "logit per head (no cached token); mixture of experts"
            ),
            source=(
                "Hugging Face openai/gpt-oss-20b config.json: num_hidden_layers=24, num_attention_heads=64, "
                "num_key_value_heads=8, head_dim=64, sliding_window=128, layer_types alternating "
                "sliding_attention / full_attention (sliding first), max_position_embeddings=131072 (YaRN, initial "
                "context 4096); transformers modeling_gpt_oss: one learned sink logit per head; OpenAI 2025, gpt-oss "
                "model card (arXiv:2508.10925): 20.9B total parameters, 3.6B active per token (4 of 32 experts)"
            ),
            local_layers=12,
            max_context=131072,
            parameters=20.9e9,
            active_parameters=3.6e9,
        ),
        ModelPreset(
            name="DeepSeek-V3",
            layers=61,
            heads=128,
            kv_heads=128,
            head_dim=128,
            sliding_window=None,
            layer_pattern=(
                "61 global layers with multi-head latent attention: per token and layer one latent of "
                "512 + a 64-dim RoPE key, shared by all 128 heads; mixture of experts"
            ),
            source=(
                "Hugging Face deepseek-ai/DeepSeek-V3 config.json: num_hidden_layers=61, num_attention_heads=128, "
                "num_key_value_heads=128, kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, "
                "v_head_dim=128 (head_dim here), max_position_embeddings=163840; DeepSeek-AI 2024, DeepSeek-V2 "
                "Table 1: MLA caches (d_c + d_h^R) * l elements per token, d_c = kv_lora_rank, d_h^R = "
                "qk_rope_head_dim; DeepSeek-V3 technical report: 671B total, 37B activated parameters, context "
                "extended to 128K"
            ),
            max_context=131072,
            parameters=671e9,
            active_parameters=37e9,
            kv_latent_dim=512 + 64,
        ),
    ]
}


# --- serving: shared prefixes, paged blocks, concurrent sequences -----------------------


def _preset_stack(preset, stack, retrained):
    """The stack to count for ``preset``: its native stack, or a checked candidate."""
    if not isinstance(preset, ModelPreset):
        raise TypeError(f"preset must be a ModelPreset (for instance costs.PRESETS['Mistral-7B']), got {preset!r}")
    if stack is None:
        return _stack_arg(preset.native_stack)
    problems = preset.stack_problems(stack)
    if problems and not retrained:
        preset.stack_kv_bytes(stack, 0)  # raises the explanation
    return _stack_arg(stack)


def _blocks(entries: int, block_size) -> int:
    """Entries rounded up to whole blocks of ``block_size`` (paged allocation); unchanged if None."""
    return entries if block_size is None else -(-entries // block_size) * block_size


def kv_pool_bytes(
    preset,
    own_tokens,
    sequences,
    prefix_tokens=0,
    tenants=1,
    stack=None,
    bytes_per_element=2,
    block_size=None,
    retrained=False,
) -> int:
    """KV bytes for ``tenants`` tenants, each running ``sequences`` sequences that start with one shared
    prefix of ``prefix_tokens`` tokens (a system prompt, a contract asked about many times) and then add
    ``own_tokens`` tokens each.

    Prefix caching: a full-attention layer holds the prefix's entries once per tenant, plus each
    sequence's own tokens. Tenants are isolated: a prefix is never shared across tenants, so it is
    counted once per tenant. A windowed layer keeps ``min(prefix + own, W [+ S])`` entries per sequence
    (its window moves past the prefix; counted per sequence, an upper bound).
    ``block_size``: paged allocation, every layer's shared and private entries rounded up to whole
    blocks (vLLM's --block-size, in tokens); None counts exact entries.
    ``stack``: a candidate stack (default the preset's ``native_stack``), checked as in ``stack_kv_bytes``.
    """
    layers = _preset_stack(preset, stack, retrained)
    own = int_arg("own_tokens", own_tokens, minimum=0)
    n = int_arg("sequences", sequences, minimum=0)
    prefix = int_arg("prefix_tokens", prefix_tokens, minimum=0)
    tenants = int_arg("tenants", tenants, minimum=1)
    if block_size is not None:
        block_size = int_arg("block_size", block_size, minimum=1)
    entries = 0
    for layer in layers:
        if layer is None:
            entries += _blocks(prefix, block_size) + n * _blocks(own, block_size)
        else:
            entries += n * _blocks(min(prefix + own, layer[0] + layer[1]), block_size)
    per_entry = preset.kv_elements_per_token_layer
    return _whole_bytes(tenants * entries * per_entry, _bytes_per_element_arg(bytes_per_element))


def max_concurrent_sequences(
    budget_bytes, preset, own_tokens, prefix_tokens=0, stack=None, bytes_per_element=2, block_size=None, retrained=False
) -> int:
    """The most sequences of one tenant that fit ``budget_bytes`` of KV cache: the shared prefix
    (``kv_pool_bytes`` with 0 sequences) once, then ``floor(rest / bytes of one more sequence)``.
    Reserving the maximum length is ``own_tokens = max_tokens``; paged allocation at an expected
    length is ``own_tokens = expected`` with a ``block_size``."""
    budget = _budget_arg(budget_bytes)
    args = dict(
        prefix_tokens=prefix_tokens,
        stack=stack,
        bytes_per_element=bytes_per_element,
        block_size=block_size,
        retrained=retrained,
    )
    shared = kv_pool_bytes(preset, own_tokens, 0, **args)
    per_sequence = kv_pool_bytes(preset, own_tokens, 1, **args) - shared
    if budget < shared:
        return 0
    if per_sequence == 0:
        raise ValueError("own_tokens=0 with no private entries: every number of sequences fits")
    return (budget - shared) // per_sequence


# --- compute: prefill FLOPs, decode bytes, a hardware line ---------------------------------


def _active_parameters(preset) -> float:
    if preset.parameters is None:
        raise ValueError(f"{preset.name} has no parameter count: compute estimates need ModelPreset.parameters")
    return preset.active_parameters or preset.parameters


def prefill_flops(preset, tokens, stack=None, retrained=False) -> float:
    """Whole-model FLOPs to process a prompt of ``tokens`` tokens in one pass, about
    ``2 * active_parameters * tokens`` (every weight does one multiply-add per token: projections,
    MLPs, embeddings) ``+ 4 * head_dim * heads * layer_stack_pairs(stack, tokens)`` (q.k and the
    weighting of v, head_dim multiply-adds each, for every pair a layer scores)."""
    layers = _preset_stack(preset, stack, retrained)
    n = int_arg("tokens", tokens, minimum=0)
    return 2.0 * _active_parameters(preset) * n + 4.0 * preset.head_dim * preset.heads * layer_stack_pairs(layers, n)


def decode_bytes_per_token(
    preset, tokens, stack=None, bytes_per_parameter=2, bytes_per_element=2, batch=1, retrained=False
) -> float:
    """Bytes one decoding step reads for a batch of ``batch`` sequences at ``tokens`` tokens: the
    active weights once (``active_parameters * bytes_per_parameter``) plus every sequence's whole KV cache."""
    layers = _preset_stack(preset, stack, retrained)
    batch = int_arg("batch", batch, minimum=1)
    weights = _active_parameters(preset) * float(_bytes_per_element_arg(bytes_per_parameter))
    cache = preset.stack_kv_bytes(layers, tokens, batch, bytes_per_element, retrained=True)
    return weights + cache


@dataclass(frozen=True)
class Hardware:
    """A hardware line for estimates: ``peak_flops`` (FLOP/s), ``bandwidth`` (bytes/s) and the fraction
    of each a real kernel reaches. Every number is an assumption to state next to the result.

    * time to first token ~ ``prefill_flops / (peak_flops * flops_utilisation)`` (prefill is compute-bound);
    * tokens per second per sequence ~ ``bandwidth * bandwidth_utilisation / decode bytes per step``
      (decoding is memory-bound at small batch).
    """

    name: str
    peak_flops: float
    bandwidth: float
    flops_utilisation: float = 0.5
    bandwidth_utilisation: float = 0.8
    note: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not isinstance(self.note, str):
            raise TypeError("name and note must be strings")
        float_arg("peak_flops", self.peak_flops, strictly_positive=True)
        float_arg("bandwidth", self.bandwidth, strictly_positive=True)
        for field in ("flops_utilisation", "bandwidth_utilisation"):
            value = float_arg(field, getattr(self, field), strictly_positive=True)
            if value > 1:
                raise ValueError(f"{field} is a fraction of the peak, at most 1, got {value}")

    def time_to_first_token(self, preset, tokens, stack=None, retrained=False) -> float:
        """Seconds to prefill ``tokens`` tokens: ``prefill_flops / (peak_flops * flops_utilisation)``."""
        return prefill_flops(preset, tokens, stack, retrained) / (self.peak_flops * self.flops_utilisation)

    def tokens_per_second(
        self, preset, tokens, stack=None, bytes_per_parameter=2, bytes_per_element=2, batch=1, retrained=False
    ) -> float:
        """Tokens per second for each of ``batch`` sequences at ``tokens`` tokens of context:
        ``bandwidth * bandwidth_utilisation / decode_bytes_per_token``."""
        step = decode_bytes_per_token(preset, tokens, stack, bytes_per_parameter, bytes_per_element, batch, retrained)
        return self.bandwidth * self.bandwidth_utilisation / step


# --- receptive field and hops ---------------------------------------------------------


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
    step = as_mask(pattern, n, name="pattern") | np.eye(n, dtype=bool)
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

    The quantity exercise set 3 calls ``min_layers(mask, src, dst)``. 0 if ``src == dst``; None if
    it never can (e.g. a causal mask from a later position to an earlier one). Breadth-first
    search along attention edges key -> query (``mask[q, k]`` carries k's information to q), one
    vectorised step per layer, at most n - 1 steps. Equals the smallest L with
    ``receptive_field(pattern, n, L)[dst, src]``, and ``hop_matrix(pattern, n, L)[dst, src]``.
    """
    n = int_arg("n", n, minimum=1)
    src = int_arg("src", src, minimum=0, maximum=n - 1)
    dst = int_arg("dst", dst, minimum=0, maximum=n - 1)
    flows_to = as_mask(pattern, n, name="pattern").T  # flows_to[k, q]: q attends to k
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


def hop_matrix(pattern, n, layers) -> np.ndarray:
    """``H[q, k] = hops(pattern, n, k, q)`` for every pair, or -1 when k has not reached q within ``layers``.

    The first layer at which information at key k arrives at query q: ``H[q, k] = L`` for the
    smallest L with ``receptive_field(pattern, n, L)[q, k]`` (0 on the diagonal), computed for
    all pairs by stepping ``R_L = A R_(L-1)`` with ``A = mask | I`` (stops early once nothing
    new arrives). Returns an int64 array (n, n).
    """
    n = int_arg("n", n, minimum=1)
    layers = int_arg("layers", layers, minimum=0)
    step = as_mask(pattern, n, name="pattern") | np.eye(n, dtype=bool)
    first = np.full((n, n), -1, dtype=np.int64)
    reach = np.eye(n, dtype=bool)
    first[reach] = 0
    for layer in range(1, layers + 1):
        new = _bool_matmul(step, reach)
        if (new == reach).all():
            break  # nothing new can arrive any more
        first[new & ~reach] = layer
        reach = new
    return first


def pairs_scored(pattern, n, layers=1, heads=1) -> int:
    """Prefill compute as (query, key) pairs scored: ``mask(n).sum() * layers * heads``.

    Dense causal attention scores n(n+1)/2 pairs per head and layer; a causal window of
    W keys plus S sinks about n(W + S).
    """
    n = int_arg("n", n, minimum=1)
    layers = int_arg("layers", layers, minimum=1)
    heads = int_arg("heads", heads, minimum=1)
    if isinstance(pattern, Pattern):
        per_head = pattern.num_pairs(n)
    else:
        per_head = int(as_mask(pattern, n, name="pattern").sum())
    return per_head * layers * heads
