"""The model families the kv-cache docs name, on tiny random configs: supported (generate
works, budget 1.0 changes nothing, held KV within the budget in every full-attention layer,
sliding-window layers within their window) or refused at ``attach`` with advice that works."""

import math

import pytest
import torch
from transformers import DynamicCache

import tokenworks as tw

from kv_models import FAMILIES, make_policy, tiny_family

# (family, config overrides): sliding windows as the real checkpoints set them, scaled down
SUPPORTED = [
    ("llama", {}), ("qwen2", {}), ("qwen3", {}), ("mistral", {"sliding_window": None}), ("phi3", {"sliding_window": None}),
    ("gemma2", {"sliding_window": 8}), ("gemma3", {"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"] * 2}),
    ("olmo2", {}),
]  # fmt: skip
REFUSED = [("mistral", {"sliding_window": 16}), ("phi3", {"sliding_window": 16})]


def _logits(model, x, policy=None, steps=6):
    cache = DynamicCache(config=model.config)
    ctx = policy(model) if policy is not None else torch.no_grad()
    outs = []
    with ctx, torch.no_grad():
        n = x.shape[1] - steps
        outs.append(model(x[:, :n], past_key_values=cache).logits)
        for t in range(n, x.shape[1]):
            outs.append(model(x[:, t : t + 1], past_key_values=cache).logits)
    return torch.cat(outs, 1), cache


@pytest.mark.parametrize("kind,over", SUPPORTED, ids=[k for k, _ in SUPPORTED])
@pytest.mark.parametrize("name", ["h2o", "lazy_eviction", "tidal_decode"])
def test_supported_families(kind, over, name):
    model = tiny_family(kind, layers=4, **over)
    x = torch.randint(2, 96, (2, 40))
    ref, _ = _logits(model, x)
    same, _ = _logits(model, x, make_policy(name, budget=1.0, **({"selection_layer": 1} if name == "tidal_decode" else {})))
    assert torch.equal(same, ref)
    sel = {}
    if name == "tidal_decode":  # selection on a full-attention layer
        full = [i for i, t in enumerate(getattr(model.config, "layer_types", None) or ["full_attention"] * 4) if t == "full_attention"]
        sel = {"selection_layer": full[0], "reselection_layer": None}
        if full[0] >= 2:
            pytest.skip("no full-attention layer leaves room for a sparse one")
    policy = make_policy(name, budget=0.25, **sel)
    got, cache = _logits(model, x, policy)
    assert torch.isfinite(got).all()
    types = getattr(model.config, "layer_types", None) or ["full_attention"] * 4
    window = getattr(model.config, "sliding_window", None)
    for i, layer in enumerate(cache.layers):
        held = layer.keys.shape[2]
        if types[i] == "sliding_attention":
            assert held <= window
        elif policy.evicts:
            assert held <= math.ceil(0.25 * 40)
    with policy(model), torch.no_grad():
        g = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    assert g.shape == (2, 45)


@pytest.mark.parametrize("kind,over", REFUSED, ids=[k for k, _ in REFUSED])
def test_sliding_window_everywhere_is_refused_with_advice_that_works(kind, over):
    """Refused at attach; following the advice (``config.sliding_window = None``) attaches, and
    within the window the model's outputs are unchanged."""
    model = tiny_family(kind, layers=4, **over)
    with pytest.raises(TypeError, match="sliding_window = None"):
        tw.create("h2o").attach(model)
    assert model.config._attn_implementation != "tokenworks_kv"
    x = torch.randint(2, 96, (1, over["sliding_window"] - 2))
    ref, _ = _logits(model, x, steps=2)
    model.config.sliding_window = None
    got, _ = _logits(model, x, make_policy("h2o", budget=1.0), steps=2)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)


def test_a_model_without_full_attention_layers_is_refused():
    """Gemma3 with every layer sliding (real checkpoints mix in full layers): nothing to manage.
    No advice to change the layer types: its sliding layers use another RoPE, so that changes
    the model even inside the window."""
    with pytest.raises(TypeError, match="no full-attention layer"):
        tw.create("h2o").attach(tiny_family("gemma3", sliding_window=8))


def test_a_cache_that_never_reaches_attention_is_an_error():
    """A model whose attention does not receive past_key_values (here a pre-hook that drops it,
    as a model passing it under another name or not at all would) must not silently run
    without the policy."""
    model = tiny_family("llama")
    drop = [a.self_attn.register_forward_pre_hook(lambda m, a, kw: (a, {k: v for k, v in kw.items() if k != "past_key_values"}),
                                                  with_kwargs=True) for a in model.model.layers]  # fmt: skip
    try:
        with tw.create("h2o", budget=0.5)(model), pytest.raises(RuntimeError, match="none reached its attention"):
            model(torch.randint(2, 96, (1, 20)), use_cache=True)
        with tw.create("h2o", budget=0.5)(model), torch.no_grad():
            model(torch.randint(2, 96, (1, 20)), use_cache=False)  # no cache at all: fine
    finally:
        for h in drop:
            h.remove()


def test_families_cover_the_docs():
    assert set(FAMILIES) == {"llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma3", "olmo2"}
