"""Baseline: linear PCA with quantized coefficients, the trivial tokenizer every VIS tokenizer
must beat at the same number of latent scalars and bits.

``QuantizedPCA(components, levels).fit(train_images)`` keeps the top ``components`` principal
directions of the training images (eigenvectors of their covariance, fitted in float64) and
quantizes coefficient i to ``levels[i % len(levels)]`` values with an equal-probability scalar
quantizer: the bin edges are the coefficient's training quantiles, the value of a bin is the
mean of the training coefficients in it. With ``levels=[8, 5, 5, 5]`` and 4k components it
spends exactly the bits and latent scalars of k FSQ tokens with those levels (9.97 bits and 4
scalars each). ``levels=None`` keeps the coefficients continuous (plain PCA).
"""

from __future__ import annotations

import math

import torch

from tokenworks.checks import check_int, check_tensor

__all__ = ["QuantizedPCA"]


class QuantizedPCA:
    def __init__(self, components: int, levels: list[int] | tuple[int, ...] | None = None) -> None:
        check_int("components", components, min=1)
        if levels is not None:
            if not levels or not all(isinstance(v, int) and v >= 2 for v in levels):
                raise ValueError(f"levels must be a non-empty list of integers >= 2 (or None), got {levels!r}")
        self.components, self.levels = components, None if levels is None else list(levels)
        self.mean = self.basis = None
        self.edges: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    @property
    def bits(self) -> float:
        """Bits per image (inf for continuous coefficients)."""
        if self.levels is None:
            return math.inf
        return sum(math.log2(self.levels[i % len(self.levels)]) for i in range(self.components))

    def fit(self, images: torch.Tensor, *, eig: tuple[torch.Tensor, torch.Tensor] | None = None) -> QuantizedPCA:
        """Fit on ``images``; ``eig`` = (mean, eigenvectors largest first) of the same images,
        from :meth:`eigenbasis`, skips the covariance (to fit several sizes at once)."""
        check_tensor("images", images, floating=True)
        x = images.reshape(images.shape[0], -1).double()
        if self.components > x.shape[1]:
            raise ValueError(f"components ({self.components}) must be at most the pixels per image ({x.shape[1]})")
        self.shape = tuple(images.shape[1:])
        self.mean, vecs = eig if eig is not None else self.eigenbasis(images)
        xc = x - self.mean
        self.basis = vecs[:, : self.components]  # (D, k), largest variance first
        if self.levels is not None:
            coef = xc @ self.basis
            self.edges, self.values = [], []
            for i in range(self.components):
                n = self.levels[i % len(self.levels)]
                c = coef[:, i].contiguous()
                edges = torch.quantile(c.float(), torch.linspace(0, 1, n + 1)[1:-1].float()).double()
                b = torch.bucketize(c, edges)
                vals = torch.stack([c[b == j].mean() if (b == j).any() else edges[min(j, n - 2)] for j in range(n)])
                self.edges.append(edges)
                self.values.append(vals)
        return self

    @staticmethod
    def eigenbasis(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (D,), eigenvectors of the covariance (D, D), largest eigenvalue first), float64."""
        x = images.reshape(images.shape[0], -1).double()
        mean = x.mean(0)
        xc = x - mean
        _, vecs = torch.linalg.eigh(xc.T @ xc / x.shape[0])
        return mean, vecs.flip(1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, ...) images -> (N, k) coefficients (continuous) or bin indices (quantized)."""
        if self.basis is None:
            raise RuntimeError("QuantizedPCA: call fit(train_images) first")
        coef = (images.reshape(images.shape[0], -1).double() - self.mean) @ self.basis
        if self.levels is None:
            return coef
        return torch.stack([torch.bucketize(coef[:, i].contiguous(), self.edges[i]) for i in range(self.components)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if self.levels is None:
            coef = codes.double()
        else:
            coef = torch.stack([self.values[i][codes[:, i]] for i in range(self.components)], dim=1)
        x = coef @ self.basis.T + self.mean
        return x.float().clamp(0, 1).reshape(codes.shape[0], *self.shape)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))
