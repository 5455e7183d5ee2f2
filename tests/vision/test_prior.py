"""The token prior: HF Llama over token ids, NLL in bits per image."""

from __future__ import annotations

import math

import pytest
import torch

from tokenworks.vision.prior import PriorConfig, build_prior, flatten_ids, prior_nll_bits, train_token_prior

SMALL = PriorConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, steps=60, batch_size=64, lr=1e-2, warmup=5)


def test_nll_matches_a_prefix_by_prefix_loop():
    model = build_prior(10, 5, SMALL).eval()
    ids = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(0))
    got = prior_nll_bits(model, ids, 10)
    for b in range(3):
        total = 0.0
        for t in range(5):
            prefix = torch.tensor([[10, *ids[b, :t].tolist()]])
            with torch.no_grad():
                p = model(input_ids=prefix).logits[0, -1].softmax(-1)
            total -= math.log2(float(p[ids[b, t]]))
        assert got[b].item() == pytest.approx(total, rel=1e-4)


def test_prior_learns_structure_and_not_noise():
    g = torch.Generator().manual_seed(0)
    first = torch.randint(0, 16, (2000, 1), generator=g)
    structured = (first + torch.arange(8)) % 16  # each id follows from the first
    noise = torch.randint(0, 16, (2000, 8), generator=g)
    s_model = train_token_prior(structured[:1500], 16, SMALL)
    n_model = train_token_prior(noise[:1500], 16, SMALL)
    s = prior_nll_bits(s_model, structured[1500:], 16).mean().item()
    n = prior_nll_bits(n_model, noise[1500:], 16).mean().item()
    assert s < 4 + 2  # log2(16) for the first id, then little for the rest
    assert n == pytest.approx(8 * 4, rel=0.05)  # uniform noise costs log2(16) bits per id


def test_grouped_ids_are_flattened_row_major():
    ids = torch.arange(12).reshape(2, 3, 2)
    assert flatten_ids(ids, 12).tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]


def test_bad_input():
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        flatten_ids(torch.tensor([[0, 4]]), 4)
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        flatten_ids(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="vocab_size"):
        prior_nll_bits(build_prior(4, 3, SMALL), torch.zeros(1, 3, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="heads"):
        PriorConfig(hidden_size=30, heads=4)
