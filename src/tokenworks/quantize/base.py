"""The quantizer interface shared by every VIS bottleneck.

    quantized, indices, aux_loss = q(x)        # x: (B, N, D) float
    codes = q.indices_to_codes(indices)        # == quantized (at eval)

``quantized`` has the shape, dtype and device of ``x``; gradients reach ``x`` through a
straight-through path. ``indices`` is an integer tensor of shape ``q.index_shape(B, N)``:
(B, N) for one code per token, (B, N, G) for G codes per token (residual levels, bit groups),
or another length for multi-scale quantizers. Each entry takes ``q.codebook_size`` values, so a
sequence of N tokens costs ``q.sequence_bits(N)`` bits. ``aux_loss`` is a scalar tensor to add to the
training loss (commitment, entropy, KL terms; zero if none).

Subclasses are ``@dataclass(kw_only=True, eq=False, repr=False)`` whose fields are their
options; they build their layers in ``build()`` and implement the one hook ``quantize``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import ClassVar

import torch
from torch import nn

from tokenworks.checks import check_int, check_tensor

__all__ = ["Quantizer"]


class Quantizer(nn.Module):
    kind: ClassVar[str] = "quantizer"

    dim: int

    def __post_init__(self) -> None:
        nn.Module.__init__(self)
        check_int("dim", self.dim, min=1)
        self.validate()
        self.build()

    def validate(self) -> None:
        """Check option fields (raise ValueError/TypeError naming the field)."""

    @abstractmethod
    def build(self) -> None:
        """Create the sub-modules and buffers."""

    @abstractmethod
    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, D) -> quantized (B, N, D), indices, scalar aux loss."""

    @abstractmethod
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices -> codes (B, N, D); called by ``indices_to_codes`` after validation."""

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """How many values each entry of ``indices`` can take."""

    def index_shape(self, batch: int, tokens: int) -> tuple[int, ...]:
        """Shape of ``indices`` for an input of ``tokens`` tokens (default: one per token)."""
        return (batch, tokens)

    def sequence_bits(self, tokens: int) -> float:
        """Bits needed to store the indices of one sequence of ``tokens`` tokens."""
        return math.prod(self.index_shape(1, tokens)) * math.log2(self.codebook_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_tensor("x", x, ndim=3, floating=True)
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dimension dim={self.dim}, got shape {tuple(x.shape)}")
        if x.shape[1] < 1:
            raise ValueError(f"x must hold at least one token, got shape {tuple(x.shape)}")
        quantized, indices, aux = self.quantize(x)
        return quantized.to(x.dtype), indices, aux.reshape(()).to(x.dtype)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (B, N, D) for indices as returned by ``forward``."""
        check_tensor("indices", indices, floating=False)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"indices must be in [0, {self.codebook_size}), got [{int(indices.min())}, {int(indices.max())}]"
            )
        return self.decode_indices(indices.long())

    def extra_repr(self) -> str:
        fields = getattr(self, "__dataclass_fields__", {})
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in fields)
