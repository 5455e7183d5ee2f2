"""Baseline: vector quantization (VQ-VAE) through ``vector-quantize-pytorch``.

A thin adapter: nearest-code assignment, EMA codebook updates, commitment loss and the
straight-through (rotation-trick) gradient all come from ``VectorQuantize``. Three registered
presets differ only in their defaults: ``vq`` (Euclidean, EMA), ``vq_cosine`` (l2-normalized
codes and inputs, Yu et al. 2022 ViT-VQGAN) and ``vq_kmeans`` (codebook initialized by
k-means on the first batch, with dead-code replacement).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["VQ", "CosineVQ", "KMeansVQ"]


@register("vq", family="VIS", cite="van den Oord et al. 2017 (VQ-VAE), EMA codebook of Razavi et al. 2019")
@dataclass(kw_only=True, eq=False, repr=False)
class VQ(Quantizer):
    """Baseline VQ: each token -> its nearest of ``codebook_size`` codes."""

    dim: int
    codebook_size: int = 512
    decay: float = 0.95
    commitment_weight: float = 0.25
    cosine: bool = False
    kmeans_init: bool = False
    dead_code_threshold: float = 0.0

    def validate(self) -> None:
        check_int("codebook_size", self.codebook_size, min=2)
        check_float("decay", self.decay, min=0.0, max=1.0, max_open=True)
        check_float("commitment_weight", self.commitment_weight, min=0.0)
        check_float("dead_code_threshold", self.dead_code_threshold, min=0.0)

    def build(self) -> None:
        from vector_quantize_pytorch import VectorQuantize

        self.vq = VectorQuantize(
            dim=self.dim,
            codebook_size=self.codebook_size,
            decay=self.decay,
            commitment_weight=self.commitment_weight,
            use_cosine_sim=self.cosine,
            kmeans_init=self.kmeans_init,
            kmeans_iters=10,
            threshold_ema_dead_code=self.dead_code_threshold,
        )

    def quantize(self, x: torch.Tensor):
        quantized, indices, loss = self.vq(x)
        return quantized, indices, loss.sum()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) code vectors as used for the nearest-neighbour search."""
        cb = self.vq.codebook
        return torch.nn.functional.normalize(cb, dim=-1) if self.cosine else cb


@register("vq_cosine", family="VIS", cite="Yu et al. 2022 (ViT-VQGAN): l2-normalized codes")
@dataclass(kw_only=True, eq=False, repr=False)
class CosineVQ(VQ):
    """Baseline VQ with cosine similarity (codes and inputs on the unit sphere)."""

    cosine: bool = True


@register("vq_kmeans", family="VIS", cite="k-means codebook init + dead-code restarts (Dhariwal et al. 2020, Jukebox)")
@dataclass(kw_only=True, eq=False, repr=False)
class KMeansVQ(VQ):
    """Baseline VQ whose codebook starts from k-means on the first batch; codes used less
    than ``dead_code_threshold`` times (EMA count) are re-seeded from the batch."""

    kmeans_init: bool = True
    dead_code_threshold: float = 1.0
