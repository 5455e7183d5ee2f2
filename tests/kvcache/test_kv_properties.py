"""Defining properties of each policy, checked against references written differently:
brute-force loops, eager attention matrices, and kvpress's own scorers."""

import math

import pytest
import torch
from transformers import DynamicCache

import tokenworks as tw
from tokenworks.kvcache.lazy_eviction import recurrence_update

from kv_models import POLICIES, make_policy, tiny_model

EVICTING = [n for n in POLICIES if tw.get(n).obj.evicts and n != "full"]


def _padded_batch(lengths, T=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, T - n :] = torch.randint(2, 96, (n,), generator=g)
        mask[i, T - n :] = 1
    return ids, mask


@pytest.mark.parametrize("name", EVICTING)
def test_kept_positions_are_the_top_cap_of_the_score(name):
    """After every compression, the held real positions are exactly those a Python loop picks:
    sort by score (descending, ties to the later position, +inf included), keep the budget
    ceil(0.3 x real tokens seen) less the tokens that arrive before the next compression."""
    model = tiny_model("llama", seed=2)
    policy = make_policy(name, budget=0.3)
    seen = {}
    real_score = policy.score

    def spy(view):
        s = real_score(view)
        if view.layer == 1 and view.compress and s is not None:
            seen["call"] = (s.clone(), view.pos.clone(), view.valid.clone())
        return s

    policy.score = spy
    ids, mask = _padded_batch([40, 31])
    cache = DynamicCache(config=model.config)
    checked = 0
    with policy(model), torch.no_grad():
        for t in range(12):
            seen.clear()
            if t == 0:
                model(ids, attention_mask=mask, past_key_values=cache)
            else:
                mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
                model(torch.randint(2, 96, (2, 1)), attention_mask=mask, past_key_values=cache)
            if "call" not in seen:
                continue
            scores, pos, valid = seen["call"]
            st = cache._tokenworks_kv_state.layers[1]
            B, H, K = scores.shape
            lag = policy.compress_every() - 1
            for b in range(B):
                n_real = [40, 31][b] + t
                keep = math.ceil(0.3 * n_real) - lag
                for h in range(H):
                    cand = [(float(scores[b, h, j]), int(pos[b, h, j])) for j in range(K) if valid[b, h, j]]
                    chosen = sorted(cand, key=lambda c: (-c[0], -c[1]))[:keep]
                    want = sorted(p for _, p in chosen)
                    got = sorted(int(p) for p, v in zip(st.pos[b, h], st.valid[b, h]) if v)
                    assert got == want, (name, t, b, h)
            checked += 1
    assert checked >= 1


def _eager_attentions(model, ids):
    """Attention matrices of an unmodified eager copy of ``model``: list of (B, H, T, T)."""
    import copy

    m = copy.deepcopy(model)
    m.set_attn_implementation("eager")
    with torch.no_grad():
        return m(ids, output_attentions=True).attentions


def test_h2o_accumulates_exactly_the_attention_received():
    model = tiny_model("llama", seed=3)
    ids = torch.randint(2, 96, (2, 24))
    att = _eager_attentions(model, ids)  # full sequence at once
    policy = make_policy("h2o", budget=1.0)
    cache = DynamicCache(config=model.config)
    with policy(model), torch.no_grad():
        model(ids[:, :20], past_key_values=cache)
        for t in range(20, 24):
            model(ids[:, t : t + 1], past_key_values=cache)
    for layer in range(model.config.num_hidden_layers):
        acc = cache._tokenworks_kv_state.layers[layer].state["acc"]  # (B, Hkv, 24)
        want = att[layer].sum(2)  # every query row's attention, summed: (B, H, 24)
        want = want.view(2, 2, 2, 24).sum(2)  # per kv head: sum over its 2 query heads
        torch.testing.assert_close(acc, want, atol=1e-5, rtol=1e-5)


def test_tova_scores_match_kvpress():
    kvpress = pytest.importorskip("kvpress")
    model = tiny_model("llama", seed=4)
    ids = torch.randint(2, 96, (1, 30))
    att = _eager_attentions(model, ids)
    got = {}
    policy = make_policy("tova", budget=0.5)
    real = policy.score
    policy.score = lambda v: got.setdefault(v.layer, real(v))
    with policy(model), torch.no_grad():
        model(ids)
    module = model.model.layers[2].self_attn
    keys = torch.zeros(1, 2, 30, 8)
    want = kvpress.TOVAPress(compression_ratio=0.5).score(module, None, keys, keys, att[2], {})
    torch.testing.assert_close(got[2][..., :-1], want[..., :-1], atol=1e-6, rtol=1e-5)


def test_snapkv_scores_match_kvpress():
    kvpress = pytest.importorskip("kvpress")
    model = tiny_model("llama", seed=5)
    ids = torch.randint(2, 96, (1, 40))
    att = _eager_attentions(model, ids)
    got = {}
    policy = make_policy("snapkv", budget=0.5, window=8, kernel=5)
    real = policy.score
    policy.score = lambda v: got.setdefault(v.layer, real(v))
    with policy(model), torch.no_grad():
        model(ids)
    module = model.model.layers[1].self_attn
    hidden = torch.zeros(1, 40, 32)
    keys = torch.zeros(1, 2, 40, 8)
    want = kvpress.SnapKVPress(compression_ratio=0.5, window_size=8, kernel_size=5).score(module, hidden, keys, keys, att[1], {})
    torch.testing.assert_close(got[1][..., :-8], want[..., :-8], atol=1e-6, rtol=1e-5)
    assert torch.isinf(got[1][..., -8:]).all()


def test_streaming_llm_keeps_what_kvpress_keeps():
    kvpress = pytest.importorskip("kvpress")
    model = tiny_model("llama", seed=6)
    ids = torch.randint(2, 96, (1, 40))
    cache = DynamicCache(config=model.config)
    with make_policy("streaming_llm", budget=0.5, sinks=4)(model), torch.no_grad():
        model(ids, past_key_values=cache)
    kept = cache._tokenworks_kv_state.layers[0].pos[0, 0].tolist()
    keys = torch.zeros(1, 2, 40, 8)
    s = kvpress.StreamingLLMPress(compression_ratio=0.5, n_sink=4).score(None, None, keys, keys, None, {})
    want = sorted(s[0, 0].topk(20).indices.tolist())
    assert kept == want == [0, 1, 2, 3, *range(24, 40)]


def test_recurrence_tracking_on_a_hand_made_sequence():
    """Three tokens that arrive at steps 0, 1, 2; importance per step t = 3..12 (hand-made).
    Token 0: important at 3, 6, 12 -> gaps 3 (from arrival), 3, 6 -> MRI 6, last 12.
    Token 1: important at 4, 5 -> gaps 3, 1 -> MRI 3, last 5.
    Token 2: never important -> MRI 0, last 2 (its arrival)."""
    imp_steps = {0: [3, 6, 12], 1: [4, 5], 2: []}
    steps = torch.arange(3, 13, dtype=torch.float32)
    important = torch.zeros(10, 3, dtype=torch.bool)
    for k, ts in imp_steps.items():
        for t in ts:
            important[t - 3, k] = True
    last0 = torch.tensor([0.0, 1.0, 2.0])
    mri0 = torch.zeros(3)
    # one step at a time
    last, mri = last0, mri0
    for i in range(10):
        last, mri = recurrence_update(important[i : i + 1], steps[i : i + 1, None], last, mri)
    assert last.tolist() == [12.0, 5.0, 2.0] and mri.tolist() == [6.0, 3.0, 0.0]
    # all ten steps at once (the chunked prefill path) give the same
    last_c, mri_c = recurrence_update(important, steps[:, None], last0, mri0)
    assert torch.equal(last_c, last) and torch.equal(mri_c, mri)


def test_recurrence_chunks_equal_a_python_loop():
    g = torch.Generator().manual_seed(0)
    K, T = 7, 40
    important = torch.rand(T, K, generator=g) < 0.2
    last_ref = [float(k) for k in range(K)]
    mri_ref = [0.0] * K
    for t in range(T):
        for k in range(K):
            if important[t, k]:
                mri_ref[k] = max(mri_ref[k], t + K - last_ref[k])
                last_ref[k] = float(t + K)
    steps = torch.arange(K, K + T, dtype=torch.float32)[:, None]
    last, mri = torch.arange(K, dtype=torch.float32), torch.zeros(K)
    for a, b in [(0, 5), (5, 6), (6, 23), (23, 40)]:
        last, mri = recurrence_update(important[a:b], steps[a:b], last, mri)
    assert last.tolist() == last_ref and mri.tolist() == mri_ref


def test_lazy_eviction_evicts_only_every_window_steps_and_keeps_the_recent_window():
    model = tiny_model("llama", seed=7)
    policy = make_policy("lazy_eviction", budget=0.5, window=4, compress_prompt=False)
    cache = DynamicCache(config=model.config)
    lengths = []
    with policy(model), torch.no_grad():
        model(torch.randint(2, 96, (1, 24)), past_key_values=cache)
        lengths.append(cache.layers[0].keys.shape[2])
        for t in range(12):
            model(torch.randint(2, 96, (1, 1)), past_key_values=cache)
            lengths.append(cache.layers[0].keys.shape[2])
            st = cache._tokenworks_kv_state
            pos = st.layers[0].pos[0, 0]
            assert set(range(int(st.count[0]) - 4, int(st.count[0]))) <= set(pos.tolist())
    # prompt kept whole (compress_prompt=False); evictions at decode steps 4, 8, 12 only, each to
    # the budget less the 3 tokens that arrive before the next one (the peak stays within it)
    assert lengths[0] == 24
    drops = [i for i in range(1, len(lengths)) if lengths[i] < lengths[i - 1] + 1]
    assert drops == [4, 8, 12]
    assert lengths[4] == math.ceil(0.5 * 28) - 3
    assert all(lengths[i] <= math.ceil(0.5 * (24 + i)) for i in range(4, len(lengths)))


def test_tidal_decode_reuses_the_selection_layer_choice():
    model = tiny_model("llama", layers=6, attn="eager", seed=8)
    policy = make_policy("tidal_decode", budget=8, selection_layer=1)
    assert policy.layers(6) == (1, 3)
    ids = torch.randint(2, 96, (2, 30))
    cache = DynamicCache(config=model.config)
    with policy(model), torch.no_grad():
        model(ids[:, :29], past_key_values=cache)
        model(ids[:, 29:], past_key_values=cache)
    sel = policy.last_selection
    assert sorted(sel) == [2, 4, 5]  # sparse layers only
    assert sel[4] is sel[5] and not torch.equal(sel[2], sel[4])  # re-selection at layer 3
    # layers 0-1 are full attention, so layer 1's scores are those of the unmodified model
    att = _eager_attentions(model, ids)[1][:, :, -1]  # (B, H, 30)
    for b in range(2):
        for h in range(4):
            want = sorted(sorted(range(30), key=lambda j: (-float(att[b, h, j]), j))[:8])
            assert sorted(sel[2][b, h].tolist()) == want


def test_tidal_decode_recall_is_measured_and_bounded():
    model = tiny_model("llama", layers=6, seed=9)
    ids = torch.randint(2, 96, (1, 40))
    recalls = []
    for budget in (4, 16, 39):
        policy = make_policy("tidal_decode", budget=budget, selection_layer=1)
        policy.record_recall = True
        cache = DynamicCache(config=model.config)
        with policy(model), torch.no_grad():
            model(ids[:, :36], past_key_values=cache)
            for t in range(36, 40):
                model(ids[:, t : t + 1], past_key_values=cache)
        recalls.append(policy.stats["recall_sum"] / policy.stats["recall_n"])
    assert all(0.0 < r <= 1.0 + 1e-6 for r in recalls)
    assert recalls[0] < recalls[1] < recalls[2]
