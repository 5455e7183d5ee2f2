"""Baseline: full self-attention (DiT, Peebles & Xie 2023): every token attends to every token,
O(L^2) attention per layer. The reference the token-reducing variants are compared against."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tokenworks.generate.attention.base import Attention, DiTAttention
from tokenworks.registry import register

__all__ = ["FullAttention"]


@register("full-attention", family="CMP", cite="Peebles & Xie 2023, DiT (global self-attention)")
@dataclass(kw_only=True, eq=False, repr=False)
class FullAttention(DiTAttention):
    """Global self-attention over all L tokens in every layer."""

    def build(self) -> None:
        self.attn = nn.ModuleList(Attention(self.d, self.heads) for _ in range(self.layers))

    def mix(self, i, h, ctx):
        return self.attn[i](h)
