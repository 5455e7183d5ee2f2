"""Baseline: lookup-free quantization (Yu et al. 2023, MAGVIT-v2) through ``vector-quantize-pytorch``.

Each token is projected to log2(codebook_size) channels and each channel quantized to its sign;
an entropy penalty spreads the use of the implicit binary codebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["LFQ"]


@register("lfq", family="VIS", cite="Yu et al. 2023 (MAGVIT-v2), lookup-free quantization")
@dataclass(kw_only=True, eq=False, repr=False)
class LFQ(Quantizer):
    """Baseline LFQ with a power-of-two ``codebook_size``."""

    dim: int
    codebook_size: int = 1024
    entropy_loss_weight: float = 0.1
    commitment_loss_weight: float = 0.25

    def validate(self) -> None:
        check_int("codebook_size", self.codebook_size, min=2)
        if not math.log2(self.codebook_size).is_integer():
            raise ValueError(f"codebook_size must be a power of two for LFQ, got {self.codebook_size}")
        check_float("entropy_loss_weight", self.entropy_loss_weight, min=0.0)
        check_float("commitment_loss_weight", self.commitment_loss_weight, min=0.0)

    def build(self) -> None:
        from vector_quantize_pytorch import LFQ as _LFQ

        self.lfq = _LFQ(
            dim=self.dim,
            codebook_size=self.codebook_size,
            entropy_loss_weight=self.entropy_loss_weight,
            commitment_loss_weight=self.commitment_loss_weight,
        )

    def quantize(self, x: torch.Tensor):
        quantized, indices, aux = self.lfq(x)
        return quantized, indices, aux.sum()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.lfq.indices_to_codes(indices)
