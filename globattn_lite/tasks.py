"""Synthetic tasks for the tiny-model experiments: seeded, deterministic, answers checkable by brute force.

1. :class:`LongRangeRetrieval` -- one key->value fact token near the start, filler, the key asked at the end.
2. :class:`MarkovSource`       -- an order-2 Markov language with a computable entropy rate (a perplexity floor).
3. :class:`ManyFacts`          -- k single-token facts spread over a long input, one of their keys asked at the end.

Every sampler takes a ``seed`` and returns numpy int64 arrays; the same seed gives the same batch.
:class:`LongRangeRetrieval` is built in the lessons, so it checks its arguments with clear messages;
the other two are built by the experiments from their configs and only assert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import int_arg


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(int_arg("seed", seed, minimum=0))


class _FactVocabulary:
    """The vocabulary both fact tasks share: fact tokens ``key * n_values + value`` first
    (``fact_vocab`` of them), then one question token per key (``fact_vocab + key``), then filler."""

    @property
    def fact_vocab(self) -> int:
        return self.n_keys * self.n_values

    @property
    def vocab_size(self) -> int:
        return self.fact_vocab + self.n_keys + self.n_filler

    @property
    def chance(self) -> float:
        return 1.0 / self.n_values

    def brute_force_answer(self, ids) -> np.ndarray:
        """Scan each row for the fact token whose key is the one asked at the end (a plain loop)."""
        out = []
        for row in np.asarray(ids):
            key = row[-1] - self.fact_vocab
            facts = (t for t in row[:-1] if t < self.fact_vocab)
            out.append(next(t % self.n_values for t in facts if t // self.n_values == key))
        return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class LongRangeRetrieval(_FactVocabulary):
    """``n`` tokens: filler, ONE fact token ``key * n_values + value`` at a position p in
    ``[fact_start, fact_stop)``, more filler, and a query token for the same key at ``n - 1``.
    The answer (predicted at the last position) is the value, 0..n_values-1.

    Vocabulary: fact tokens ``0..n_keys*n_values-1``, query tokens ``n_keys*n_values + key``,
    then filler (the distractors). A fact is a single token, so reading it needs one attention
    hop; what makes the task hard for local attention is only the distance ``n - 1 - p``.
    """

    n: int = 64
    n_keys: int = 16
    n_values: int = 16
    n_filler: int = 32
    fact_start: int = 2
    fact_stop: int = 10

    def __post_init__(self):
        int_arg("n", self.n, minimum=4)
        int_arg("n_keys", self.n_keys, minimum=1)
        int_arg("n_values", self.n_values, minimum=2)
        int_arg("n_filler", self.n_filler, minimum=1)
        int_arg("fact_start", self.fact_start, minimum=0)
        int_arg("fact_stop", self.fact_stop, minimum=self.fact_start + 1, maximum=self.n - 1)

    def sample(self, batch: int, seed: int):
        """Return ``(ids (batch, n), answers (batch,), fact_pos (batch,))``; answers are values."""
        batch = int_arg("batch", batch, minimum=1)
        rng = _rng(seed)
        fact_vocab = self.fact_vocab
        ids = rng.integers(fact_vocab + self.n_keys, self.vocab_size, size=(batch, self.n))  # filler
        keys = rng.integers(0, self.n_keys, size=batch)
        values = rng.integers(0, self.n_values, size=batch)
        pos = rng.integers(self.fact_start, self.fact_stop, size=batch)
        ids[np.arange(batch), pos] = keys * self.n_values + values
        ids[:, -1] = fact_vocab + keys
        return ids.astype(np.int64), values.astype(np.int64), pos.astype(np.int64)


class MarkovSource:
    """Order-2 Markov language: ``P(x_t = c | x_{t-2} = a, x_{t-1} = b) = table[a, b, c]``.

    Each row ``table[a, b]`` is drawn from a Dirichlet(alpha) (small alpha: peaky, mostly local
    structure). Its entropy rate ``H = sum_{a,b} pi(a, b) H(table[a, b])`` (pi: stationary
    distribution over pairs) is the best any model can do: perplexity floor ``exp(H)``.
    """

    def __init__(self, vocab_size: int = 16, alpha: float = 0.1, seed: int = 0):
        assert vocab_size >= 2 and alpha > 0 and seed >= 0, (vocab_size, alpha, seed)  # filled by the package
        self.vocab_size, self.alpha, self.seed = int(vocab_size), float(alpha), int(seed)
        rng = np.random.default_rng(seed)
        V = self.vocab_size
        table = rng.dirichlet(np.full(V, self.alpha), size=(V, V))
        table = np.maximum(table, 1e-6)  # every transition possible, so the chain is irreducible
        self.table = table / table.sum(-1, keepdims=True)

    def stationary(self, iters: int = 5000) -> np.ndarray:
        """Stationary distribution pi (V, V) over consecutive pairs, by power iteration."""
        V = self.vocab_size
        pi = np.full((V, V), 1.0 / V**2)
        for _ in range(iters):
            new = np.einsum("ab,abc->bc", pi, self.table)
            if np.abs(new - pi).max() < 1e-14:
                break
            pi = new
        return new

    def entropy_rate(self) -> float:
        """Entropy rate in nats per token."""
        h_rows = -(self.table * np.log(self.table)).sum(-1)
        return float((self.stationary() * h_rows).sum())

    def sample(self, batch: int, length: int, seed: int) -> np.ndarray:
        """``batch`` independent streams of ``length`` tokens, started from the stationary pair distribution."""
        assert batch >= 1 and length >= 2, (batch, length)
        rng = _rng(seed)
        V = self.vocab_size
        start = rng.choice(V * V, size=batch, p=self.stationary().ravel())
        out = np.empty((batch, length), dtype=np.int64)
        out[:, 0], out[:, 1] = start // V, start % V
        cum = np.cumsum(self.table, axis=-1)
        u = rng.random((batch, length))
        for t in range(2, length):
            c = cum[out[:, t - 2], out[:, t - 1]]  # (batch, V)
            out[:, t] = np.minimum((u[:, t, None] > c).sum(-1), V - 1)
        return out

    def nll(self, ids) -> np.ndarray:
        """True per-token negative log-likelihood (nats) of tokens 2.. given the two before."""
        ids = np.asarray(ids)
        return -np.log(self.table[ids[..., :-2], ids[..., 1:-1], ids[..., 2:]])


@dataclass(frozen=True)
class ManyFacts(_FactVocabulary):
    """``k`` facts spread over ``n`` tokens; the last token asks for one of their keys.

    A fact is ONE token ``key * n_values + value`` (so a fact needs no binding of two positions).
    Query tokens ``fact_vocab + key`` come next, then filler. Facts sit at distinct positions in
    ``[0, n - 1 - margin)`` with distinct keys, so a band of radius r over L layers reaches none of
    them from the end when ``margin >= L * r``. The answer is the value (0..n_values-1).
    """

    n: int = 128
    n_keys: int = 16
    n_values: int = 8
    n_filler: int = 16
    margin: int = 32

    def __post_init__(self):  # built by the experiments from their configs
        assert self.n_keys >= 1 and self.n_values >= 2 and self.n_filler >= 1, self
        assert 0 <= self.margin <= self.n - 2, self

    def sample(self, batch: int, k: int, seed: int):
        """Return ``(ids (batch, n), answers (batch,))`` with ``k`` facts per sequence; answers are values."""
        assert batch >= 1 and 1 <= k <= min(self.n_keys, self.n - 1 - self.margin), (batch, k, self)
        rng = _rng(seed)
        fact_vocab = self.fact_vocab
        ids = rng.integers(fact_vocab + self.n_keys, self.vocab_size, size=(batch, self.n))
        answers = np.empty(batch, dtype=np.int64)
        for b in range(batch):
            keys = rng.choice(self.n_keys, size=k, replace=False)
            values = rng.integers(0, self.n_values, size=k)
            pos = rng.choice(self.n - 1 - self.margin, size=k, replace=False)
            ids[b, pos] = keys * self.n_values + values
            asked = rng.integers(0, k)
            ids[b, -1] = fact_vocab + keys[asked]
            answers[b] = values[asked]
        return ids.astype(np.int64), answers
