"""Baseline: SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before
Generation").

Prompt compression only: the attention of the last ``window`` prompt queries (the observation
window, which holds the question) is averaged over the window, smoothed by 1-D average pooling
(``kernel``) and averaged over each kv head's query heads; the window itself is always kept.
Only those ``window`` rows of attention are computed.

Deviation (budget). In the paper decoded tokens are never evicted, so the cache grows past the
budget from the compressed prompt. Here, with ``decode_evict=True`` (default), the budget is
kept at every decoding step without any new attention computation: each prompt token keeps
its prefill score, decoded tokens are protected, and when the cache would exceed the budget
the lowest-scoring prompt token goes (once the protected tokens alone exceed it, the oldest of
them). ``decode_evict=False`` is the paper's behaviour (the held KV then exceeds the budget by
the number of decoded tokens).
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

    token_state: ClassVar[dict[str, float]] = {"snap": float("inf")}

    window: int = 32
    kernel: int = 5
    decode_evict: bool = True

    @property
    def phase(self) -> str:  # type: ignore[override]
        return "both" if self.decode_evict else "prefill"

    def validate(self) -> None:
        check_int("window", self.window, min=1)
        check_int("kernel", self.kernel, min=1)
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (centered pooling), got {self.kernel}")
        self.check_window("window", self.window)
        if not isinstance(self.decode_evict, bool):
            raise TypeError(f"decode_evict must be a bool, got {self.decode_evict!r}")

    def score(self, view: LayerView) -> torch.Tensor | None:
        if not view.compress:
            return None
        if not view.prefill:  # keep the budget with the prefill scores (decoded tokens: +inf)
            return view.state["snap"]
        w = min(self.window, view.query.shape[2])
        in_window = view.pos > (view.count - 1 - w)[:, None, None]  # (B, Hkv, K)
        p = view.probs(last=w).mean(2)  # (B, H, K)
        p = p.masked_fill(in_window.repeat_interleave(view.groups, dim=1), 0.0)  # pool the pre-window part only
        B, H, K = p.shape
        p = F.avg_pool1d(p.reshape(B * H, 1, K), self.kernel, stride=1, padding=self.kernel // 2).reshape(B, H, K)
        s = view.per_kv_head(p, "mean").masked_fill(in_window & view.valid, float("inf"))
        view.state["snap"] = s
        return s
