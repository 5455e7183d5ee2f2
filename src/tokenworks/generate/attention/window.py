"""Baseline: window attention with shifted windows (Swin, Liu et al. 2021): tokens attend within
non-overlapping ``window`` x ``window`` windows of the token grid; with ``shift`` every second
layer moves the windows by ``window // 2`` (Swin's cyclic roll and mask) so that information
crosses window borders. O(L * window^2) attention per layer: no global path at all."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tokenworks.checks import check_int
from tokenworks.generate.attention.base import Attention, DiTAttention, check_divides, window_attention
from tokenworks.registry import register

__all__ = ["WindowAttention"]


@register("window-attention", family="CMP", cite="Liu et al. 2021, Swin Transformer (shifted window attention)")
@dataclass(kw_only=True, eq=False, repr=False)
class WindowAttention(DiTAttention):
    """Self-attention inside square windows; odd layers shifted by window // 2 when ``shift``."""

    window: int = 7
    shift: bool = True

    def validate(self) -> None:
        check_int("window", self.window, min=1, max=1024)
        if not isinstance(self.shift, bool):
            raise ValueError(f"shift must be a bool, got {self.shift!r}")

    def check_grid(self, grid):
        check_divides("window", self.window, grid)

    def build(self) -> None:
        self.attn = nn.ModuleList(Attention(self.d, self.heads) for _ in range(self.layers))

    def mix(self, i, h, ctx):
        s = self.window // 2 if self.shift and i % 2 == 1 else 0
        return window_attention(self.attn[i], h, ctx["grid"], self.window, s)
