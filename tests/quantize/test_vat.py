"""P06 VAT: 2D multi-scale residual quantization and the Gaussian KL, against references written differently."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

import tokenworks as tw


def pool_loop(grid, s):
    """(H, W, D) -> (s, s, D): adaptive average pooling, cell (i, j) averages rows
    floor(i*H/s) .. ceil((i+1)*H/s) - 1 and the same columns (explicit loops)."""
    h, w, d = grid.shape
    out = np.zeros((s, s, d))
    for i in range(s):
        r0, r1 = (i * h) // s, -(-((i + 1) * h) // s)
        for j in range(s):
            c0, c1 = (j * w) // s, -(-((j + 1) * w) // s)
            out[i, j] = grid[r0:r1, c0:c1].reshape(-1, d).mean(0)
    return out


def upsample_loop(small, n):
    """(s, s, D) -> (n, n, D): bilinear interpolation with half-pixel centres (align_corners=False)."""
    s = small.shape[0]

    def taps(y):
        src = max((y + 0.5) * s / n - 0.5, 0.0)
        y0 = min(int(math.floor(src)), s - 1)
        y1 = min(y0 + 1, s - 1)
        return y0, y1, src - y0

    out = np.zeros((n, n, small.shape[-1]))
    for y in range(n):
        y0, y1, wy = taps(y)
        for x in range(n):
            x0, x1, wx = taps(x)
            out[y, x] = ((1 - wy) * (1 - wx) * small[y0, x0] + (1 - wy) * wx * small[y0, x1]
                         + wy * (1 - wx) * small[y1, x0] + wy * wx * small[y1, x1])  # fmt: skip
    return out


def nearest(rows, codebook):
    return [int(np.argmin([((r - c) ** 2).sum() for c in codebook])) for r in rows]


def test_vat_equals_a_loop_over_2d_pooling_and_scales():
    q = tw.create("vat", dim=6, codebook_size=32, scales=[1, 2, 3, 7])
    torch.manual_seed(0)
    q.train()
    q(torch.randn(8, 49, 6))  # k-means init of the shared codebook
    q.eval()
    x = torch.randn(2, 49, 6)
    quantized, idx, _ = q(x)
    mu = q.gaussian(x)[0].detach().double().numpy()
    codebook = q.codebook.detach().double().numpy()
    assert idx.shape == (2, 1 + 4 + 9 + 49)
    for b in range(2):
        residual, total, expected = mu[b].reshape(7, 7, 6), np.zeros((7, 7, 6)), []
        for s in (1, 2, 3, 7):
            small = pool_loop(residual, s)
            ids = nearest(small.reshape(-1, 6), codebook)
            expected += ids
            up = upsample_loop(codebook[ids].reshape(s, s, 6), 7)
            total += up
            residual = residual - up
        assert idx[b].tolist() == expected
        np.testing.assert_allclose(quantized[b].detach().numpy(), total.reshape(49, 6), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(q.indices_to_codes(idx), quantized, rtol=1e-5, atol=1e-5)


def test_coarse_scales_pool_2d_blocks_not_raster_fragments():
    # a latent that is +1 on the left half of the 4x4 grid and -1 on the right half: a 2x2 pooling
    # keeps the left/right structure; a 1D raster resampling to 4 tokens would average it away
    grid = np.where(np.arange(4)[None, :] < 2, 1.0, -1.0)[:, :, None].repeat(4, 0).reshape(4, 4, 1)
    pooled = pool_loop(np.broadcast_to(grid, (4, 4, 1)), 2)
    assert pooled[:, 0, 0].tolist() == [1.0, 1.0] and pooled[:, 1, 0].tolist() == [-1.0, -1.0]
    raster = grid.reshape(16).reshape(4, 4).mean(1)  # 4 raster fragments of 4 tokens each
    assert np.allclose(raster, 0.0)
    q = tw.create("vat", dim=1, codebook_size=4, scales=[2, 4], kl_weight=0.0)
    with torch.no_grad():
        q.to_gaussian.weight.zero_()
        q.to_gaussian.weight[0, 0] = 1.0  # mu = x
        q.to_gaussian.bias.zero_()
    q.train()
    q(torch.randn(16, 16, 1))
    q.eval()
    x = torch.tensor(grid, dtype=torch.float).reshape(1, 16, 1)
    _, idx, _ = q(x)
    coarse = q.codebook.detach()[idx[0, :4]].reshape(2, 2)
    assert (coarse[:, 0] > coarse[:, 1]).all()  # left cells get larger codes than right cells


def test_decoding_a_prefix_of_scales_is_coarse_to_fine():
    torch.manual_seed(0)
    q = tw.create("vat", dim=4, codebook_size=64, scales=[1, 2, 4, 8], layout="1d")
    q.train()
    for _ in range(5):
        q(torch.randn(32, 8, 4))
    q.eval()
    x = torch.randn(16, 8, 4)
    _, idx, _ = q(x)
    mu = q.gaussian(x)[0].detach()
    errors = [float((q.decode_indices(idx, levels=k).detach() - mu).pow(2).mean()) for k in range(1, 5)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]
    torch.testing.assert_close(q.decode_indices(idx, levels=4), q.indices_to_codes(idx))


def kl_by_integration(mu, log_var):
    """KL(N(mu, var) || N(0, 1)) by numerical integration of p log(p / q) (scipy)."""
    sd = math.exp(0.5 * log_var)
    p = norm(mu, sd)
    f = lambda t: p.pdf(t) * (p.logpdf(t) - norm.logpdf(t))  # noqa: E731
    return integrate.quad(f, mu - 12 * sd, mu + 12 * sd, limit=200)[0]


@pytest.mark.parametrize("mu,log_var", [(0.0, 0.0), (1.5, 0.0), (-0.7, -1.2), (0.3, 1.1), (2.0, -3.0)])
def test_vat_kl_matches_numerical_integration(mu, log_var):
    d = 3
    q = tw.create("vat", dim=d, codebook_size=8, scales=[1, 2], layout="1d", kl_weight=1.0, commitment_weight=0.0).eval()
    with torch.no_grad():
        q.to_gaussian.weight.zero_()
        q.to_gaussian.bias.copy_(torch.tensor([mu] * d + [log_var] * d))
    _, _, aux = q(torch.randn(2, 2, d))
    assert aux.item() == pytest.approx(d * kl_by_integration(mu, log_var), rel=1e-5, abs=1e-7)


def test_vat_rejects_a_token_count_that_is_not_its_grid():
    q = tw.create("vat", dim=4, scales=[1, 2, 4, 7])
    with pytest.raises(ValueError, match=r"x must hold 49 tokens \(a 7x7 grid"):
        q(torch.randn(2, 48, 4))
    with pytest.raises(ValueError, match="layout must be one of"):
        tw.create("vat", dim=4, layout="3d")
