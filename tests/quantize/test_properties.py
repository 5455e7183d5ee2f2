"""Defining properties of the quantizers, checked against references written differently."""

import itertools

import pytest
import torch

import tokenworks as tw


def brute_force_nearest(x, codebook):
    """Index of the nearest code for every row, by an explicit loop."""
    out = []
    for row in x.reshape(-1, x.shape[-1]):
        best, best_d = -1, float("inf")
        for k, c in enumerate(codebook):
            d = float(((row - c) ** 2).sum())
            if d < best_d:
                best, best_d = k, d
        out.append(best)
    return torch.tensor(out).reshape(x.shape[:-1])


@pytest.mark.parametrize("levels", [[3, 4, 5], [8, 5, 5, 5], [7, 3]])
def test_fsq_has_exactly_prod_levels_codes(levels):
    q = tw.create("fsq", dim=6, levels=levels).eval()
    size = 1
    for level in levels:
        size *= level
    assert q.codebook_size == size
    # every index decodes to a distinct code, and nothing beyond the product exists
    codes = q.indices_to_codes(torch.arange(size)[None])[0]
    assert len({tuple(c.tolist()) for c in codes.round(decimals=5)}) == size
    with pytest.raises(ValueError):
        q.indices_to_codes(torch.tensor([[size]]))
    # with one channel per level (no projection), dense inputs hit every code and no other
    q = tw.create("fsq", dim=len(levels), levels=levels).eval()
    _, idx, _ = q((torch.rand(1, 50000, len(levels)) * 2 - 1) * 2)
    assert set(idx.unique().tolist()) == set(range(size))
    # and the codes are the product grid of per-channel values (reference: itertools.product)
    codes = q.indices_to_codes(torch.arange(size)[None])[0]
    per_channel = [sorted(set(codes[:, c].round(decimals=5).tolist())) for c in range(len(levels))]
    assert [len(v) for v in per_channel] == list(levels)
    grid = {tuple(p) for p in itertools.product(*per_channel)}
    assert {tuple(c) for c in codes.round(decimals=5).tolist()} == grid


def test_binary_bits_are_exactly_0_1_at_inference_and_match_a_threshold():
    q = tw.create("binary", dim=8, bits=12, group_bits=6).eval()
    x = torch.randn(4, 9, 8)
    quantized, idx, _ = q(x)
    bits = q.bits_of(idx)
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    expected = (torch.sigmoid(x @ q.proj_in.weight.T + q.proj_in.bias) > 0.5).float()
    assert torch.equal(bits, expected)
    # packing: bit j of group g has weight 2**j (reference: explicit loop)
    manual = torch.zeros(4, 9, 2, dtype=torch.long)
    for g in range(2):
        for j in range(6):
            manual[..., g] += expected[..., g * 6 + j].long() << j
    assert torch.equal(idx, manual)
    torch.testing.assert_close(quantized, q.proj_out(2 * expected - 1))


def test_binary_straight_through_gradient_equals_the_probability_gradient():
    q = tw.create("binary", dim=4, bits=6).eval()
    x = torch.randn(2, 3, 4, requires_grad=True)
    w = torch.randn(2, 3, 4)
    (q(x)[0] * w).sum().backward()
    g_st = x.grad.clone()
    x.grad = None
    p = q.probabilities(x)
    (q.proj_out(2 * p - 1) * w).sum().backward()
    torch.testing.assert_close(g_st, x.grad)


def test_invalid_budgets_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="codebook_size must be >= 2"):
        tw.create("vq", dim=4, codebook_size=1)
    with pytest.raises(ValueError, match="power of two"):
        tw.create("lfq", dim=4, codebook_size=100)
    with pytest.raises(ValueError, match="levels"):
        tw.create("fsq", dim=4, levels=[2, 5])
    with pytest.raises(ValueError, match=r"alpha must be in \[0"):
        tw.create("robustok", dim=4, alpha=1.5)
    with pytest.raises(ValueError, match="delta must be <= 8"):
        tw.create("robustok", dim=4, codebook_size=8, delta=9)
    with pytest.raises(ValueError, match="anneal_end must be >= 10"):
        tw.create("robustok", dim=4, anneal_start=10, anneal_end=5)
    with pytest.raises(ValueError, match="multiple of group_bits"):
        tw.create("binary", dim=4, bits=10, group_bits=4)
    with pytest.raises(ValueError, match="strictly increasing"):
        tw.create("vat", dim=4, scales=[4, 2])
