"""timing.median_times: calls each function, returns medians per name, restores torch's threads."""

import pytest
import torch

from globattn_lite.timing import median_times, seconds_per_call


def test_counts_calls_and_returns_one_median_per_name():
    counter = {"a": 0, "b": 0}

    def make(name):
        def f():
            counter[name] += 1

        return f

    times = median_times({"a": make("a"), "b": make("b")}, repeats=3, target_seconds=0.001)
    assert set(times) == {"a", "b"}
    assert all(t >= 0 for t in times.values())
    assert counter["a"] >= 4 and counter["b"] >= 4  # one warm-up call plus at least one per round


def test_slower_function_measures_slower():
    import time as _time

    times = median_times({"fast": lambda: None, "slow": lambda: _time.sleep(0.002)}, repeats=3, target_seconds=0.004)
    assert times["slow"] > times["fast"]


def test_restores_torch_threads():
    before = torch.get_num_threads()
    seen = []
    median_times({"f": lambda: seen.append(torch.get_num_threads())}, repeats=1, target_seconds=0.0, threads=1)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def test_seconds_per_call_is_a_mean():
    assert seconds_per_call(lambda: None, 10) >= 0


@pytest.mark.parametrize("bad", [{}, [lambda: None], {"f": 3}])
def test_bad_fns(bad):
    with pytest.raises(TypeError, match=r"fns must be a non-empty dict \{name: function of no arguments\}"):
        median_times(bad)


def test_bad_repeats():
    with pytest.raises(ValueError, match="repeats must be a whole number >= 1, got 0"):
        median_times({"f": lambda: None}, repeats=0)
