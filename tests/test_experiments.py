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


def test_lr_factor_warms_up_then_decays_to_zero():
    assert E.lr_factor(0, 1000, warmup=100) == pytest.approx(0.01)
    assert E.lr_factor(49, 1000, warmup=50) == pytest.approx(1.0)  # constant after warm-up by default
    assert E.lr_factor(999, 1000, warmup=50) == 1.0
    assert E.lr_factor(500, 1000, warmup=100, cosine=True) == pytest.approx(0.5)
    assert E.lr_factor(1000, 1000, warmup=100, cosine=True) == pytest.approx(0.0, abs=1e-12)


def test_long_range_runs_add_a_second_seed_of_the_global_variant():
    runs = E.long_range_runs(seed=3)
    variant = E.LONG_RANGE["second_seed_variant"]
    assert variant in E.long_range_variants()
    assert runs[variant] == (variant, 3) and runs[variant + E.SECOND_SEED] == (variant, 4)
    assert len(runs) == len(E.long_range_variants()) + 1


def test_kept_attention_share_of_uniform_causal_weights():
    n, W = 10, 3
    weights = torch.from_numpy(P.causal().mask(n) / np.arange(1, n + 1)[:, None]).float()  # row q: 1/(q+1)
    share = E.kept_attention_share(weights, P.sliding_window(W))
    np.testing.assert_allclose(share.numpy(), np.minimum(np.arange(1, n + 1), W) / np.arange(1, n + 1), rtol=1e-6)
    np.testing.assert_allclose(E.kept_attention_share(weights, P.causal()).numpy(), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        E.kept_attention_share(weights, np.ones((n + 1, n + 1), dtype=bool))


def test_top_keys_share():
    weights = torch.tensor([[0.5, 0.1, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(E.top_keys_share(weights, 2).numpy(), [0.8, 0.5], rtol=1e-6)
    np.testing.assert_allclose(E.top_keys_share(weights, 9).numpy(), [1.0, 1.0], rtol=1e-6)  # k > n: every key


def test_attention_locality_of_a_model_that_attends_uniformly():
    """With the query and key projections zeroed every score is 0, so each query spreads its weight
    evenly over its q + 1 causal keys: the share kept by a window + sinks is kv_counts / (q + 1)."""
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(20, n_layer=2, n_head=2, d_model=16)).eval()
    for block in model.blocks:
        block.attn.qkv.weight.data[:32] = 0  # rows 0..2d-1 of qkv produce q and k
        block.attn.qkv.bias.data[:32] = 0
    n, windows, S = 12, [2, 4, 16], 1
    ids = torch.randint(0, 20, (3, n))
    got = E.attention_locality(model, ids, windows, sinks=S)
    assert got.shape == (len(windows), 2, 2)
    for i, W in enumerate(windows):
        kept = (P.causal() & (P.sliding_window(W) | P.sinks(S))).kv_counts(n) / np.arange(1, n + 1)
        np.testing.assert_allclose(got[i], kept.mean(), rtol=1e-5)
    last = E.attention_locality(model, ids, [4], queries=[n - 1])
    np.testing.assert_allclose(last, 4 / n, rtol=1e-5)


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
        assert abs(row["top_prediction_share"] - recorded[name]["top_prediction_share"]) <= ACC_TOL, name
        assert len(row["accuracy_per_value"]) == E.LONG_RANGE["task"]["n_values"]


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


@pytest.mark.slow
def test_shipped_dense_model_attention_locality_is_consistent():
    _shipped("long_range")
    loc = E.evaluate_attention_locality()
    layers, heads = E.LONG_RANGE["model"]["n_layer"], E.LONG_RANGE["model"]["n_head"]
    for what in ("other queries", "answer query"):
        window, top = np.array(loc[f"window: {what}"]), np.array(loc[f"top keys: {what}"])
        assert window.shape == top.shape == (len(loc["windows"]), layers, heads)
        assert (window >= 0).all() and (top <= 1 + 1e-4).all()
        assert (np.diff(window, axis=0) >= -1e-4).all()  # a wider window keeps at least as much weight
        assert (top >= window - 1e-4).all()  # no pattern with W + S keys per query keeps more than the top W + S
    assert np.array(loc["on the fact"]).shape == (layers, heads)
    assert loc["fact distance"] == [E.LONG_RANGE["task"]["n"] - E.LONG_RANGE["task"]["fact_stop"],
                                    E.LONG_RANGE["task"]["n"] - 1 - E.LONG_RANGE["task"]["fact_start"]]
