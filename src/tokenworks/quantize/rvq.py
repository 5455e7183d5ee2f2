"""Baseline: residual vector quantization (Zeghidour et al. 2021, SoundStream) through
``vector-quantize-pytorch``: ``num_quantizers`` VQ stages, each quantizing the residual of the
previous ones; indices have shape (B, N, num_quantizers)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["ResidualVQ"]


@register("rvq", family="VIS", cite="Zeghidour et al. 2021 (SoundStream), residual VQ")
@dataclass(kw_only=True, eq=False, repr=False)
class ResidualVQ(Quantizer):
    """Baseline residual VQ: ``num_quantizers`` stages of ``codebook_size`` codes each."""

    dim: int
    codebook_size: int = 256
    num_quantizers: int = 4
    decay: float = 0.95
    commitment_weight: float = 0.25

    def validate(self) -> None:
        check_int("codebook_size", self.codebook_size, min=2)
        check_int("num_quantizers", self.num_quantizers, min=1)
        check_float("decay", self.decay, min=0.0, max=1.0, max_open=True)
        check_float("commitment_weight", self.commitment_weight, min=0.0)

    def build(self) -> None:
        from vector_quantize_pytorch import ResidualVQ as _RVQ

        self.rvq = _RVQ(
            dim=self.dim,
            num_quantizers=self.num_quantizers,
            codebook_size=self.codebook_size,
            decay=self.decay,
            commitment_weight=self.commitment_weight,
            kmeans_init=True,
            threshold_ema_dead_code=1.0,
        )

    def index_shape(self, batch: int, tokens: int) -> tuple[int, ...]:
        return (batch, tokens, self.num_quantizers)

    def quantize(self, x: torch.Tensor):
        quantized, indices, losses = self.rvq(x)
        return quantized, indices, losses.sum()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.rvq.get_output_from_indices(indices)
