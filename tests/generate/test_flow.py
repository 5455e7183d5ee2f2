"""The flow head and its Euler sampler on a known 1-D Gaussian mixture; Hi-MAR pivots; xAR's
block-causal layout (a cell never sees later cells)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import tokenworks as tw
from tokenworks.generate import FlowHead, euler, gmm_velocity

W, MU, SD = [0.3, 0.7], [-2.0, 1.5], [0.3, 0.5]


def _mixture_cdf(x):
    return sum(w * stats.norm.cdf(x, m, s) for w, m, s in zip(W, MU, SD))


def test_euler_on_the_closed_form_velocity_integrates_the_mixture():
    """Tolerance: Kolmogorov-Smirnov distance < 0.03 with 200 Euler steps and 4000 samples."""
    x0 = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0))
    x1 = euler(lambda x, t: gmm_velocity(x, t, W, MU, SD), x0, 200)[:, 0].numpy()
    ks = stats.kstest(x1, _mixture_cdf).statistic
    assert ks < 0.03
    assert abs((x1 < 0).mean() - 0.3) < 0.03
    # a wrong field (one Gaussian with the mixture's mean) fails the same check
    bad = euler(lambda x, t: gmm_velocity(x, t, [1.0], [0.45], [1.0]), x0, 200)[:, 0].numpy()
    assert stats.kstest(bad, _mixture_cdf).statistic > 0.1


def test_flow_head_learns_the_mixture():
    """The head trained by flow matching (600 steps) samples the mixture: KS distance < 0.08,
    the left mode's mass within 0.06 of 0.3, each mode's mean within 0.25."""
    torch.manual_seed(0)
    head = FlowHead(1, 4, width=64, depth=2)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(600):
        comp = (torch.rand(256, generator=g) < W[1]).long()
        x1 = torch.tensor(MU)[comp] + torch.tensor(SD)[comp] * torch.randn(256, generator=g)
        loss = head.loss(x1[:, None], torch.zeros(256, 4), mul=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = head.sample(torch.zeros(4000, 4), 32, torch.Generator().manual_seed(2))[:, 0].numpy()
    assert stats.kstest(x, _mixture_cdf).statistic < 0.08
    assert abs((x < 0).mean() - 0.3) < 0.06
    assert abs(x[x < 0].mean() - MU[0]) < 0.25 and abs(x[x >= 0].mean() - MU[1]) < 0.25


def test_himar_pivots_are_the_pooled_grid():
    g = tw.create("himar", num_tokens=49, token_dim=2, d_model=16, layers=1, heads=2, pivot_grid=3)
    dense = torch.randn(2, 49, 2)
    piv = g.pivots(dense)
    grid = dense.reshape(2, 7, 7, 2).numpy()
    # adaptive pooling 7 -> 3: windows [0,3), [2,5), [4,7)
    for i, (a, b) in enumerate([(0, 3), (2, 5), (4, 7)]):
        for j, (c, d) in enumerate([(0, 3), (2, 5), (4, 7)]):
            assert np.allclose(piv[:, 3 * i + j].numpy(), grid[:, a:b, c:d].mean((1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="num_tokens must be a square"):
        tw.create("himar", num_tokens=32)


def test_xar_query_cell_does_not_see_later_cells():
    torch.manual_seed(0)
    g = tw.create("xar", num_tokens=9, token_dim=2, d_model=16, layers=2, heads=2).eval()
    x = torch.randn(1, 9, 2)
    t = torch.rand(1, 9)
    lab = torch.tensor([3])
    with torch.no_grad():
        v = g.velocity(lab, x, torch.ones(1, 9), x, t, 0)
        x2 = x.clone()
        x2[:, 6:] += 5.0  # change the last cell (context and query)
        v2 = g.velocity(lab, x2, torch.ones(1, 9), x2, t, 0)
        # the same first two cells computed alone, with only their own context
        v3 = g.velocity(lab, x[:, :3], torch.ones(1, 3), x[:, 3:6], t[:, 3:6], 3)
    assert torch.allclose(v[:, :6], v2[:, :6], atol=1e-5) and not torch.allclose(v[:, 6:], v2[:, 6:])
    assert torch.allclose(v[:, 3:6], v3, atol=1e-5)
