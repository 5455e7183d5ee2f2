"""Baseline: [CLS]-attention pruning (EViT-style importance; the ViT analogue of FastV's
attention pruning).

Keeps the ``budget`` tokens that the [CLS] query attends to most at the layer before the
reduction (mean over heads). The host hands the attention it already ran: only the [CLS] row
of the attention matrix is formed (one query against N keys), never the N x N matrix.
Deviation from EViT: dropped tokens are not fused into one extra token (pure pruning, so the
kept tokens are exactly the top-k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["CLSAttention"]


@register("cls_attention", family="CMP", cite="[CLS]-attention pruning (EViT, Liang et al. 2022; FastV-style importance)")
@dataclass(kw_only=True, eq=False)
class CLSAttention(Reducer):
    """Baseline: keep the tokens with the most [CLS] attention."""

    needs_attention = True

    def assign(self, view: TokenView) -> torch.Tensor:
        return self.keep_first(view, self.order_by(view.cls_attention(), view.mask))
