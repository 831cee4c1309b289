"""Attention patterns as predicates over (query, key) positions, combined with ``&``, ``|``, ``~``.

``mask[q, k] is True`` means query ``q`` may attend to key ``k`` (0-based, FlexAttention's
meaning). A :class:`Pattern` prints as the formula that built it::

    >>> p = causal() & (sliding_window(3) | sinks(1))
    >>> p
    causal() & (sliding_window(3) | sinks(1))
    >>> int(p.kv_counts(1024)[499])
    4

Window conventions (the field disagrees; this module uses the first row):

    ======================  =======================  ==============  =====================================
    name here               rule                     keys inside     who says it this way
    ======================  =======================  ==============  =====================================
    sliding_window(W)       k <= q and q - k < W     W (self incl.)  HF sliding_window_overlay, Mistral
    from_lookback(w)        k <= q and q - k <= w    w + 1           attention-gym generate_sliding_window
    band(r)                 |q - k| <= r             2r + 1          Longformer paper (its w = 2r)
    from_longformer_window  band(a // 2), a even     a + 1           HF Longformer ``attention_window``
    ======================  =======================  ==============  =====================================

Every predicate is built only from broadcasting operators (``&``, ``|``, ``~``, ``<=``, ``%``,
``-``, ``//``, ``abs``) and table look-ups, so the same code runs on numpy index arrays (for
:meth:`Pattern.mask`) and on torch tensors (for :attr:`Pattern.mask_mod`, used by
``torch.nn.attention.flex_attention``). This module imports numpy only; torch is imported
lazily when a torch tensor comes in.
"""

from __future__ import annotations

import numbers

import numpy as np

from globattn_lite._validate import int_arg

__all__ = [
    "Pattern",
    "full",
    "causal",
    "sliding_window",
    "band",
    "dilated",
    "global_tokens",
    "sinks",
    "global_positions",
    "strided",
    "bigbird",
    "from_index_sets",
    "from_lookback",
    "from_longformer_window",
    "as_mask",
    "as_torch_mask",
]

# Printing precedence, as in Python: a call binds tightest, then ~, then &, then |.
_ATOM, _NOT, _AND, _OR = 3, 2, 1, 0

# Number of (q, k) pairs evaluated at once by mask/kv_counts: keeps temporaries small for big n.
_CHUNK_PAIRS = 1 << 22


def _is_numpy(x) -> bool:
    """Index arrays for numpy: arrays, numpy or Python ints, and (nested) lists or tuples of them."""
    return isinstance(x, (np.ndarray, np.generic, numbers.Integral, list, tuple))


class _Table:
    """A 1-D lookup table usable with numpy or torch indices (torch copy made lazily, per device).

    With ``clip=True`` indices past the end read the last entry, so a table can describe
    "every position from here on" without knowing the sequence length.
    """

    def __init__(self, values: np.ndarray, clip: bool = False):
        self.values = np.ascontiguousarray(values)
        self.clip = clip
        self._torch = {}

    def torch_values(self, device):
        if device not in self._torch:
            import torch

            self._torch[device] = torch.from_numpy(self.values).to(device)
        return self._torch[device]

    def __call__(self, idx):
        last = len(self.values) - 1
        if _is_numpy(idx):
            return self.values[np.minimum(idx, last) if self.clip else idx]
        values = self.torch_values(idx.device)
        return values[idx.clamp(max=last) if self.clip else idx]


class Pattern:
    """An attention pattern: ``p(q, k, n)`` is True where query q may attend to key k.

    Build one with the constructors of this module and combine with ``&`` (both),
    ``|`` (either) and ``~`` (not). ``n`` is the sequence length; only length-dependent
    patterns (``bigbird``, ``from_index_sets``; see :attr:`needs_length`) use it.
    """

    def __init__(self, fn, text, *, prec=_ATOM, checks=(), tables=(), needs_length=False):
        self._fn = fn  # fn(q, k, n) -> bool array, broadcasting operators only
        self._text = text
        self._prec = prec
        self._checks = tuple(checks)  # each check(n) raises ValueError if the pattern does not fit n
        self._tables = tuple(tables)  # callables(n) -> list of _Table (to warm torch copies)
        self._needs_length = needs_length

    # ----- printing and combining -------------------------------------------------------
    def __repr__(self) -> str:
        return self._text

    __str__ = __repr__

    def _wrapped(self, prec: int) -> str:
        return f"({self._text})" if self._prec < prec else self._text

    @staticmethod
    def _require_pattern(other, op: str):
        if not isinstance(other, Pattern):
            raise TypeError(
                f"can only combine a Pattern with another Pattern using {op}, "
                f"got {other!r} of type {type(other).__name__}"
            )

    def _combine(self, other, op: str, prec: int, fn) -> Pattern:
        self._require_pattern(other, op)
        a, b = self._fn, other._fn
        return Pattern(
            lambda q, k, n: fn(a(q, k, n), b(q, k, n)),
            f"{self._wrapped(prec)} {op} {other._wrapped(prec)}",
            prec=prec,
            checks=self._checks + other._checks,
            tables=self._tables + other._tables,
            needs_length=self._needs_length or other._needs_length,
        )

    def __and__(self, other) -> Pattern:
        return self._combine(other, "&", _AND, lambda x, y: x & y)

    def __or__(self, other) -> Pattern:
        return self._combine(other, "|", _OR, lambda x, y: x | y)

    def __rand__(self, other):  # only reached when the left operand is not a Pattern
        self._require_pattern(other, "&")

    def __ror__(self, other):
        self._require_pattern(other, "|")

    def __invert__(self) -> Pattern:
        a = self._fn
        return Pattern(
            lambda q, k, n: ~a(q, k, n),
            f"~{self._wrapped(_NOT)}",
            prec=_NOT,
            checks=self._checks,
            tables=self._tables,
            needs_length=self._needs_length,
        )

    def __bool__(self):
        raise TypeError(f"a Pattern has no truth value ({self}); combine patterns with & | ~, not and/or/not")

    # ----- evaluation --------------------------------------------------------------------
    @property
    def needs_length(self) -> bool:
        """True when the predicate depends on the sequence length n (BigBird, from_index_sets)."""
        return self._needs_length

    def _check_n(self, n) -> int:
        n = int_arg("n", n, minimum=1)
        for check in self._checks:
            check(n)
        return n

    def __call__(self, q, k, n=None):
        """Bool array of the broadcast shape of ``q`` and ``k`` (numpy arrays or torch tensors)."""
        if n is None:
            if self._needs_length:
                raise ValueError(f"{self} depends on the sequence length: pass n, e.g. p(q, k, n=64)")
        else:
            n = self._check_n(n)
        if _is_numpy(q) and _is_numpy(k):
            q, k = np.asarray(q), np.asarray(k)
            for name, arr in (("q", q), ("k", k)):
                if not np.issubdtype(arr.dtype, np.integer):
                    raise TypeError(f"{name} must hold integer positions, got dtype {arr.dtype}")
            out = self._fn(q, k, n)
            shape = np.broadcast_shapes(q.shape, k.shape)
            return out if out.shape == shape else np.broadcast_to(out, shape).copy()
        return self._torch_eval(q, k, n)

    def _torch_eval(self, q, k, n):
        import torch

        out = self._fn(q, k, n)
        shape = torch.broadcast_shapes(q.shape, k.shape)
        return out if out.shape == shape else out.expand(shape)

    def _row_blocks(self, n: int):
        """Yield (rows, block) with block = predicate on queries ``rows`` x all keys."""
        k = np.arange(n)[None, :]
        step = max(1, _CHUNK_PAIRS // n)
        for start in range(0, n, step):
            q = np.arange(start, min(n, start + step))[:, None]
            out = self._fn(q, k, n)
            yield slice(start, start + len(q)), np.broadcast_to(out, (len(q), n))

    def mask(self, n) -> np.ndarray:
        """The (n, n) boolean mask, ``mask[q, k]`` = may query q attend to key k."""
        n = self._check_n(n)
        out = np.empty((n, n), dtype=bool)
        for rows, block in self._row_blocks(n):
            out[rows] = block
        return out

    def attended(self, i, n) -> np.ndarray:
        """Sorted key positions query ``i`` attends to (the index set G_i), int64."""
        n = self._check_n(n)
        i = int_arg("i", i, minimum=0, maximum=n - 1)
        row = np.broadcast_to(self._fn(np.array([[i]]), np.arange(n)[None, :], n), (1, n))
        return np.flatnonzero(row[0]).astype(np.int64)

    def kv_counts(self, n) -> np.ndarray:
        """Number of keys each query attends to, int64 array of shape (n,)."""
        n = self._check_n(n)
        counts = np.empty(n, dtype=np.int64)
        for rows, block in self._row_blocks(n):
            counts[rows] = block.sum(axis=1)
        return counts

    def num_pairs(self, n) -> int:
        """Number of allowed (q, k) pairs, ``mask(n).sum()``."""
        return int(self.kv_counts(n).sum())

    def density(self, n) -> float:
        """Fraction of allowed pairs, ``num_pairs(n) / n**2``."""
        n = self._check_n(n)
        return self.num_pairs(n) / n**2

    # ----- FlexAttention ----------------------------------------------------------------
    @property
    def mask_mod(self):
        """``fn(b, h, q_idx, kv_idx)`` for ``torch.nn.attention.flex_attention``.

        Length-dependent patterns raise ValueError: use :meth:`mask_mod_for` instead.
        """
        if self._needs_length:
            raise ValueError(
                f"{self} depends on the sequence length, so it has no length-free mask_mod: use mask_mod_for(n)"
            )
        return self._make_mask_mod(None)

    def mask_mod_for(self, n):
        """``fn(b, h, q_idx, kv_idx)`` valid for sequence length ``n`` (works for every pattern)."""
        return self._make_mask_mod(self._check_n(n))

    def _make_mask_mod(self, n):
        import torch

        for tables in self._tables:  # make the torch copies now, outside vmap/compile
            for table in tables(n):
                table.torch_values(torch.device("cpu"))

        def mask_mod(b, h, q_idx, kv_idx):
            return self._torch_eval(q_idx, kv_idx, n)

        mask_mod.__name__ = "mask_mod"
        return mask_mod


# ----- constructors ---------------------------------------------------------------------


def full() -> Pattern:
    """Every query sees every key: ``True``."""
    return Pattern(lambda q, k, n: (q >= 0) & (k >= 0), "full()")


def causal() -> Pattern:
    """Causal: ``k <= q`` (query q sees q + 1 keys)."""
    return Pattern(lambda q, k, n: k <= q, "causal()")


def sliding_window(W) -> Pattern:
    """Causal sliding window of W keys, the query included: ``k <= q and q - k < W`` (W >= 1).

    HF ``sliding_window`` and Mistral's W. attention-gym's look-back w is ``sliding_window(w + 1)``.
    """
    W = int_arg("W", W, minimum=1)
    return Pattern(lambda q, k, n: (k <= q) & (q - k < W), f"sliding_window({W})")


def band(radius) -> Pattern:
    """Bidirectional local window: ``|q - k| <= radius`` (2 radius + 1 keys inside; radius >= 0)."""
    radius = int_arg("radius", radius, minimum=0)
    return Pattern(lambda q, k, n: abs(q - k) <= radius, f"band({radius})")


def dilated(radius, dilation) -> Pattern:
    """Longformer dilated window: ``|q - k| <= radius * dilation and (q - k) % dilation == 0``.

    ``radius`` tokens each side (2 radius + 1 keys inside), every ``dilation``-th position;
    bidirectional (combine with ``causal()``). attention-gym's
    ``generate_dilated_sliding_window(window_size, dilation)`` counts *positions* instead:
    it equals ``dilated(window_size // dilation, dilation)``.
    """
    radius = int_arg("radius", radius, minimum=0)
    dilation = int_arg("dilation", dilation, minimum=1)
    span = radius * dilation
    return Pattern(
        lambda q, k, n: (abs(q - k) <= span) & ((q - k) % dilation == 0),
        f"dilated({radius}, {dilation})",
    )


def _fits(text: str, need: int, why: str = ""):
    def check(n: int):
        if n < need:
            raise ValueError(f"{text} needs n >= {need}{why}, got n={n}")

    return check


def global_tokens(g) -> Pattern:
    """Symmetric global tokens at the first g positions: ``q < g or k < g`` (g >= 0).

    They attend to all keys and all queries attend to them (Longformer, BigBird, ETC).
    ``mask(n)`` needs n >= g.
    """
    g = int_arg("g", g, minimum=0)
    text = f"global_tokens({g})"
    return Pattern(lambda q, k, n: (q < g) | (k < g), text, checks=[_fits(text, g)])


def sinks(S) -> Pattern:
    """Attention sinks: the first S keys are visible to every query, ``k < S`` (S >= 0).

    Not causal on its own: combine with ``causal()`` (StreamingLLM uses S = 4). ``mask(n)`` needs n >= S.
    """
    S = int_arg("S", S, minimum=0)
    text = f"sinks({S})"
    return Pattern(lambda q, k, n: k < S, text, checks=[_fits(text, S)])


def global_positions(indices) -> Pattern:
    """Symmetric global tokens at arbitrary positions G: ``q in G or k in G``.

    ``indices``: unique non-negative ints. ``mask(n)`` needs n > max(G).
    """
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
        raise TypeError(f"indices must be a sequence of ints, got {indices!r}")
    G = [int_arg(f"indices[{j}]", g, minimum=0) for j, g in enumerate(indices)]
    if len(set(G)) != len(G):
        dup = sorted({g for g in G if G.count(g) > 1})
        raise ValueError(f"indices must be unique, got duplicates {dup}")
    G = sorted(G)
    # is_global[p] for p <= max(G); the extra last entry (False) covers every later position.
    is_global = np.zeros((G[-1] + 2) if G else 1, dtype=bool)
    is_global[G] = True
    table = _Table(is_global, clip=True)
    text = f"global_positions({G})"
    return Pattern(
        lambda q, k, n: table(q) | table(k),
        text,
        checks=[_fits(text, G[-1] + 1 if G else 0)],
        tables=[lambda n: [table]],
    )


def strided(stride) -> Pattern:
    """Sparse Transformer's strided part: ``(q - k) % stride == 0`` (stride >= 1).

    Bidirectional; combine with ``causal()`` and a window, e.g.
    ``causal() & (sliding_window(l) | strided(l))``.
    """
    stride = int_arg("stride", stride, minimum=1)
    return Pattern(lambda q, k, n: (q - k) % stride == 0, f"strided({stride})")


def bigbird(block_size, window_blocks=3, global_blocks=2, random_blocks=3, seed=0) -> Pattern:
    """BigBird block-sparse attention (HF defaults: 3 window, 2 global, 3 random blocks).

    Blocks ``qb = q // block_size``, ``kb = k // block_size``; ``nb = ceil(n / block_size)``
    blocks (the last one may be partial). A pair is allowed if its blocks are
    - window: ``|qb - kb| <= window_blocks // 2`` (window_blocks odd), or
    - global: qb or kb is one of the first ``ceil(global_blocks / 2)`` or last
      ``global_blocks // 2`` blocks (symmetric; 2 = first and last block), or
    - random: kb is one of the ``random_blocks`` extra key blocks of query block qb, drawn
      without replacement (``numpy.random.default_rng(seed)``, query blocks in order) from the
      blocks it does not already see (fewer if not enough remain). Global query blocks draw none.
    Depends on n (needs_length). ``mask(n)`` needs at least ``global_blocks`` blocks. Unlike HF,
    there is no fall-back to full attention for short sequences.
    """
    b = int_arg("block_size", block_size, minimum=1)
    window_blocks = int_arg("window_blocks", window_blocks, minimum=1)
    if window_blocks % 2 == 0:
        raise ValueError(
            f"window_blocks must be odd (the query's block plus the same number each side), got {window_blocks}"
        )
    global_blocks = int_arg("global_blocks", global_blocks, minimum=0)
    random_blocks = int_arg("random_blocks", random_blocks, minimum=0)
    seed = int_arg("seed", seed, minimum=0)
    text = (
        f"bigbird({b}, window_blocks={window_blocks}, global_blocks={global_blocks}, "
        f"random_blocks={random_blocks}, seed={seed})"
    )
    cache = {}

    def table_for(n: int) -> _Table:
        """Block-level (nb x nb) table, flattened, for sequence length n."""
        if n not in cache:
            nb = -(-n // b)
            blocks = np.arange(nb)
            allowed = np.abs(blocks[:, None] - blocks[None, :]) <= window_blocks // 2
            first, last = global_blocks - global_blocks // 2, global_blocks // 2
            is_global = (blocks < first) | (blocks >= nb - last)
            allowed |= is_global[:, None] | is_global[None, :]
            rng = np.random.default_rng(seed)
            for qb in blocks[~is_global]:
                candidates = np.flatnonzero(~allowed[qb])
                take = min(random_blocks, len(candidates))
                if take:
                    allowed[qb, rng.choice(candidates, size=take, replace=False)] = True
            cache[n] = (nb, _Table(allowed.ravel()))
        return cache[n]

    def fn(q, k, n):
        if n is None:
            raise ValueError(f"{text} depends on the sequence length: pass n")
        nb, table = table_for(n)
        return table((q // b) * nb + k // b)

    def fits(n: int):
        nb = -(-n // b)
        if nb < global_blocks:
            need = (global_blocks - 1) * b + 1
            raise ValueError(
                f"{text} needs n >= {need} ({global_blocks} blocks of {b} for the global blocks), got n={n}"
            )

    return Pattern(fn, text, checks=[fits], tables=[lambda n: [table_for(n)[1]]], needs_length=True)


def from_index_sets(sets) -> Pattern:
    """Any pattern given by its index sets: ``k in sets[q]`` (sets[q] = the keys query q sees).

    ``sets`` has one iterable of key positions per query, each key in ``range(len(sets))``.
    ``mask(n)`` needs ``n <= len(sets)`` (it is the top-left n x n corner).
    """
    if isinstance(sets, (str, bytes)) or not hasattr(sets, "__iter__"):
        raise TypeError(f"sets must be a sequence of key-position sequences, got {sets!r}")
    sets = list(sets)
    m = len(sets)
    if m == 0:
        raise ValueError("sets must hold at least one query's keys, got an empty sequence")
    table = np.zeros((m, m), dtype=bool)
    clean = []
    for i, keys in enumerate(sets):
        if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
            raise TypeError(f"sets[{i}] must be a sequence of key positions, got {keys!r}")
        keys = sorted({int_arg(f"sets[{i}][...]", key, minimum=0, maximum=m - 1) for key in keys})
        table[i, keys] = True
        clean.append(keys)
    lookup = _Table(table.ravel())
    total = sum(len(keys) for keys in clean)
    text = f"from_index_sets({clean})" if m <= 8 and total <= 32 else f"from_index_sets(<{m} index sets>)"

    def fits(n: int):
        if n > m:
            raise ValueError(f"from_index_sets(...) has sets for {m} queries, so n must be <= {m}, got n={n}")

    return Pattern(
        lambda q, k, n: lookup(q * m + k),
        text,
        checks=[fits],
        tables=[lambda n: [lookup]],
        needs_length=True,
    )


def from_lookback(w) -> Pattern:
    """attention-gym's look-back convention: ``k <= q and q - k <= w`` (w + 1 keys), w >= 0.

    ``attn_gym.masks.generate_sliding_window(w)`` keeps w + 1 keys, so this returns (and prints as)
    ``sliding_window(w + 1)``.
    """
    w = int_arg("w", w, minimum=0)
    return sliding_window(w + 1)


def from_longformer_window(attention_window) -> Pattern:
    """HF Longformer's ``attention_window`` (two-sided, even, > 0) as ``band(attention_window // 2)``.

    HF uses radius ``attention_window // 2`` each side (default 512 -> band(256), 513 keys);
    the Longformer paper's window w is likewise w/2 on each side. Prints as the band it returns.
    """
    a = int_arg("attention_window", attention_window, minimum=1)
    if a % 2:
        raise ValueError(f"attention_window must be even (HF Longformer splits it in half each side), got {a}")
    return band(a // 2)


# ----- Pattern or boolean mask -> mask (the one conversion the whole package uses) ----------


def _mask_shape(name: str, shape: tuple, n) -> int:
    """Check that a mask of ``shape`` is n x n (n >= 1; n=None: any size) and return n."""
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (queries x keys), got shape {shape}")
    if shape[0] != shape[1]:
        raise ValueError(f"{name} must be square (n x n), got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} must have at least one row and column, got shape {shape}")
    if n is not None and int_arg("n", n, minimum=1) != shape[0]:
        raise ValueError(
            f"{name} must have shape (N, N) = ({n}, {n}), got {shape} "
            f"(the length n must match the mask's size {shape[0]})"
        )
    return shape[0]


def as_mask(pattern_or_mask, n=None, *, name="pattern_or_mask", square=True) -> np.ndarray:
    """The numpy bool mask ``mask[q, k]`` (True: query q may attend to key k) of a Pattern or array.

    A :class:`Pattern` gives ``pattern.mask(n)`` (n required). Anything else must be a boolean
    array (or nested lists of bools); it is returned as a numpy array, not copied. With
    ``square`` (the default) it must be n x n, non-empty, and match ``n`` if n is given; with
    ``square=False`` any shape passes (the caller checks it, e.g. against the scores' shape).
    ``name`` is the argument's name in the error messages.
    """
    if isinstance(pattern_or_mask, Pattern):
        if n is None:
            raise ValueError(f"n (the sequence length, >= 1) is required when {name} is a Pattern")
        return pattern_or_mask.mask(n)
    arr = np.asarray(pattern_or_mask)
    if isinstance(pattern_or_mask, (str, bytes)) or arr.dtype.kind in "OUSV":
        raise TypeError(
            f"{name} must be a Pattern (from globattn_lite.patterns) or a boolean (n, n) array "
            f"(True = may attend), got {type(pattern_or_mask).__name__}"
        )
    if arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array (True = may attend) or a Pattern, got dtype {arr.dtype}")
    if square:
        _mask_shape(name, arr.shape, n)
    return arr


def as_torch_mask(pattern_or_mask, n=None, device=None, *, name="pattern_or_mask"):
    """:func:`as_mask` for torch: the (n, n) ``torch.bool`` mask of a Pattern, array or bool tensor.

    A torch tensor is checked the same way (bool dtype, n x n) and not copied; anything else goes
    through :func:`as_mask`. ``device``: where the mask should live (None: leave it where it is).
    """
    import torch

    if isinstance(pattern_or_mask, torch.Tensor):
        if pattern_or_mask.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor (True = may attend), got dtype {pattern_or_mask.dtype}")
        _mask_shape(name, tuple(pattern_or_mask.shape), n)
        mask = pattern_or_mask
    else:
        mask = torch.from_numpy(as_mask(pattern_or_mask, n, name=name))
    return mask if device is None else mask.to(device)
