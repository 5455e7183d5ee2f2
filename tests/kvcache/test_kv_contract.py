"""Registry-wide contract of KV-cache policies (parametrized over ``tw.methods(kind="kv_policy")``)."""

import pytest
import torch
from transformers import DynamicCache

import tokenworks as tw
from tokenworks.kvcache import KVPolicy, kv_bytes

from kv_models import POLICIES, make_policy, tiny_model


def test_registry_has_the_issue_methods():
    assert {"full", "random", "streaming_llm", "h2o", "tova", "snapkv", "lazy_eviction", "tidal_decode"} <= set(POLICIES)
    import sys

    for m in tw.methods(kind="kv_policy"):
        assert issubclass(m.obj, KVPolicy) and m.family == "KV"
        doc = sys.modules[m.obj.__module__].__doc__
        if m.paper:
            assert doc.startswith(m.paper) and m.paper in ("P12", "P45")
        else:
            assert "baseline" in doc.lower() and m.cite


def _stream(model, x, steps, policy=None):
    """Prefill x[:, :-steps] then feed the rest token by token; returns all logits (B, T, V)."""
    cache = DynamicCache(config=model.config)
    T = x.shape[1]
    outs = []
    ctx = policy(model) if policy is not None else torch.no_grad()
    with ctx, torch.no_grad():
        n = T - steps
        outs.append(model(x[:, :n], past_key_values=cache).logits)
        for t in range(n, T):
            outs.append(model(x[:, t : t + 1], past_key_values=cache).logits)
    return torch.cat(outs, 1), cache


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("name", POLICIES)
def test_budget_that_keeps_everything_changes_nothing(name, kind, llama, qwen2):
    model = llama if kind == "llama" else qwen2
    x = torch.randint(2, 96, (2, 30))
    ref, _ = _stream(model, x, 6)
    got, _ = _stream(model, x, 6, make_policy(name, budget=1.0))
    assert torch.equal(got, ref)


@pytest.mark.parametrize("name", POLICIES)
def test_compression_is_deterministic_finite_and_frees_exactly_what_it_evicts(name, llama):
    x = torch.randint(2, 96, (2, 40))
    a, cache_a = _stream(llama, x, 8, make_policy(name, budget=0.25))
    b, _ = _stream(llama, x, 8, make_policy(name, budget=0.25))
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert a.shape == (2, 40, 96) and a.dtype == torch.float32
    _, full = _stream(llama, x, 8)
    policy = make_policy(name, budget=0.25)
    if policy.evicts and policy.phase != "never":  # the bytes are those of the tokens held, at most the budget
        held = [layer.keys.shape[2] for layer in cache_a.layers]
        assert max(held) <= 10  # ceil(0.25 x 40)
        assert kv_bytes(cache_a) == sum(held) * kv_bytes(full) // (40 * len(held))
    else:
        assert kv_bytes(cache_a) == kv_bytes(full)


@pytest.mark.parametrize("name", POLICIES)
def test_left_padded_batch_equals_rows_alone(name):
    model = tiny_model("llama", seed=1)
    lengths = [36, 28]
    rows = [torch.randint(2, 96, (n,)) for n in lengths]
    T = max(lengths)
    ids = torch.zeros(2, T, dtype=torch.long)
    mask = torch.zeros(2, T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - r.numel() :] = r
        mask[i, T - r.numel() :] = 1
    policy = make_policy(name, budget=0.4)
    with policy(model), torch.no_grad():
        batched = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0,
                                 output_scores=True, return_dict_in_generate=True)  # fmt: skip
    for i, r in enumerate(rows):
        with policy(model), torch.no_grad():
            alone = model.generate(r[None], attention_mask=torch.ones(1, r.numel(), dtype=torch.long), max_new_tokens=8,
                                   do_sample=False, pad_token_id=0, output_scores=True, return_dict_in_generate=True)  # fmt: skip
        assert torch.equal(batched.sequences[i, T:], alone.sequences[0, r.numel() :])
        for sb, sa in zip(batched.scores, alone.scores):
            torch.testing.assert_close(sb[i], sa[0], atol=2e-5, rtol=1e-4)


def test_manual_calls_get_true_positions_after_eviction(llama):
    """Without cache_position, HF would count the (compressed) cache length; the policy supplies
    the true positions, so logits equal those of a run that passes them explicitly."""
    x = torch.randint(2, 96, (1, 30))
    outs = []
    for explicit in (False, True):
        policy = make_policy("streaming_llm", budget=8, sinks=2)
        cache = DynamicCache(config=llama.config)
        with policy(llama), torch.no_grad():
            llama(x[:, :20], past_key_values=cache)
            o = []
            for t in range(20, 30):
                kw = {"cache_position": torch.tensor([t]), "position_ids": torch.tensor([[t]])} if explicit else {}
                o.append(llama(x[:, t : t + 1], past_key_values=cache, **kw).logits)
        outs.append(torch.cat(o, 1))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", [n for n in POLICIES if n != "full"])
@pytest.mark.parametrize("budget", [0, 0.0, -0.5, 1.5, -3, "half", True, float("nan")])
def test_bad_budget_names_the_argument(name, budget):
    with pytest.raises((TypeError, ValueError), match="budget"):
        make_policy(name, budget=budget)


def test_other_bad_inputs(llama):
    with pytest.raises(ValueError, match="budget"):
        tw.create("full", budget=0.5)
    with pytest.raises(ValueError, match="window"):
        tw.create("lazy_eviction", budget=16, window=32)
    with pytest.raises(ValueError, match="window"):
        tw.create("snapkv", budget=8, window=16)
    with pytest.raises(ValueError, match="sinks"):
        tw.create("streaming_llm", budget=4, sinks=4)
    with pytest.raises(ValueError, match="kernel"):
        tw.create("snapkv", kernel=4)
    # a count budget larger than the prompt, for a prompt-only method
    x = torch.randint(2, 96, (1, 20))
    with tw.create("snapkv", budget=64, window=4, decode_evict=False)(llama), pytest.raises(ValueError, match="budget=64"):
        llama(x)
    # unsupported models
    with pytest.raises(TypeError, match="model"):
        tw.create("h2o").attach(torch.nn.Linear(2, 2))
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(TypeError, match="not supported"):
        tw.create("h2o").attach(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)))
    flex = tiny_model("llama")
    flex.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation"):
        tw.create("h2o").attach(flex)
    # TidalDecode needs room for a sparse layer
    with pytest.raises(ValueError, match="selection_layer"):
        tw.create("tidal_decode", selection_layer=3).attach(tiny_model("llama", layers=4))
    # one policy per model
    p = tw.create("h2o").attach(llama)
    try:
        with pytest.raises(ValueError, match="already"):
            tw.create("tova").attach(llama)
    finally:
        p.detach()


def test_sliding_window_models_are_refused():
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, sliding_window=16)  # fmt: skip
    with pytest.raises(TypeError, match="sliding"):
        tw.create("h2o").attach(MistralForCausalLM(cfg))


def test_static_cache_is_refused(llama):
    from transformers import StaticCache

    cache = StaticCache(config=llama.config, max_cache_len=64)
    with tw.create("h2o")(llama), pytest.raises(TypeError, match="DynamicCache"), torch.no_grad():
        llama(torch.randint(2, 96, (1, 10)), past_key_values=cache)


@pytest.mark.parametrize("name", ["h2o", "tova", "lazy_eviction"])
def test_eager_and_sdpa_models_agree(name):
    x = torch.randint(2, 96, (2, 40))
    outs = []
    for attn in ("sdpa", "eager"):
        model = tiny_model("llama", attn=attn)
        outs.append(_stream(model, x, 8, make_policy(name, budget=0.3))[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)
