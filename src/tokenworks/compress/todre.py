"""P63 ToDRE: visual token pruning via diversity and task relevance.

Stage 1 (diversity, after the vision encoder in the paper): a greedy k-center selection keeps
a diverse subset of ``budget`` tokens: the first center is the token with the most [CLS]
attention, then repeatedly the token farthest (cosine distance) from every chosen center.
Stage 2 (task relevance, inside the LLM's decoder in the paper): at a later layer the tokens
least relevant to the task are dropped; ToDRE drops *all* visual tokens once they stop
mattering ("information migration").

On a ViT classifier the task is the [CLS] token, so stage 2 keeps the ``relevance_keep``
fraction of the remaining tokens with the most [CLS] attention at block ``relevance_layer``
(``None``: stage 1 only). Deviations: the paper measures relevance by the text tokens'
attention to the visual tokens in the LM and prunes all visual tokens at a chosen layer; a
classifier has no text, and the [CLS] token is the only consumer, so [CLS] attention plays
that role and a fraction (not all) is dropped because the classifier reads the tokens through
[CLS] to the last block. The first center's choice follows the paper's intent (start from the
most salient token); the benchmark's FLOPs count both stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.compress.base import Reducer, TokenView
from tokenworks.compress.cls_attention import CLSAttention
from tokenworks.compress.divprune import cosine_distance, farthest_point_order
from tokenworks.registry import register

__all__ = ["ToDRE"]


@register("todre", paper="P63")
@dataclass(kw_only=True, eq=False)
class ToDRE(Reducer):
    """P63: greedy k-center diversity selection, then [CLS]-relevance pruning at a later block."""

    needs_attention = True

    relevance_layer: int | None = None
    relevance_keep: float = 0.5

    def validate(self) -> None:
        if self.relevance_layer is not None:
            check_int("relevance_layer", self.relevance_layer, min=1)
        check_float("relevance_keep", self.relevance_keep, min=0.0, max=1.0, min_open=True)

    def stages(self, layer: int) -> list[tuple[int, Reducer]]:
        if self.relevance_layer is None:
            return [(layer, self)]
        if self.relevance_layer <= layer:
            raise ValueError(f"relevance_layer ({self.relevance_layer}) must come after the reduction layer ({layer})")
        return [(layer, self), (self.relevance_layer, CLSAttention(budget=self.relevance_keep))]

    def assign(self, view: TokenView) -> torch.Tensor:
        first = view.cls_attention().masked_fill(~view.mask, float("-inf")).argmax(1)
        order = farthest_point_order(cosine_distance(view.tokens), view.mask, first, int(view.counts.max()))
        return self.keep_first(view, order)
