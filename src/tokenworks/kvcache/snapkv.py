"""Baseline: SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before
Generation").

Prompt compression only: the attention of the last ``window`` prompt queries (the observation
window, which holds the question) is averaged over the window, smoothed by 1-D average pooling
(``kernel``) and averaged over each kv head's query heads; the window itself is always kept.
Only those ``window`` rows of attention are computed. Decoded tokens are never evicted (the
cache grows from the compressed prompt), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from tokenworks.checks import check_int
from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["SnapKV"]


@register("snapkv", family="KV", cite="Li et al. 2024, SnapKV (observation-window attention at prefill)")
@dataclass(kw_only=True, eq=False)
class SnapKV(KVPolicy):
    """Baseline: prefill-only compression by the observation window's pooled attention."""

    phase: ClassVar[str] = "prefill"

    window: int = 32
    kernel: int = 5

    def validate(self) -> None:
        check_int("window", self.window, min=1)
        check_int("kernel", self.kernel, min=1)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (centered pooling), got {self.kernel}")
        self.check_window("window", self.window)

    def score(self, view: LayerView) -> torch.Tensor | None:
        if not view.compress:
            return None
        w = min(self.window, view.query.shape[2])
        in_window = view.pos > (view.count - 1 - w)[:, None, None]  # (B, Hkv, K)
        p = view.probs(last=w).mean(2)  # (B, H, K)
        p = p.masked_fill(in_window.repeat_interleave(view.groups, dim=1), 0.0)  # pool the pre-window part only
        B, H, K = p.shape
        p = F.avg_pool1d(p.reshape(B * H, 1, K), self.kernel, stride=1, padding=self.kernel // 2).reshape(B, H, K)
        s = view.per_kv_head(p, "mean")
        return s.masked_fill(in_window & view.valid, float("inf"))
