"""Baseline: spatial pooling (downsampling), the trivial baseline VTC-Bench found hard to beat.

The h x w grid of tokens is cut into an h' x w' grid of near-equal rectangles (row i of the
grid goes to row ``floor(i h' / h)``, likewise columns) and each rectangle becomes the
size-weighted mean of its tokens. h' x w' is the largest grid within the budget: ``h' =
floor(sqrt(M))`` (at most h), ``w' = min(w, M // h')``, so the tokens held may fall below the
budget (98 of 196 allowed -> 9 x 10 = 90 held); the benchmark reports the count held.
Deviation from ``adaptive_avg_pool2d``: its windows overlap when h' does not divide h (a token
then counts twice); here each token goes to exactly one output token, so sizes sum to N.
Needs the unreduced grid (the first reduction of a forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["SpatialPool", "pool_grid"]


def pool_grid(m: int, h: int, w: int) -> tuple[int, int]:
    """The largest h' x w' grid (h' <= h, w' <= w) with h' w' <= m tokens."""
    hp = max(1, min(h, math.isqrt(m)))
    return hp, max(1, min(w, m // hp))


@register("spatial_pool", family="CMP", cite="spatial average pooling / downsampling (VTC-Bench baseline, P66)")
@dataclass(kw_only=True, eq=False)
class SpatialPool(Reducer):
    """Baseline: average-pool the token grid to the largest grid within the budget."""

    needs_grid = True

    def keep_counts(self, view: TokenView) -> torch.Tensor:
        h, w = view.grid
        counts = super().keep_counts(view)
        return torch.tensor([math.prod(pool_grid(int(m), h, w)) for m in counts.tolist()], device=counts.device)

    def assign(self, view: TokenView) -> torch.Tensor:
        h, w = view.grid
        rows = []
        for m in view.counts.tolist():  # one grid per row (rows differ only when budgets do)
            hp, wp = pool_grid(int(m), h, w)
            r = torch.arange(h, device=view.mask.device) * hp // h
            c = torch.arange(w, device=view.mask.device) * wp // w
            rows.append((r[:, None] * wp + c[None, :]).flatten())
        return torch.stack(rows)
