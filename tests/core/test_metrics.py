"""Metrics against independent references (scikit-image, scipy, hand computation)."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from tokenworks.metrics import bits_per_byte, codebook_perplexity, codebook_usage, frechet_distance, psnr, ssim


def test_psnr_matches_hand_computation():
    x = torch.zeros(1, 1, 4, 4)
    y = torch.full((1, 1, 4, 4), 0.1)
    assert psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    y = (x + 0.1 * torch.randn(3, 1, 28, 28, generator=g)).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(3):
        ref = structural_similarity(x[i, 0].numpy(), y[i, 0].numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-3)
    assert ssim(x, x).min().item() == pytest.approx(1.0, abs=1e-6)


def test_frechet_distance_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64)
    b = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64) + 0.5
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    s_a, s_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    ref = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))
    assert frechet_distance(a.float(), b.float()) == pytest.approx(ref, rel=1e-3)
    assert frechet_distance(a.float(), a.float()) == pytest.approx(0.0, abs=1e-4)


def test_codebook_statistics():
    idx = torch.tensor([[0, 0, 1, 3]])
    assert codebook_usage(idx, 4) == 0.75
    p = np.array([0.5, 0.25, 0.25])
    assert codebook_perplexity(idx, 4) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert codebook_perplexity(torch.arange(8), 8) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="indices must be in"):
        codebook_usage(torch.tensor([4]), 4)


def test_bits_per_byte():
    assert bits_per_byte(math.log(2) * 80, 10) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="n_bytes"):
        bits_per_byte(1.0, 0)


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        ssim(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
