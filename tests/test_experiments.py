"""Experiments: the training loop, the streaming cache policies, the CLI, and the shipped checkpoints.

The results JSON beside each checkpoint was computed by the training script with the float32
weights at the end of training; the checkpoint stores them as float16. So ``evaluate_*`` on the
shipped checkpoint reproduces the recorded numbers within a stated tolerance:
accuracy within 0.02 (absolute), perplexity within 1% (relative), attention mass within 0.01.
"""

import json

import numpy as np
import pytest
import torch

from globattn_lite import experiments as E
from globattn_lite import patterns as P
from globattn_lite.tasks import LongRangeRetrieval, MarkovSource
from globattn_lite.tiny import TinyConfig, TinyTransformer

ACC_TOL, PPL_RTOL, MASS_TOL = 0.02, 0.01, 0.01


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a shared 2-core machine two torch threads ran these evaluations ~9x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_runs_and_lowers_the_loss():
    task = LongRangeRetrieval(n=16, fact_start=0, fact_stop=4)
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(task.vocab_size, n_layer=1, d_model=32, max_len=16))
    mask = P.causal().mask(16)

    def batch_loss(step):
        ids, ans, _ = task.sample(16, step)
        return E._classify_loss(model, mask, ids, ans)

    losses, ran = E.train(model, batch_loss, steps=40, lr=3e-3, progress=False)
    assert ran == 40 and np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_train_stops_early_when_told():
    model = TinyTransformer(TinyConfig(10, n_layer=1, d_model=16))
    ids = torch.zeros(2, 4, dtype=torch.long)
    _, ran = E.train(
        model, lambda s: model(ids, P.causal()).sum(), steps=50, progress=False, stop=lambda: True, check_every=10
    )
    assert ran == 10


@pytest.mark.parametrize("g", [0, 1])
def test_stream_policies_agree_when_the_cache_holds_everything(g):
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(16, n_layer=2, d_model=32, positions="rotary", n_global=g)).eval()
    ids = torch.from_numpy(MarkovSource(16, seed=0).sample(2, 24, seed=1))
    dense = E.stream_nll(model, ids, "dense")
    assert dense.shape == (2, 23)
    for policy in ("window", "sinks", "recompute"):
        got = E.stream_nll(model, ids, policy, cache=24 + g, sinks=1)
        torch.testing.assert_close(got, dense, atol=1e-4, rtol=1e-4)


def test_recompute_and_window_agree_before_the_first_eviction():
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(16, n_layer=2, d_model=32, positions="rotary")).eval()
    ids = torch.from_numpy(MarkovSource(16, seed=0).sample(2, 30, seed=1))
    win = E.stream_nll(model, ids, "window", cache=8)
    rec = E.stream_nll(model, ids, "recompute", cache=8)
    torch.testing.assert_close(win[:, :7], rec[:, :7], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(win[:, 10:], rec[:, 10:])  # after eviction the cached states differ
    with pytest.raises(ValueError, match="policy"):
        E.stream_nll(model, ids, "lru")


def test_load_models_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m globattn_lite.experiments long_range"):
        E.load_models("long_range", tmp_path)
    with pytest.raises(ValueError, match="name"):
        E.load_models("nope")


@pytest.mark.slow
def test_cli_quick_run_writes_checkpoint_and_results(tmp_path):
    E.main(["long_range", "--quick", "--out", str(tmp_path), "--threads", "1"])
    results = json.loads((tmp_path / "long_range.json").read_text())
    assert results["quick"] and results["seed"] == 0 and results["torch"] == torch.__version__
    assert all(v["steps"] <= 20 for v in results["training"].values())
    again = E.evaluate_long_range(tmp_path)
    for name, row in again.items():
        if name != "chance":
            assert abs(row["accuracy"] - results["results"][name]["accuracy"]) <= ACC_TOL


def _shipped(name):
    path = E.CHECKPOINT_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{name} is not shipped")
    return E.load_results(name)


@pytest.mark.slow
def test_shipped_long_range_reproduces():
    recorded = _shipped("long_range")["results"]
    got = E.evaluate_long_range()
    assert got.keys() == recorded.keys()
    for name, row in got.items():
        if name == "chance":
            continue
        assert abs(row["accuracy"] - recorded[name]["accuracy"]) <= ACC_TOL, name
        assert row["pairs_per_layer"] == recorded[name]["pairs_per_layer"]


@pytest.mark.slow
def test_shipped_streaming_reproduces():
    recorded = _shipped("streaming")["results"]
    got = E.evaluate_streaming()
    assert got["floor_ppl"] == pytest.approx(recorded["floor_ppl"], rel=1e-6)
    for model in ("no sink token", "sink token"):
        for policy, ppl in got[model]["ppl"].items():
            assert ppl == pytest.approx(recorded[model]["ppl"][policy], rel=PPL_RTOL), (model, policy)
        for what, per_layer in got[model]["attention_mass"].items():
            np.testing.assert_allclose(per_layer, recorded[model]["attention_mass"][what], atol=MASS_TOL)


@pytest.mark.slow
def test_cli_quick_streaming_run_records_the_extra_seed(tmp_path):
    E.main(["streaming", "--quick", "--out", str(tmp_path), "--threads", "1"])
    results = json.loads((tmp_path / "streaming.json").read_text())
    assert results["quick"] and results["seed"] == 0 and set(results["other_seeds"]) == {"1"}
    assert all(v["steps"] == 20 for v in results["training"].values())
    other = results["other_seeds"]["1"]
    assert all(v["steps"] == 20 for v in other["training"].values())
    assert other["results"]["sink token"]["ppl"].keys() == results["results"]["sink token"]["ppl"].keys()
    assert other["results"]["sink token"]["ppl"] != results["results"]["sink token"]["ppl"]  # another seed
    again = E.evaluate_streaming(tmp_path)  # the checkpoint holds the first seed's models
    for policy, ppl in again["sink token"]["ppl"].items():
        assert ppl == pytest.approx(results["results"]["sink token"]["ppl"][policy], rel=PPL_RTOL), policy


@pytest.mark.slow
def test_shipped_streaming_results_hold_what_the_lessons_say_on_every_recorded_seed():
    """What notebook 05 and the README say of the shipped run, checked on its results file, for each seed:
    sink + recent matches recomputation, evicting the learned sink token costs more than evicting the plain
    model's first tokens (which costs nothing), and dense attention past the training length blows up."""
    shipped = _shipped("streaming")
    runs = [shipped["results"]] + [v["results"] for v in shipped.get("other_seeds", {}).values()]
    assert len(runs) >= 2
    for r in runs:
        sink, plain = r["sink token"]["ppl"], r["no sink token"]["ppl"]
        for C, kept in ((64, "sink token + 63 recent"), (16, "sink token + 15 recent")):
            assert sink[kept] == pytest.approx(sink[f"recompute (last {C})"], rel=0.01)
            assert plain[f"window (last {C})"] == pytest.approx(plain[f"recompute (last {C})"], rel=0.01)
            assert sink[f"window (last {C})"] > 1.01 * sink[kept]
        assert plain["dense over the whole stream (1024)"] > 2 * plain["recompute (last 64)"]
        assert sink["dense over the whole stream (1024)"] > 2 * sink["recompute (last 64)"]


def test_memory_mask_hides_inactive_slots():
    S, n, g = 8, 16, 2
    m = E.memory_mask(g, n, slots=S, radius=1)
    assert m.shape == (S + n, S + n)
    inactive = np.arange(g, S)
    assert not m[S:, inactive].any() and not m[inactive, S:].any()  # no real token reads or is read by them
    assert (m[inactive][:, inactive] == np.eye(S - g, dtype=bool)).all()
    keep = np.r_[np.arange(g), np.arange(S, S + n)]
    assert (m[np.ix_(keep, keep)] == (P.band(1) | P.global_tokens(g)).mask(g + n)).all()
    with pytest.raises(ValueError, match="g"):
        E.memory_mask(S + 1, n, slots=S)


@pytest.mark.slow
def test_cli_quick_memory_run_writes_checkpoint_and_results(tmp_path):
    E.main(["memory", "--quick", "--out", str(tmp_path), "--threads", "1"])
    results = json.loads((tmp_path / "memory.json").read_text())
    assert results["quick"] and results["training"]["steps"] == 8 * len(E.MEMORY["stages"])
    r = results["results"]
    assert r["globals"] == [0, 1, 2, 4, 8] and r["kv_entries"] == [64 + g for g in r["globals"]]
    assert r["pairs_per_layer"][0] == P.band(1).num_pairs(64) and r["dense_pairs_per_layer"] == 64**2
    assert r["one_fact"][-1] == pytest.approx(1 / 8 + 7 / 64)
    again = E.evaluate_memory(tmp_path)
    np.testing.assert_allclose(again["accuracy"], r["accuracy"], atol=ACC_TOL)


@pytest.mark.slow
def test_shipped_memory_reproduces():
    recorded = _shipped("memory")["results"]
    got = E.evaluate_memory()
    assert got.keys() == recorded.keys()
    np.testing.assert_allclose(got["accuracy"], recorded["accuracy"], atol=ACC_TOL)
    assert got["pairs_per_layer"] == recorded["pairs_per_layer"] and got["kv_entries"] == recorded["kv_entries"]
    assert "| 8 |" in E.results_table("memory")


def test_shipped_checkpoints_are_small():
    total = sum(p.stat().st_size for p in E.CHECKPOINT_DIR.glob("*") if p.is_file())
    assert total < 10 * 2**20
