"""Task generators: deterministic for a seed, answers equal a brute-force scan."""

import numpy as np
import pytest

from globattn_lite.tasks import LongRangeRetrieval, ManyFacts, MarkovSource


def test_long_range_deterministic_and_brute_force():
    task = LongRangeRetrieval(n=48, fact_start=2, fact_stop=10)
    ids, ans, pos = task.sample(64, seed=3)
    ids2, ans2, pos2 = task.sample(64, seed=3)
    assert np.array_equal(ids, ids2) and np.array_equal(ans, ans2) and np.array_equal(pos, pos2)
    assert not np.array_equal(ids, task.sample(64, seed=4)[0])
    assert np.array_equal(task.brute_force_answer(ids), ans)
    assert ids.shape == (64, 48) and ids.max() < task.vocab_size
    # exactly one fact token, early, far from the end; the query asks for its key
    fact_vocab = task.n_keys * task.n_values
    assert ((ids[:, :-1] < fact_vocab).sum(1) == 1).all()
    for row, p in zip(ids, pos, strict=True):
        assert row[p] // task.n_values == row[-1] - fact_vocab
        assert 2 <= p < 10 and 48 - 1 - p > 2 * 8


def test_long_range_validates():
    with pytest.raises(ValueError, match="fact_stop must be <= 15, got 20"):
        LongRangeRetrieval(n=16, fact_stop=20)
    with pytest.raises(TypeError, match=r"batch must be a whole number \(int\), got 2\.5"):
        LongRangeRetrieval().sample(2.5, seed=0)


def test_markov_deterministic_and_entropy_matches_sample():
    src = MarkovSource(vocab_size=8, alpha=0.2, seed=1)
    assert np.array_equal(src.table, MarkovSource(vocab_size=8, alpha=0.2, seed=1).table)
    a, b = src.sample(4, 200, seed=5), src.sample(4, 200, seed=5)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(src.table.sum(-1), 1.0)
    # the stationary distribution is stationary, and the entropy rate matches a long sample's true NLL
    pi = src.stationary()
    np.testing.assert_allclose(np.einsum("ab,abc->bc", pi, src.table), pi, atol=1e-12)
    long = src.sample(32, 4000, seed=0)
    assert abs(src.nll(long).mean() - src.entropy_rate()) < 0.02
    # brute force: empirical transition frequencies of the sample match the table
    counts = np.zeros((8, 8, 8))
    np.add.at(counts, (long[:, :-2], long[:, 1:-1], long[:, 2:]), 1)
    a_, b_ = np.unravel_index(np.argmax(counts.sum(-1)), (8, 8))
    emp = counts[a_, b_] / counts[a_, b_].sum()
    assert np.abs(emp - src.table[a_, b_]).max() < 0.05


def test_many_facts_deterministic_and_brute_force():
    task = ManyFacts(n=40, n_keys=8, n_values=4, margin=8)
    for k in (1, 3, 8):
        ids, ans = task.sample(50, k, seed=7)
        ids2, ans2 = task.sample(50, k, seed=7)
        assert np.array_equal(ids, ids2) and np.array_equal(ans, ans2)
        assert np.array_equal(task.brute_force_answer(ids), ans)
        fact_vocab = task.n_keys * task.n_values
        facts = ids < fact_vocab
        assert (facts.sum(1) == k).all()
        assert not facts[:, 40 - 1 - 8 :].any()  # no fact within the margin before the query
    with pytest.raises(AssertionError, match=r"\(2, 9, ManyFacts\("):  # internal, built by the experiments: asserts
        task.sample(2, 9, seed=0)
