"""Baseline: FastV (Chen et al. 2024): prune visual tokens inside the LM by the attention the
last text token paid them at the layer before.

At decoder layer K (the host's ``layer``; FastV uses K = 2) the visual tokens with the least
attention from the last prompt token at layer K - 1 (mean over heads) are dropped for every
later layer; the kept ones keep their original positions. The host
(:mod:`tokenworks.compress.llava_hook`) computes only that one attention row (one query
against all keys) from the layer's normed input, so it works with sdpa, where FastV's code
needs eager attention to read the full attention maps. Before the LM (``layer=0``) there is
no text token yet, so the score falls back to the vision tower's [CLS] attention (then it
behaves like ``cls_attention``). Written from the paper and pkunlp-icler/FastV's description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["FastV"]


@register("fastv", family="CMP", cite="FastV: an image is worth 1/2 tokens after layer 2 (Chen et al. 2024)")
@dataclass(kw_only=True, eq=False)
class FastV(Reducer):
    """Baseline: keep the visual tokens the last text token attends to most (inside the LM)."""

    needs_attention = True
    hosts: ClassVar[tuple[str, ...]] = ("llava",)
    default_layer: ClassVar[int] = 2

    def assign(self, view: TokenView) -> torch.Tensor:
        return self.keep_first(view, self.order_by(view.cls_attention(), view.mask))
