"""A tiny pre-LN transformer whose attention takes any attention pattern.

Read it top to bottom like nanoGPT's ``model.py``:

    x = token_embedding(ids) (+ position_embedding)          # (B, N, d)
    x = [global_1 .. global_g, x]                           # optional learnable tokens, prepended (ETC style)
    for each block:  x = x + Attn(LN(x), mask);  x = x + MLP(LN(x))
    logits = head(LN(x))[:, g:]                              # one row per real token

The attention mask is ``mask[q, k] = True`` (query q may attend to key k) over the *whole*
sequence, prepended tokens included (length ``g + N``). It can be a ``patterns.Pattern``
(anything with a ``.mask(n)`` method) or an ``(g+N, g+N)`` boolean array / tensor; attention is
the package's ``attention.dense_attention`` (PyTorch's scaled_dot_product_attention with that
boolean mask).

Positions are either learned absolute embeddings (``positions="learned"``) or rotary
(``positions="rotary"``: q and k are rotated by angle ``pos * theta_i``, so scores depend
on ``q_pos - k_pos`` only). With rotary positions a KV cache can give its entries new
positions ``0..len(cache)-1`` (StreamingLLM's "positions within the cache"); see
:class:`KVCache` and :meth:`TinyTransformer.step`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from .attention import dense_attention
from .patterns import as_torch_mask


@dataclass
class TinyConfig:
    """Sizes of a :class:`TinyTransformer` (defaults: about 100k parameters)."""

    vocab_size: int
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    max_len: int = 256  # longest sequence (prepended tokens included) for learned positions
    positions: str = "learned"  # "learned" or "rotary"
    n_global: int = 0  # learnable tokens prepended to every sequence (global / sink tokens)
    global_init_std: float = 0.02  # their initial size (the token embeddings start at 0.02)
    attn_scale: float | None = None  # attention scores q.k * attn_scale; None: the usual 1/sqrt(d_head)

    def __post_init__(self):  # built by the experiments from their configs and checkpoints
        assert self.vocab_size >= 2 and self.n_global >= 0 and self.global_init_std > 0, self
        assert self.attn_scale is None or self.attn_scale > 0, self
        assert min(self.n_layer, self.n_head, self.d_model, self.max_len) >= 1, self
        assert self.positions in ("learned", "rotary"), self.positions
        assert self.d_model % self.n_head == 0, "d_model must be divisible by n_head"
        assert self.positions == "learned" or (self.d_model // self.n_head) % 2 == 0, "rotary needs an even head size"

    def to_dict(self) -> dict:
        return asdict(self)


def rotate(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding: rotate pairs (x[2i], x[2i+1]) of the last axis by ``pos * base**(-2i/D)``.

    x: (..., N, D); pos: (N,) positions (any integers, so a cache can renumber them).
    """
    d = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # (D/2,)
    angle = pos.to(torch.float32)[:, None] * inv_freq[None, :]  # (N, D/2)
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


def as_bool_mask(mask, n: int) -> torch.Tensor:
    """``patterns.as_torch_mask(mask, n)``, the torch bool (n, n) mask of a Pattern, bool array or
    bool tensor, that also refuses a query row with no visible key (its softmax would be NaN)."""
    mask = as_torch_mask(mask, n, name="mask")
    if not bool(mask.any(dim=1).all()):
        raise ValueError("mask has a query row with no visible key; every row needs at least one True")
    return mask


class SelfAttention(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.n_head, self.rotary = cfg.n_head, cfg.positions == "rotary"
        d_head = cfg.d_model // cfg.n_head
        # attend() divides by sqrt(d_head); another scale multiplies q by attn_scale * sqrt(d_head) first
        self.q_gain = None if cfg.attn_scale is None else cfg.attn_scale * d_head**0.5
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def split(self, x):
        """(B, N, d) -> q, k, v each (B, H, N, d/H)."""
        B, N, d = x.shape
        return self.qkv(x).view(B, N, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)

    def attend(self, q, k, v, mask, need_weights):
        """y = softmax(q k^T / sqrt(D), masked) v for Nq queries over Nk keys; also the weights
        (B, H, Nq, Nk) if asked, computed beside y (y is the same either way).

        mask: bool (Nq, Nk), or None when every key is visible (the entries a KV cache keeps). A
        square mask goes through the package's ``dense_attention``; fewer queries than keys (the
        newest query of a cache, ``last_logits``) is the same SDPA call on those rows.
        """
        if mask is not None and q.shape[-2] == k.shape[-2]:
            y = dense_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if not need_weights:
            return y, None
        scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return y, scores.softmax(dim=-1)

    def forward(self, x, mask, pos, need_weights=False, kv=None, last=False):
        """Attention of the positions in x (B, N, d) at positions ``pos``.

        ``kv``: for cached decoding, a function (k, v) -> (k, v) that stores the new keys and values
        (before rotation) and returns the ones to attend over (``KVCache.add``); they get positions
        0..m-1 and the queries the last N of them. ``last``: only the last position queries
        (its output row alone, ``mask[-1:]``).
        """
        q, k, v = self.split(x)
        if kv is not None:
            k, v = kv(k, v)
            pos = torch.arange(k.shape[2])  # positions within the cache
        if last:
            q, mask = q[:, :, -1:], mask[-1:]
        if self.rotary:
            q, k = rotate(q, pos[-q.shape[2] :]), rotate(k, pos)
        if self.q_gain is not None:
            q = q * self.q_gain
        y, w = self.attend(q, k, v, mask, need_weights)
        B, H, N, Dh = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, N, H * Dh)), w


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )

    def forward(self, x, mask, pos, need_weights=False, kv=None, last=False):
        """x + Attn(LN(x)), then + MLP(LN(.)); ``kv`` and ``last`` as in :meth:`SelfAttention.forward`
        (with ``last`` only the last row of x goes on)."""
        a, w = self.attn(self.ln1(x), mask, pos, need_weights, kv, last)
        x = (x[:, -1:] if last else x) + a
        return x + self.mlp(self.ln2(x)), w


class TinyTransformer(nn.Module):
    """Token (+ learned position) embeddings, optional prepended learnable tokens, L pre-LN blocks, LM head."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        assert isinstance(cfg, TinyConfig), cfg
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        self.globals = (
            nn.Parameter(cfg.global_init_std * torch.randn(cfg.n_global, cfg.d_model)) if cfg.n_global else None
        )
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``ids`` (B, N) with the prepended tokens in front: (B, g + N, d)."""
        x = self.tok(ids)
        if self.globals is not None:
            x = torch.cat([self.globals.expand(ids.shape[0], -1, -1), x], dim=1)
        if self.pos is not None:
            x = x + self.pos(pos)
        return x

    def forward(self, ids, mask, need_weights: bool = False):
        """Logits (B, N, vocab) for the N real tokens; with ``need_weights`` also a list of
        per-layer attention weights (B, H, g+N, g+N), prepended tokens first.

        mask: Pattern or bool (g+N, g+N) over the full sequence (prepended tokens at 0..g-1).
        """
        x, mask, pos = self._inputs(ids, mask)
        weights = []
        for block in self.blocks:
            x, w = block(x, mask, pos, need_weights)
            weights.append(w)
        logits = self.head(self.ln_f(x))[:, self.cfg.n_global :]
        return (logits, weights) if need_weights else logits

    def _inputs(self, ids, mask):
        """Embedded input (B, g+N, d), the bool mask and the positions 0..g+N-1, after checking ids."""
        assert ids.dtype == torch.long and ids.ndim == 2, "ids: a torch.long tensor (batch, n)"
        n = ids.shape[1] + self.cfg.n_global
        assert self.pos is None or n <= self.cfg.max_len, f"{n} positions (with prepended tokens) > max_len"
        pos = torch.arange(n)
        return self.embed(ids, pos), as_bool_mask(mask, n), pos

    def last_logits(self, ids, mask) -> torch.Tensor:
        """``forward(ids, mask)[:, -1]`` (B, vocab) at about half the cost, for tasks answered at the
        last position: the last block computes keys and values for every position but the query,
        output projection and MLP for the last position only (the other rows would be discarded)."""
        x, mask, pos = self._inputs(ids, mask)
        for block in self.blocks[:-1]:
            x, _ = block(x, mask, pos)
        h, _ = self.blocks[-1](x, mask, pos, last=True)
        return self.head(self.ln_f(h))[:, 0]

    # ---- streaming with a KV cache (rotary positions renumbered inside the cache) ----

    @torch.no_grad()
    def step(self, x: torch.Tensor, cache: KVCache, weights: list | None = None) -> torch.Tensor:
        """Feed one new position (its input vector x, shape (B, d)) through the model with ``cache``.

        Each layer appends the new key/value (before rotation) to the cache, evicts by the cache's
        rule, rotates the kept keys to positions ``0..len-1`` and the query to ``len-1``
        (learned positions are not supported: they cannot be renumbered beyond ``max_len``).
        Returns the logits (B, vocab) for the next token. With a list ``weights``, each layer
        appends the new query's attention weights over the kept entries, (B, H, len), in cache order
        (softmax(q k^T / sqrt(D)), the weights the layer's output is made of).
        """
        assert self.cfg.positions == "rotary", "step() needs positions='rotary' (cache positions are renumbered)"
        h = x[:, None, :]
        for layer, block in enumerate(self.blocks):
            h, w = block(h, None, None, weights is not None, kv=partial(cache.add, layer))
            if weights is not None:
                weights.append(w[:, :, 0])
        return self.head(self.ln_f(h))[:, 0]


class KVCache:
    """Per-layer key/value cache holding at most ``size`` entries: the first ``sinks`` ever added
    (attention sinks, StreamingLLM) plus the most recent ``size - sinks``. ``size=None`` keeps all.

    Two ablations of the sinks (notebook 05): only the layers in ``sink_layers`` (default: every
    layer) keep them, the others evict like a plain window of ``size`` entries; and with
    ``zero_sink_values`` the later entries of the layers that keep them read the sinks' values as
    zeros, so a sink still takes its share e^{q.k_sink} / Z of every softmax but adds nothing to the
    output (a pure gate); the sinks' own steps are left as they are.
    """

    def __init__(
        self,
        n_layer: int,
        size: int | None = None,
        sinks: int = 0,
        sink_layers: tuple[int, ...] | None = None,
        zero_sink_values: bool = False,
    ):
        assert 0 <= sinks and (size is None or sinks < size), f"sinks ({sinks}) must be < size ({size})"
        assert sink_layers is None or set(sink_layers) <= set(range(n_layer)), (sink_layers, n_layer)
        self.size, self.sinks = size, sinks
        self.sink_layers = tuple(range(n_layer)) if sink_layers is None else tuple(sink_layers)
        self.zero_sink_values = zero_sink_values
        self.k = [None] * n_layer
        self.v = [None] * n_layer

    def layer_sinks(self, layer: int) -> int:
        """How many sinks ``layer`` keeps: ``sinks``, or 0 if the layer is not in ``sink_layers``."""
        return self.sinks if layer in self.sink_layers else 0

    def add(self, layer, k, v):
        """Append (B, H, 1, D) k/v to ``layer``, evict, and return the kept (B, H, m, D) k, v."""
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        sinks = self.layer_sinks(layer)
        if self.size is not None and k.shape[2] > self.size:
            recent = self.size - sinks
            k = torch.cat([k[:, :, :sinks], k[:, :, -recent:]], dim=2)
            v = torch.cat([v[:, :, :sinks], v[:, :, -recent:]], dim=2)
        self.k[layer], self.v[layer] = k, v
        if self.zero_sink_values and sinks and k.shape[2] > sinks:  # not while a sink itself is the query
            v = torch.cat([torch.zeros_like(v[:, :, :sinks]), v[:, :, sinks:]], dim=2)
        return k, v

    def kept(self, added: int, layer: int = 0) -> list[int]:
        """Which entries (0-based, in the order they were added) ``layer`` holds after ``added``
        additions, in cache order: the entry at list index j has position j (see ``step``)."""
        if self.size is None or added <= self.size:
            return list(range(added))
        sinks = self.layer_sinks(layer)
        return list(range(sinks)) + list(range(added - (self.size - sinks), added))

    def ring_slot(self, entry: int) -> int:
        """Where entry ``entry`` sits if the cache is stored as a fixed array of ``size`` slots: the
        sinks in slots 0..sinks-1, every later entry in a ring buffer over the other slots
        (``sinks + (entry - sinks) % (size - sinks)``), overwriting the oldest recent entry. The
        slot is storage only: the entry's position is its index in ``kept`` (cache order)."""
        if self.size is None or entry < self.sinks:
            return entry
        return self.sinks + (entry - self.sinks) % (self.size - self.sinks)
