"""The tiny transformer: masks from Patterns, prepended global tokens, rotary positions, KV cache."""

import numpy as np
import pytest
import torch

from globattn_lite import patterns as P
from globattn_lite.tiny import KVCache, TinyConfig, TinyTransformer, rotate


def make(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyTransformer(TinyConfig(vocab_size=20, **kw)).eval()


def ids(n=12, b=2, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 20, size=(b, n)))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_pattern_full_equals_all_true_mask_and_manual_softmax(positions):
    m, x = make(positions=positions), ids()
    a = m(x, P.full())
    b = m(x, torch.ones(12, 12, dtype=torch.bool))
    c, weights = m(x, np.ones((12, 12), dtype=bool), need_weights=True)  # explicit softmax path
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    assert all(torch.allclose(w.sum(-1), torch.ones(())) for w in weights)


def test_causal_pattern_hides_the_future():
    m, x = make(), ids()
    y = x.clone()
    y[:, 7] = (y[:, 7] + 1) % 20
    a, b = m(x, P.causal()), m(y, P.causal())
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_mask_weights_are_zero_outside_the_pattern():
    m, x = make(n_layer=1), ids(n=16)
    pattern = P.causal() & (P.sliding_window(3) | P.sinks(1))
    _, (w,) = m(x, pattern, need_weights=True)
    allowed = torch.from_numpy(pattern.mask(16))
    assert (w[..., ~allowed] == 0).all() and (w[..., allowed] > 0).all()


def test_prepended_global_tokens_take_part_in_attention():
    g, n = 2, 20
    m, x = make(n_global=g, n_layer=2), ids(n=n)
    logits, weights = m(x, P.band(1) | P.global_tokens(g), need_weights=True)
    assert logits.shape == (2, n, 20)  # one row per real token, globals dropped
    for w in weights:  # (B, H, g+n, g+n): every query sees the globals, the globals see everything
        assert (w[..., :g] > 0).all() and (w[:, :, :g, :] > 0).all()
    # two hops: the first real token reaches the last through a global token, not through band(1)
    y = x.clone()
    y[:, 0] = (y[:, 0] + 1) % 20
    assert not torch.allclose(m(x, P.band(1) | P.global_tokens(g))[:, -1], m(y, P.band(1) | P.global_tokens(g))[:, -1])
    torch.testing.assert_close(m(x, P.band(1))[:, -1], m(y, P.band(1))[:, -1])


def test_rotary_depends_on_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 8), torch.randn(1, 8)
    s = [(rotate(q, torch.tensor([i + 5])) * rotate(k, torch.tensor([i]))).sum() for i in range(4)]
    torch.testing.assert_close(torch.stack(s), s[0].expand(4), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rotate(q, torch.tensor([3])).norm(), q.norm())


@pytest.mark.parametrize("g", [0, 1])
def test_kv_cache_without_eviction_equals_dense_causal_forward(g):
    m, x = make(positions="rotary", n_layer=3, n_global=g), ids(n=10)
    dense = m(x, P.causal())
    cache = KVCache(3, size=None)
    for j in range(g):
        m.step(m.globals[j].expand(2, -1), cache)
    stepped = torch.stack([m.step(m.tok(x[:, t]), cache) for t in range(10)], dim=1)
    torch.testing.assert_close(stepped, dense, atol=1e-5, rtol=1e-4)


def test_kv_cache_keeps_sinks_and_recent():
    cache = KVCache(1, size=4, sinks=1)
    for t in range(7):
        k, _ = cache.add(0, torch.full((1, 1, 1, 1), float(t)), torch.zeros(1, 1, 1, 1))
    assert k.flatten().tolist() == [0.0, 4.0, 5.0, 6.0]
    with pytest.raises(AssertionError, match=r"sinks \(4\) must be < size \(4\)"):
        KVCache(1, size=4, sinks=4)


def test_kv_cache_keeps_the_sinks_only_in_its_sink_layers():
    cache = KVCache(2, size=4, sinks=1, sink_layers=(0,))
    for t in range(7):
        for layer in (0, 1):
            k, _ = cache.add(layer, torch.full((1, 1, 1, 1), float(t)), torch.zeros(1, 1, 1, 1))
            assert k.flatten().tolist() == cache.kept(t + 1, layer)
    assert cache.kept(7, 0) == [0, 4, 5, 6] and cache.kept(7, 1) == [3, 4, 5, 6]  # layer 1: a plain window
    with pytest.raises(AssertionError):
        KVCache(2, size=4, sinks=1, sink_layers=(2,))


def test_kv_cache_reads_zero_sink_values_but_keeps_their_keys():
    cache = KVCache(2, size=4, sinks=1, sink_layers=(1,), zero_sink_values=True)
    for t in range(6):
        entry = torch.full((1, 1, 1, 1), float(t + 1))
        k0, v0 = cache.add(0, entry, entry)
        k1, v1 = cache.add(1, entry, entry)
        assert torch.equal(k0, v0) and v0.flatten().tolist() == [e + 1 for e in cache.kept(t + 1, 0)]  # no sink
        assert k1.flatten().tolist() == [e + 1 for e in cache.kept(t + 1, 1)]  # keys as stored
        if t == 0:  # the sink's own step reads its value
            assert v1.flatten().tolist() == [1.0]
        else:  # every later entry reads it as zero
            assert v1.flatten().tolist() == [0.0] + [e + 1.0 for e in cache.kept(t + 1, 1)[1:]]
    assert cache.v[1][0, 0, 0, 0] == 1.0  # what the cache stores is unchanged
    k0, v0 = cache.add(0, torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    assert v0.flatten().tolist()[:3] == [4.0, 5.0, 6.0]  # layer 0 keeps no sink: a window, values as they are


def test_attention_scale_multiplies_the_scores():
    """attn_scale = 1/sqrt(d_head) is the default; any other scale c equals the default model with its
    query weights multiplied by c * sqrt(d_head)."""
    base = make(positions="rotary", n_layer=2)
    x, c, d_head = ids(n=9), 0.7, 64 // 4
    same = TinyTransformer(TinyConfig(**{**base.cfg.to_dict(), "attn_scale": d_head**-0.5}))
    same.load_state_dict(base.state_dict())
    torch.testing.assert_close(same(x, P.causal()), base(x, P.causal()), atol=1e-6, rtol=1e-5)
    sharp = TinyTransformer(TinyConfig(**{**base.cfg.to_dict(), "attn_scale": c}))
    sharp.load_state_dict(base.state_dict())
    with torch.no_grad():
        for block in base.blocks:  # rows 0..d-1 of qkv make q
            block.attn.qkv.weight[:64] *= c * d_head**0.5
            block.attn.qkv.bias[:64] *= c * d_head**0.5
    torch.testing.assert_close(sharp(x, P.causal()), base(x, P.causal()), atol=1e-5, rtol=1e-4)
    _, w = sharp(x, P.causal(), need_weights=True)  # the weights the layer uses
    cache, steps = KVCache(2), []
    for t in range(9):
        steps = []
        sharp.step(sharp.tok(x[:, t]), cache, steps)
    torch.testing.assert_close(steps[0], w[0][:, :, -1], atol=1e-5, rtol=1e-4)


def test_internal_configurations_assert_and_masks_are_named():
    # TinyConfig, KVCache and the ids are filled by the package itself: they assert
    with pytest.raises(AssertionError, match="^alibi$"):
        TinyConfig(vocab_size=5, positions="alibi")
    with pytest.raises(AssertionError, match="d_model must be divisible by n_head"):
        TinyConfig(vocab_size=5, d_model=30, n_head=4)
    with pytest.raises(AssertionError, match=r"9 positions \(with prepended tokens\) > max_len"):
        make(max_len=8)(ids(n=9), P.causal())
    with pytest.raises(AssertionError, match=r"step\(\) needs positions='rotary'"):
        make().step(torch.zeros(1, 64), KVCache(2))
    # the mask is a Pattern or array a caller chooses: patterns.as_torch_mask names it
    m = make()
    with pytest.raises(ValueError, match=r"mask must have shape \(N, N\) = \(8, 8\), got \(9, 9\)"):
        m(ids(n=8), np.ones((9, 9), dtype=bool))
    with pytest.raises(TypeError, match=r"mask must be a Pattern .* or a boolean \(n, n\) array .*, got str"):
        m(ids(n=8), "causal")
    with pytest.raises(ValueError, match="mask has a query row with no visible key; every row needs at least one True"):
        m(ids(n=8), np.zeros((8, 8), dtype=bool))


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    m = TinyTransformer(TinyConfig(vocab_size=20, n_layer=1, d_model=32))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = ids(n=16, b=8)
    losses = []
    for _ in range(30):
        logits = m(x, P.causal())
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 20), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.5


@pytest.mark.parametrize(
    "pattern", [P.full(), P.causal(), P.band(2) | P.global_tokens(2), P.causal() & (P.sliding_window(3) | P.sinks(1))]
)
def test_attention_layer_equals_the_package_reference(pattern):
    from globattn_lite.attention import dense_attention

    torch.manual_seed(0)
    attn = make().blocks[0].attn
    x = torch.randn(2, 14, 64)
    q, k, v = attn.split(x)
    ours, none = attn.attend(q, k, v, torch.from_numpy(pattern.mask(14)), need_weights=False)
    same, weights = attn.attend(q, k, v, torch.from_numpy(pattern.mask(14)), need_weights=True)
    ref = dense_attention(q, k, v, pattern)
    assert none is None and torch.equal(ours, same)  # asking for the weights does not change y
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights @ v, ref, atol=1e-6, rtol=1e-5)


def test_step_weights_are_forward_weights_and_leave_the_logits_unchanged():
    m, x = make(positions="rotary", n_layer=2), ids(n=9)
    with torch.no_grad():
        _, full = m(x, P.causal(), need_weights=True)
    plain, watched = KVCache(2), KVCache(2)
    for t in range(9):
        weights = []
        a = m.step(m.tok(x[:, t]), plain)
        b = m.step(m.tok(x[:, t]), watched, weights)
        assert torch.equal(a, b)
        for layer, w in enumerate(weights):  # the step's query is row t of the full forward
            torch.testing.assert_close(w, full[layer][:, :, t, : t + 1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size, sinks", [(None, 0), (5, 0), (5, 2)])
def test_kv_cache_kept_names_the_entries_it_holds(size, sinks):
    """kept() against the cache's own tensors: add entries whose key is their number."""
    cache = KVCache(1, size=size, sinks=sinks)
    for entry in range(12):
        k, _ = cache.add(0, torch.full((1, 1, 1, 1), float(entry)), torch.zeros(1, 1, 1, 1))
        assert k[0, 0, :, 0].tolist() == cache.kept(entry + 1)
    assert cache.kept(0) == []


def test_kv_cache_ring_slots_overwrite_the_oldest_recent_entry():
    cache = KVCache(1, size=5, sinks=2)
    assert [cache.ring_slot(e) for e in range(9)] == [0, 1, 2, 3, 4, 2, 3, 4, 2]
    for added in range(1, 12):  # the kept entries always sit in distinct slots
        slots = [cache.ring_slot(e) for e in cache.kept(added)]
        assert len(set(slots)) == len(slots) <= 5
    assert KVCache(1).ring_slot(7) == 7  # no size limit: one slot per entry


@pytest.mark.parametrize("g", [0, 1])
def test_step_weights_are_the_last_row_of_a_full_forward(g):
    m, x = make(positions="rotary", n_layer=2, n_global=g), ids(n=7, b=1)
    _, full = m(x, P.causal(), need_weights=True)
    cache, weights = KVCache(2), []
    for j in range(g):
        m.step(m.globals[j].expand(1, -1), cache)
    for t in range(7):
        weights = []
        m.step(m.tok(x[:, t]), cache, weights)
    assert len(weights) == 2
    for layer in range(2):
        torch.testing.assert_close(weights[layer], full[layer][:, :, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions, g", [("learned", 0), ("learned", 1), ("rotary", 2)])
def test_last_logits_equal_the_last_row_of_forward(positions, g):
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(24, n_layer=2, n_head=2, d_model=16, positions=positions, n_global=g)).eval()
    ids = torch.randint(0, 24, (3, 10))
    mask = P.band(2) | P.global_tokens(g) if g else P.causal()
    torch.testing.assert_close(model.last_logits(ids, mask), model(ids, mask)[:, -1], atol=1e-5, rtol=1e-5)
