"""Baseline: H2O (Zhang et al. 2023, "Heavy-Hitter Oracle for Efficient Generative Inference").

Each held token accumulates the attention it receives (summed over the query heads of its kv
head, over every query since it arrived: all prompt queries at prefill, one per decoding
step). The budget is split between the most recent tokens (``recent`` of it, half in the paper)
and the heavy hitters with the largest accumulated attention. Evicts at prefill and at every
decoding step. Prefill column sums are computed in query chunks, never as a full T x T matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.checks import check_float
from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["H2O"]


@register("h2o", family="KV", cite="Zhang et al. 2023, H2O (accumulated attention heavy hitters + recent)")
@dataclass(kw_only=True, eq=False)
class H2O(KVPolicy):
    """Baseline: heavy hitters by accumulated attention + a recent window (``recent`` of the budget)."""

    token_state: ClassVar[dict[str, float]] = {"acc": 0.0}

    recent: float = 0.5

    def validate(self) -> None:
        check_float("recent", self.recent, min=0.0, max=1.0)

    def score(self, view: LayerView) -> torch.Tensor | None:
        received = view.column_sums() if view.query.shape[2] > 1 else view.probs(last=1).sum(2)  # (B, H, K)
        acc = view.state["acc"] + view.per_kv_head(received, "sum")
        view.state["acc"] = acc
        if not view.compress:
            return None
        n_recent = torch.ceil(view.cap.double() * self.recent).long()  # (B,)
        recent = view.pos >= (view.count - n_recent)[:, None, None]
        return acc.masked_fill(recent & view.valid, float("inf"))
