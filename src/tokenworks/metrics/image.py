"""Image metrics: PSNR, SSIM and the Frechet distance between two feature sets.

SSIM is written here (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03,
valid-region mean) so that it runs batched on torch tensors on any device; the tests check it
against scikit-image's ``structural_similarity``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenworks.checks import check_tensor

__all__ = ["frechet_distance", "gaussian_stats", "psnr", "ssim"]


def _pair(x: torch.Tensor, y: torch.Tensor) -> None:
    check_tensor("x", x, ndim=4, floating=True)
    check_tensor("y", y, ndim=4, floating=True)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image. x, y: (B, C, H, W) in [0, data_range]."""
    _pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return (10 * torch.log10(data_range**2 / mse)).float()


def _gauss_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Structural similarity per image (mean over the valid region and channels)."""
    _pair(x, y)
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images must be at least {win_size}x{win_size} for SSIM, got {tuple(x.shape[-2:])}")
    x, y = x.double(), y.double()
    c = x.shape[1]
    w = _gauss_window(win_size, sigma, c, x.device, x.dtype)
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).float()


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) covariance of features (N, D), in float64."""
    check_tensor("features", features, ndim=2, floating=True)
    if features.shape[0] < 2:
        raise ValueError(f"features needs at least 2 rows, got {features.shape[0]}")
    f = features.double()
    mu = f.mean(0)
    fc = f - mu
    return mu, fc.T @ fc / (f.shape[0] - 1)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``."""
    mu_a, s_a = gaussian_stats(a)
    mu_b, s_b = gaussian_stats(b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dims differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    root_a = _sqrtm_psd(s_a)
    cross = _sqrtm_psd(root_a @ s_b @ root_a)
    fd = (mu_a - mu_b).pow(2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * torch.trace(cross)
    return float(fd.clamp_min(0))
