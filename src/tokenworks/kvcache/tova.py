"""Baseline: TOVA (Oren et al. 2024, "Transformers are Multi-State RNNs"): token omission via
attention.

At every step the current query's attention, averaged over the layer's heads, scores the
held tokens; the base drops the lowest (the same tokens in every head of the layer, as in the
paper). At prefill the last prompt token is the current query. Only that one row of
attention is computed (``view.probs(last=1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["TOVA"]


@register("tova", family="KV", cite="Oren et al. 2024, TOVA (current query's head-averaged attention)")
@dataclass(kw_only=True, eq=False)
class TOVA(KVPolicy):
    """Baseline: keep the tokens the current query attends to most (head average)."""

    def score(self, view: LayerView) -> torch.Tensor | None:
        if not view.compress:
            return None
        p = view.probs(last=1)[:, :, 0].mean(1)  # (B, K)
        return p[:, None, :].expand(-1, view.pos.shape[1], -1)
