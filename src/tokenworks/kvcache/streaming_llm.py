"""Baseline: StreamingLLM (Xiao et al. 2023, "Efficient Streaming Language Models with
Attention Sinks").

Keeps the first ``sinks`` tokens (attention sinks) and the most recent ones: the score is the
token's position, with sinks at +inf, so the base's top-``cap`` is exactly sinks + a window of
``cap - sinks`` recent tokens. Applied at prefill and at every decoding step.

Deviation: keys keep the rotary positions they were cached with (no re-rotation into the
window, as in the paper's cache-position scheme); kvpress does the same by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["StreamingLLM"]


@register("streaming_llm", family="KV", cite="Xiao et al. 2023, StreamingLLM (attention sinks + recent window)")
@dataclass(kw_only=True, eq=False)
class StreamingLLM(KVPolicy):
    """Baseline: ``sinks`` first tokens + the most recent tokens, ``budget`` in all."""

    sinks: int = 4

    def validate(self) -> None:
        check_int("sinks", self.sinks, min=0)
        if isinstance(self.budget, int) and self.sinks >= self.budget:
            raise ValueError(f"sinks={self.sinks} must be smaller than the budget ({self.budget} tokens)")

    def score(self, view: LayerView) -> torch.Tensor | None:
        if not view.compress:
            return None
        s = view.pos.float()
        return s.masked_fill((view.pos < self.sinks) & view.valid, float("inf"))
