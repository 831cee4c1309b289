"""Experiments: the training loop, the streaming cache policies, the CLI, and the shipped checkpoints.

The results JSON beside each checkpoint was computed by the training script with the float32
weights at the end of training; the checkpoint stores them as float16. So ``evaluate_*`` on the
shipped checkpoint reproduces the recorded numbers within a stated tolerance:
accuracy within 0.02 (absolute), perplexity within 1% (relative), attention mass within 0.01.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from globattn_lite import experiments as E
from globattn_lite import patterns as P
from globattn_lite.tasks import LongRangeRetrieval, MarkovSource
from globattn_lite.tiny import TinyConfig, TinyTransformer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # fixture in conftest.py

ACC_TOL, PPL_RTOL, MASS_TOL = 0.02, 0.01, 0.01


def test_train_runs_and_lowers_the_loss():
    task = LongRangeRetrieval(n=16, fact_start=0, fact_stop=4)
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(task.vocab_size, n_layer=1, d_model=32, max_len=16))
    mask = P.causal().mask(16)

    def batch_loss(step):
        ids, ans, _ = task.sample(16, step)
        return E.harness.classify_loss(model, mask, ids, ans)

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
    with pytest.raises(ValueError, match=r"mask must have shape \(N, N\) = \(10, 10\), got \(11, 11\)"):
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
    with pytest.raises(ValueError, match=r"policy must be one of \[.*\], got 'lru'"):
        E.stream_nll(model, ids, "lru")


def test_sink_ablations_lie_between_the_window_and_sinks_policies():
    """No layer keeping the sink is the "window" policy and every layer "sinks"; the values-as-zeros
    ablation is checked on a model whose values are all zero (nothing to remove) and on one whose are not."""
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(16, n_layer=3, d_model=32, positions="rotary", n_global=1)).eval()
    ids = torch.from_numpy(MarkovSource(16, seed=0).sample(2, 30, seed=1))
    window, sinks = E.stream_nll(model, ids, "window", 8), E.stream_nll(model, ids, "sinks", 8, sinks=1)
    assert not torch.allclose(window, sinks)
    assert torch.equal(E.sink_ablation_nll(model, ids, 8, layers=()), window)
    assert torch.equal(E.sink_ablation_nll(model, ids, 8, layers=(0, 1, 2)), sinks)
    only0 = E.sink_ablation_nll(model, ids, 8, layers=(0,))
    assert not torch.allclose(only0, window) and not torch.allclose(only0, sinks)
    torch.testing.assert_close(only0[:, :6], sinks[:, :6])  # before the first eviction every policy agrees
    assert not torch.allclose(E.sink_ablation_nll(model, ids, 8, zero_values=True), sinks)
    got = E.sink_ablation(model, ids, 8)
    assert list(got) == [
        "sink kept in layer 0 only",
        "sink kept in layers 1-2 only",
        "sink kept in every layer, its values read as zeros",
    ]
    assert got["sink kept in layer 0 only"] == pytest.approx(float(only0.mean().exp()), abs=1e-4)
    assert list(E.sink_ablations(2))[1] == "sink kept in layer 1 only" and len(E.sink_ablations(1)) == 2
    d = model.cfg.d_model
    with torch.no_grad():
        for block in model.blocks:  # every value vector zero: a sink's value has nothing to take away
            block.attn.qkv.weight[2 * d :] = 0
            block.attn.qkv.bias[2 * d :] = 0
    zeroed = E.sink_ablation_nll(model, ids, 8, zero_values=True)
    torch.testing.assert_close(zeroed, E.stream_nll(model, ids, "sinks", 8, sinks=1), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"needs a model with a prepended sink token \(n_global >= 1\)"):
        E.sink_ablation_nll(TinyTransformer(TinyConfig(16, n_layer=1, d_model=32, positions="rotary")), ids)


def test_load_models_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m globattn_lite.experiments long_range"):
        E.load_models("long_range", tmp_path)
    with pytest.raises(ValueError, match=r"name must be one of \['long_range', 'memory', 'streaming'\], got 'nope'"):
        E.load_models("nope")


def test_the_registry_names_each_experiment_once():
    assert list(E.EXPERIMENTS) == ["long_range", "streaming", "memory"]
    assert [e.config for e in E.EXPERIMENTS.values()] == [E.LONG_RANGE, E.STREAMING, E.MEMORY]
    assert E.EXPLORED == ("long_range", "streaming")  # the experiments with an explorer input
    model = TinyTransformer(TinyConfig(16, n_layer=1, d_model=16))
    with pytest.raises(ValueError, match=r"name must be one of \['long_range', 'streaming'\], got 'memory'"):
        E.explorer_example("memory", "nested", model)
    with pytest.raises(ValueError, match=r"name must be one of \['long_range', 'memory', 'streaming'\], got 'nope'"):
        E.results_table("nope")


def test_the_package_runs_as_a_command():
    """``python -m globattn_lite.experiments`` (the package's __main__) offers every registered experiment."""
    done = subprocess.run(
        [sys.executable, "-m", "globattn_lite.experiments", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "{" + ",".join(E.EXPERIMENTS) + "}" in done.stdout


@pytest.mark.slow
def test_cli_quick_run_writes_checkpoint_and_results(quick_checkpoints):
    results = json.loads((quick_checkpoints / "long_range.json").read_text())
    assert results["quick"] and results["seed"] == 0 and results["torch"] == torch.__version__
    assert all(v["steps"] <= 20 for v in results["training"].values())
    again = E.evaluate_long_range(quick_checkpoints)
    for name, row in again.items():
        if name != "chance":
            assert abs(row["accuracy"] - results["results"][name]["accuracy"]) <= ACC_TOL


def _shipped(name):
    """The results file of shipped experiment ``name``; a missing checkpoint fails the test (every one ships)."""
    missing = [p.name for p in (E.CHECKPOINT_DIR / f"{name}.pt", E.CHECKPOINT_DIR / f"{name}.json") if not p.exists()]
    assert not missing, f"shipped files missing: {missing} (python -m globattn_lite.experiments {name} makes them)"
    return E.load_results(name)


@pytest.mark.parametrize("name", list(E.EXPERIMENTS))
def test_every_experiment_ships_results_that_record_the_code(name):
    """Each shipped results file records the experiment's current config (its "probes" included) and
    the "measured" text generated from that config: a changed config needs a new training run."""
    recorded = _shipped(name)
    experiment = E.EXPERIMENTS[name]
    assert recorded["experiment"] == name and not recorded["quick"]
    assert recorded["config"] == json.loads(json.dumps(experiment.config))  # tuples are lists in JSON
    assert recorded["measured"] == experiment.measured(recorded["config"], recorded["seed"])


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
    assert [k for k in got if isinstance(got[k], dict)] == list(E.STREAMING_MODELS)
    for model in E.STREAMING_MODELS:
        assert got[model]["ppl"].keys() == recorded[model]["ppl"].keys(), model  # no recorded policy missing
        for policy, ppl in got[model]["ppl"].items():
            assert ppl == pytest.approx(recorded[model]["ppl"][policy], rel=PPL_RTOL), (model, policy)
        for what, per_layer in got[model]["attention_mass"].items():
            np.testing.assert_allclose(per_layer, recorded[model]["attention_mass"][what], atol=MASS_TOL)
    for model in E.STREAMING_MODELS[1:]:
        ablation, wanted = got[model]["sink ablation"], recorded[model]["sink ablation"]
        assert ablation.keys() == wanted.keys() == {"64", "16"}
        for C, rows in ablation.items():
            assert rows.keys() == wanted[C].keys()
            for what, ppl in rows.items():
                assert ppl == pytest.approx(wanted[C][what], rel=PPL_RTOL), (model, C, what)


@pytest.mark.slow
def test_cli_quick_streaming_run_records_the_extra_seed(quick_checkpoints):
    results = json.loads((quick_checkpoints / "streaming.json").read_text())
    assert results["quick"] and results["seed"] == 0 and set(results["other_seeds"]) == {"1"}
    assert all(v["steps"] == 20 for v in results["training"].values())
    other = results["other_seeds"]["1"]
    assert all(v["steps"] == 20 for v in other["training"].values())
    assert other["results"]["sink token"]["ppl"].keys() == results["results"]["sink token"]["ppl"].keys()
    assert other["results"]["sink token"]["ppl"] != results["results"]["sink token"]["ppl"]  # another seed
    again = E.evaluate_streaming(quick_checkpoints)  # the checkpoint holds the first seed's models
    for policy, ppl in again["sink token"]["ppl"].items():
        assert ppl == pytest.approx(results["results"]["sink token"]["ppl"][policy], rel=PPL_RTOL), policy


@pytest.mark.slow
def test_shipped_streaming_results_hold_what_the_lessons_say_on_every_recorded_seed():
    """What notebook 05 and the README say of the shipped run, checked on its results file, for each seed:
    sink + recent matches recomputation, evicting the learned sink token costs more than evicting the plain
    model's first tokens (which costs nothing) and more again with sharper attention, and dense attention
    past the training length blows up."""
    shipped = _shipped("streaming")
    runs = [shipped["results"]] + [v["results"] for v in shipped["other_seeds"].values()]
    assert len(runs) >= 2
    for r in runs:
        plain, sink, sharp = (r[name]["ppl"] for name in E.STREAMING_MODELS)
        for C, kept in ((64, "sink token + 63 recent"), (16, "sink token + 15 recent")):
            for model in (sink, sharp):
                assert model[kept] == pytest.approx(model[f"recompute (last {C})"], rel=0.01)
            assert plain[f"window (last {C})"] == pytest.approx(plain[f"recompute (last {C})"], rel=0.01)
            assert sink[f"window (last {C})"] > 1.01 * sink[kept]
            # the order on every seed: sharper attention makes evicting the sink cost more
            assert sharp[f"window (last {C})"] / sharp[kept] > 1.2 * sink[f"window (last {C})"] / sink[kept]
        assert plain["dense over the whole stream (1024)"] > 2 * plain["recompute (last 64)"]
        assert sink["dense over the whole stream (1024)"] > 2 * sink["recompute (last 64)"]


@pytest.mark.slow
def test_shipped_sink_ablation_holds_what_lesson_05_says_on_every_recorded_seed():
    """Notebook 05 on the sink ablation, for each recorded seed and cache size: the whole cost of evicting
    the sink token sits in layer 0 (kept there alone it gives back sink + recent, kept only in the layers
    above it gives back nothing), and read as zeros its values are not what the model needs: the kept
    sink still gives back most of what evicting it cost."""
    shipped = _shipped("streaming")
    runs = [shipped["results"]] + [v["results"] for v in shipped["other_seeds"].values()]
    for r, model in ((r, model) for r in runs for model in E.STREAMING_MODELS[1:]):
        ppl, ablation = r[model]["ppl"], r[model]["sink ablation"]
        for C in (64, 16):
            window, kept, rows = ppl[f"window (last {C})"], ppl[f"sink token + {C - 1} recent"], ablation[str(C)]
            assert rows["sink kept in layer 0 only"] == pytest.approx(kept, rel=0.005), (model, C)
            assert rows["sink kept in layers 1-2 only"] == pytest.approx(window, rel=0.005), (model, C)
            zero = rows["sink kept in every layer, its values read as zeros"]
            assert window - zero >= 0.75 * (window - kept), (model, C)


def test_memory_mask_hides_inactive_slots():
    S, n, g = 8, 16, 2
    m = E.memory_mask(g, n, slots=S, radius=1)
    assert m.shape == (S + n, S + n)
    inactive = np.arange(g, S)
    assert not m[S:, inactive].any() and not m[inactive, S:].any()  # no real token reads or is read by them
    assert (m[inactive][:, inactive] == np.eye(S - g, dtype=bool)).all()
    keep = np.r_[np.arange(g), np.arange(S, S + n)]
    assert (m[np.ix_(keep, keep)] == (P.band(1) | P.global_tokens(g)).mask(g + n)).all()
    with pytest.raises(ValueError, match=f"g must be <= {S}, got {S + 1}"):
        E.memory_mask(S + 1, n, slots=S)


def test_active_slots_mask_switches_single_slots_off():
    S, n = 8, 16
    for g in range(S + 1):
        assert (E.active_slots_mask(range(g), n, slots=S) == E.memory_mask(g, n, slots=S)).all()
    m = E.active_slots_mask([0, 1, 3], n, slots=S, radius=1)  # slot 2 off, slots 4..7 off
    assert m[S:][:, [0, 1, 3]].all() and m[[0, 1, 3]][:, S:].all()  # active slots read and are read by every real token
    assert not m[S:, 2].any() and not m[2, S:].any() and m[2, 2]  # slot 2 is cut off, as an inactive slot
    keep = np.r_[[0, 1, 3], np.arange(S, S + n)]
    assert (m[np.ix_(keep, keep)] == (P.band(1) | P.global_tokens(3)).mask(3 + n)).all()
    with pytest.raises(ValueError, match=r"active slots must be distinct, got \[1, 1\]"):
        E.active_slots_mask([1, 1], n, slots=S)
    with pytest.raises(ValueError, match=f"active slot must be <= {S - 1}, got {S}"):
        E.active_slots_mask([S], n, slots=S)


def test_question_global_pattern_reads_every_fact_in_one_hop():
    from globattn_lite import costs

    n = 64
    pattern = E.question_global_pattern(n, radius=1)
    m = pattern.mask(n)
    assert m[n - 1].all() and m[:, n - 1].all()  # the question reads every token and every token reads it
    # band(1) has 3n - 2 pairs; the question's row and column add n - 2 new pairs each
    assert pattern.num_pairs(n) == P.band(1).num_pairs(n) + 2 * (n - 2) == 314
    assert all(costs.hops(pattern, n, fact, n - 1) == 1 for fact in range(n - 1))
    assert costs.hops(P.band(1), n, 0, n - 1) == n - 1


def _memory_model_with_identical_slots():
    """A random nested-slot model whose 8 slots have the same vector and the same position embedding."""
    c = E.MEMORY
    task = E.memory.memory_task(c["stages"][-1])
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(task.vocab_size, max_len=task.n + c["slots"], n_global=c["slots"], **c["model"]))
    with torch.no_grad():
        model.globals.copy_(model.globals[:1].expand_as(model.globals))
        model.pos.weight[: c["slots"]] = model.pos.weight[0]
    return model.eval()


def test_memory_slot_usage_measures_identical_slots_as_copies():
    usage = E.memory_slot_usage(models={"nested": _memory_model_with_identical_slots()}, ks=[2, 8], test_size=32)
    S = usage["slots"]
    assert usage["ks"] == [2, 8] and len(usage["without"]) == len(usage["only"]) == S
    np.testing.assert_allclose(usage["similarity"], np.ones((S, S)), atol=1e-3)  # identical states
    for j in range(1, S):  # by symmetry, which slot is switched off (or left alone) cannot matter
        assert usage["without"][j] == usage["without"][0] and usage["only"][j] == usage["only"][0]


def test_memory_slot_usage_tells_distinct_slots_apart():
    model = _memory_model_with_identical_slots()
    with torch.no_grad():
        model.globals[3] = 3.0 * torch.randn(model.cfg.d_model)  # slot 3 starts elsewhere
    usage = E.memory_slot_usage(models={"nested": model}, ks=[2], test_size=32)
    sim = np.array(usage["similarity"])
    assert np.allclose(np.diag(sim), 1, atol=1e-4) and np.allclose(sim, sim.T, atol=1e-5)
    others = [j for j in range(8) if j != 3]
    assert sim[3, others].max() < sim[np.ix_(others, others)].min()


@pytest.mark.slow
def test_cli_quick_memory_run_writes_checkpoint_and_results(tmp_path):
    E.main(["memory", "--quick", "--out", str(tmp_path), "--threads", "1"])
    results = json.loads((tmp_path / "memory.json").read_text())
    assert results["quick"] and results["training"]["steps"] == 8 * len(E.MEMORY["stages"])
    r = results["results"]
    assert r["globals"] == [0, 1, 2, 4, 8] and r["kv_entries"] == [64 + g for g in r["globals"]]
    assert r["pairs_per_layer"][0] == P.band(1).num_pairs(64) and r["dense_pairs_per_layer"] == 64**2
    assert r["one_fact"][-1] == pytest.approx(1 / 8 + 7 / 64)
    assert r["question_global"]["pairs_per_layer"] == 314 and r["question_global"]["kv_entries"] == 64
    assert results["training_question_global"]["steps"] == 8
    assert len(results["slot_usage"]["without"]) == E.MEMORY["slots"]
    again = E.evaluate_memory(tmp_path)
    np.testing.assert_allclose(again["accuracy"], r["accuracy"], atol=ACC_TOL)
    np.testing.assert_allclose(again["question_global"]["accuracy"], r["question_global"]["accuracy"], atol=ACC_TOL)


@pytest.mark.slow
def test_shipped_memory_reproduces():
    recorded = _shipped("memory")["results"]
    got = E.evaluate_memory()
    assert got.keys() == recorded.keys()
    np.testing.assert_allclose(got["accuracy"], recorded["accuracy"], atol=ACC_TOL)
    assert got["pairs_per_layer"] == recorded["pairs_per_layer"] and got["kv_entries"] == recorded["kv_entries"]
    np.testing.assert_allclose(
        got["question_global"]["accuracy"], recorded["question_global"]["accuracy"], atol=ACC_TOL
    )
    assert "| 8 |" in E.results_table("memory") and "question token global" in E.results_table("memory")


@pytest.mark.slow
def test_shipped_memory_slot_usage_reproduces():
    recorded = _shipped("memory")["slot_usage"]
    got = E.memory_slot_usage()
    for what in ("all", "without", "only"):
        np.testing.assert_allclose(got[what], recorded[what], atol=ACC_TOL, err_msg=what)
    np.testing.assert_allclose(got["similarity"], recorded["similarity"], atol=0.01)


def test_shipped_checkpoints_are_small():
    for name in E.EXPERIMENTS:
        _shipped(name)
    total = sum(p.stat().st_size for p in E.CHECKPOINT_DIR.glob("*") if p.is_file())
    assert total < 10 * 2**20


@pytest.mark.parametrize("policy, cache, sinks", [("window", 8, 0), ("sinks", 8, 1), ("dense", 8, 0)])
@pytest.mark.parametrize("g", [0, 1])
def test_stream_trace_is_stream_nll_step_by_step(policy, cache, sinks, g):
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(16, n_layer=2, d_model=32, positions="rotary", n_global=g)).eval()
    ids = torch.from_numpy(MarkovSource(16, seed=0).sample(1, 30, seed=1))
    trace = E.stream_trace(model, ids, policy, cache, sinks)
    reference = E.stream_nll(model, ids, policy, cache, sinks)[0].numpy()
    np.testing.assert_allclose(trace["nll"], reference, atol=1e-5 if policy == "dense" else 0)
    assert len(trace["kept"]) == len(trace["weights"]) == 29
    for t, (kept, w) in enumerate(zip(trace["kept"], trace["weights"], strict=True)):
        if policy == "dense":
            assert kept.tolist() == list(range(g + t + 1))
        else:
            assert len(kept) == min(cache, g + t + 1) and kept[-1] == g + t
            assert kept[:sinks].tolist() == list(range(min(sinks, g + t + 1)))
        assert w.shape == (2, 4, len(kept))
        np.testing.assert_allclose(w.sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(E.running_perplexity(trace["nll"])[-1], np.exp(reference.mean()), rtol=1e-6)
    with pytest.raises(ValueError, match=r"policy must be one of \['dense', 'sinks', 'window'\], got 'recompute'"):
        next(E.stream_steps(model, ids, "recompute"))


def test_explorer_example_is_the_evaluation_input():
    _shipped("long_range")
    models = E.load_models("long_range")
    for variant, (g, pattern, fact) in E.long_range_variants(
        E.LONG_RANGE["window"], E.LONG_RANGE["radius"], E.LONG_RANGE["sinks"]
    ).items():
        ids, answers, _ = E.long_range.long_range_task(fact).sample(E.LONG_RANGE["test_size"], E.TEST_SEED)
        for i in (0, E.EXAMPLES - 1):
            case = E.explorer_example("long_range", variant, models[variant], i)
            np.testing.assert_array_equal(case["ids"].numpy(), ids[i : i + 1])  # the test set's sequence i
            assert case["answer"] == answers[i] and case["query"] == g + ids.shape[1] - 1
            np.testing.assert_array_equal(case["mask"], pattern.mask(g + ids.shape[1]))
    model = next(iter(models.values()))
    with pytest.raises(ValueError, match=r"token ids must be in 0\.\.\d+ \(the model's vocabulary\), got 1\.\.100000"):
        E.explorer_example("long_range", variant, model, tokens="1 2 100000")
    with pytest.raises(ValueError, match="tokens must hold 2 to 128 ids for this model, got 1"):
        E.explorer_example("long_range", variant, model, tokens="5")
    with pytest.raises(ValueError, match="variant 'no such variant' is not one of the long-range models"):
        E.explorer_example("long_range", "no such variant", model)
    with pytest.raises(ValueError, match=f"example must be <= {E.EXAMPLES - 1}, got {E.EXAMPLES}"):
        E.explorer_example("long_range", variant, model, E.EXAMPLES)


def test_explorer_example_streaming_window_is_the_evaluation_chunk():
    c = E.STREAMING
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(16, n_layer=1, d_model=32, positions="rotary", n_global=1)).eval()
    streams = MarkovSource(**c["source"]).sample(c["test_streams"], c["test_len"], seed=E.TEST_SEED)
    case = E.explorer_example("streaming", "any name", model, 9)
    np.testing.assert_array_equal(case["ids"].numpy()[0], streams.reshape(-1, c["train_len"])[9])
    assert case["query"] == 1 + c["train_len"] - 2 and case["answer"] == streams.reshape(-1, c["train_len"])[9, -1]
    np.testing.assert_array_equal(case["mask"], P.causal().mask(1 + c["train_len"]))
    typed = E.explorer_example("streaming", "any name", model, tokens="1, 2, 3")
    assert typed["ids"].tolist() == [[1, 2, 3]] and typed["query"] == 3 and typed["answer"] is None


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
    assert loc["fact distance"] == [
        E.LONG_RANGE["task"]["n"] - E.LONG_RANGE["task"]["fact_stop"],
        E.LONG_RANGE["task"]["n"] - 1 - E.LONG_RANGE["task"]["fact_start"],
    ]
