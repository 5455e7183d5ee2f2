"""Registry-wide contracts of the latent-space models that are not reasoners: P50's concept
models (``kind="concept_model"``) and P33's cache coprocessors (``kind="cache_coprocessor"``)."""

import pytest
import torch
from reason_tiny import tiny_llama

import tokenworks as tw


@pytest.mark.parametrize("info", tw.methods(kind="concept_model"), ids=lambda m: m.name)
def test_concept_model_contract(info):
    for kind in ("mse", "diffusion"):
        m = info.obj(kind, context=3, steps=5)
        ctx = torch.randn(4, 3, 384)
        assert m.loss(ctx, torch.randn(4, 384)).ndim == 0
        assert m.predict(ctx, torch.Generator().manual_seed(0)).shape == (4, 384)


@pytest.mark.parametrize("info", tw.methods(kind="cache_coprocessor"), ids=lambda m: m.name)
def test_cache_coprocessor_contract(info):
    from transformers import DynamicCache

    dec = tiny_llama()
    cop = info.obj(dec, 3)
    cache = DynamicCache()
    dec(input_ids=torch.randint(2, 40, (2, 5)), past_key_values=cache, use_cache=True)
    z = cop(cache, torch.full((2,), 5))
    assert z.shape == (2, 3, dec.config.hidden_size)
    assert cache.get_seq_length() == 5  # the decoder's cache is read, not written
    with pytest.raises(ValueError, match="k"):
        info.obj(dec, -1)
