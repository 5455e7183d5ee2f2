"""P20 Instella-T2I: 1D binary latent tokens.

Mechanism: each token is projected to ``bits`` logits; ``p = sigmoid(logits)``. In training a
bit is a Bernoulli sample ``b ~ Bern(p)``, at inference it is ``p > 0.5``; gradients pass
straight through (``b + p - p.detach()``). The bits, mapped to {-1, +1}, are projected back to
``dim``. A token of ``bits`` bits costs exactly ``bits`` bits.

Written here because ``vector-quantize-pytorch`` has no stochastic binary quantizer (its LFQ
takes the sign deterministically and adds an entropy loss).

Indices: the bits of a token are packed, ``group_bits`` at a time and least significant bit
first, into integers, so ``indices`` has shape (B, N, bits // group_bits) with values in
[0, 2**group_bits). ``bits_of(indices)`` unpacks them to (B, N, bits) in {0, 1}.

Deviations: Instella-T2I binarizes the encoder output directly (no input projection) and
regularizes the bits with a small entropy term; here a linear projection maps ``dim`` to
``bits`` (identity when they are equal is not assumed) and ``aux_loss`` is an optional
penalty that pulls the mean bit activation toward 0.5 (``balance_weight``, 0 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["BinaryQuantizer"]


@register("binary", paper="P20")
@dataclass(kw_only=True, eq=False, repr=False)
class BinaryQuantizer(Quantizer):
    """P20 binary tokens: Bernoulli in training, threshold at inference, straight-through."""

    dim: int
    bits: int = 16
    group_bits: int | None = None
    balance_weight: float = 0.0

    def validate(self) -> None:
        check_int("bits", self.bits, min=1)
        if self.group_bits is None:
            self.group_bits = min(self.bits, 16)
        check_int("group_bits", self.group_bits, min=1, max=min(self.bits, 30))
        if self.bits % self.group_bits:
            raise ValueError(f"bits ({self.bits}) must be a multiple of group_bits ({self.group_bits})")
        check_float("balance_weight", self.balance_weight, min=0.0)

    def build(self) -> None:
        self.proj_in = nn.Linear(self.dim, self.bits)
        self.proj_out = nn.Linear(self.bits, self.dim)
        self.register_buffer("_weights", 2 ** torch.arange(self.group_bits), persistent=False)

    @property
    def codebook_size(self) -> int:
        return 2**self.group_bits

    def index_shape(self, batch: int, tokens: int) -> tuple[int, ...]:
        return (batch, tokens, self.bits // self.group_bits)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Bit probabilities (B, N, bits) for tokens x (B, N, dim)."""
        return torch.sigmoid(self.proj_in(x))

    def quantize(self, x: torch.Tensor):
        p = self.probabilities(x)  # (B, N, bits)
        if self.training:
            hard = torch.bernoulli(p.detach())
        else:
            hard = (p > 0.5).to(p.dtype)
        b = hard + p - p.detach()  # straight-through: value = hard bits, gradient = dp
        quantized = self.proj_out(2 * b - 1)
        aux = self.balance_weight * (p.mean(dim=(0, 1)) - 0.5).pow(2).sum()
        return quantized, self.pack(hard), aux

    def pack(self, bits: torch.Tensor) -> torch.Tensor:
        """(B, N, bits) in {0, 1} -> (B, N, bits // group_bits) integers."""
        groups = rearrange(bits.long(), "b n (g k) -> b n g k", k=self.group_bits)
        return (groups * self._weights).sum(-1)

    def bits_of(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, N, G) packed indices -> (B, N, bits) in {0, 1} (float)."""
        unpacked = (indices.long()[..., None] // self._weights) % 2
        return rearrange(unpacked, "b n g k -> b n (g k)").float()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 3 or indices.shape[-1] != self.bits // self.group_bits:
            raise ValueError(
                f"indices must have shape (B, N, {self.bits // self.group_bits}), got {tuple(indices.shape)}"
            )
        return self.proj_out(2 * self.bits_of(indices) - 1)
