"""Baseline: finite scalar quantization (Mentzer et al. 2023) through ``vector-quantize-pytorch``.

Each token is projected to ``len(levels)`` channels, each channel bounded and rounded to one of
``levels[i]`` values: an implicit codebook of ``prod(levels)`` codes, no codebook loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from tokenworks.checks import check_int_list
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["FSQ"]


@register("fsq", family="VIS", cite="Mentzer et al. 2023, Finite Scalar Quantization")
@dataclass(kw_only=True, eq=False, repr=False)
class FSQ(Quantizer):
    """Baseline FSQ with per-channel ``levels`` (each >= 3; e.g. [8, 5, 5, 5] = 1000 codes)."""

    dim: int
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])

    def validate(self) -> None:
        check_int_list("levels", self.levels, min=3)
        self.levels = list(self.levels)

    def build(self) -> None:
        from vector_quantize_pytorch import FSQ as _FSQ

        self.fsq = _FSQ(levels=self.levels, dim=self.dim)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def quantize(self, x: torch.Tensor):
        quantized, indices = self.fsq(x)
        return quantized, indices, x.new_zeros(())

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(indices)
