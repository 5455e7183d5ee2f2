"""Baseline: ToMe bipartite soft matching (Bolya et al. 2023, facebookresearch/ToMe), merging.

One round: the real tokens alternate into sets A (even positions among the row's real tokens)
and B (odd); each A token finds its most similar B token (cosine similarity of the metric,
ToMe's attention keys averaged over heads); the ``r`` A tokens with the most similar match are
merged into it (size-weighted mean, sizes add), the other tokens are kept. ``r`` is at most
|A|, so one round removes at most half; rounds repeat until the row holds its budget (the
metric is merged size-weighted between rounds). After the reduction the host adds ``log size``
to the attention logits of every merged token (ToMe's proportional attention).

Deviations from ToMe: ToMe merges ``r`` tokens in *every* block; here all reducers of the
benchmark act at the same place (one location, any budget: several rounds there), so they are
compared at equal tokens held. The [CLS] token is never among the tokens a host hands over
(ToMe protects it the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["ToMe", "bipartite_round"]


def bipartite_round(metric: torch.Tensor, mask: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """One round of bipartite soft matching: metric (B, N, C), mask (B, N), r (B,) merges per row.
    Returns (B, N) long: the input index each token is merged into (itself if kept; -1 padding)."""
    B, N, _ = metric.shape
    rank = mask.long().cumsum(1) - 1  # index among the row's real tokens
    is_a = mask & (rank % 2 == 0)
    is_b = mask & (rank % 2 == 1)
    m = F.normalize(metric.float(), dim=-1)
    sim = m @ m.transpose(1, 2)  # (B, N, N)
    sim = sim.masked_fill(~is_b[:, None, :], float("-inf"))
    best, match = sim.max(-1)  # (B, N): best B partner of every token
    best = best.masked_fill(~is_a, float("-inf"))
    order = torch.sort(best, dim=1, descending=True, stable=True).indices
    pos = torch.empty_like(order).scatter_(1, order, torch.arange(N, device=metric.device).expand(B, N))
    merged = is_a & (pos < r[:, None]) & torch.isfinite(best)
    idx = torch.arange(N, device=metric.device).expand(B, N)
    target = torch.where(merged, match, idx)
    return torch.where(mask, target, torch.full_like(target, -1))


@register("tome", family="CMP", cite="ToMe: Token Merging (Bolya et al. 2023), bipartite soft matching")
@dataclass(kw_only=True, eq=False)
class ToMe(Reducer):
    """Baseline: merge the most similar tokens by bipartite soft matching until the budget."""

    def assign(self, view: TokenView) -> torch.Tensor:
        B, N = view.mask.shape
        metric, mask, sizes = view.keys().float(), view.mask.clone(), view.sizes.float()
        owner = torch.arange(N, device=mask.device).expand(B, N).clone()  # input token -> current representative
        owner = torch.where(mask, owner, torch.full_like(owner, -1))
        while True:
            left = mask.sum(1) - view.counts
            if not bool((left > 0).any()):
                break
            n = mask.sum(1)
            r = torch.where(n >= 2, torch.minimum(left, (n + 1) // 2), 0)  # r <= |A| = ceil(n / 2); |B| >= 1
            target = bipartite_round(metric, mask, r.clamp(min=0))
            t = target.clamp(min=0)
            w = sizes * mask
            new_w = torch.zeros_like(w).scatter_add_(1, t, w)
            new_metric = torch.zeros_like(metric).scatter_add_(1, t[..., None].expand_as(metric), metric * w[..., None])
            metric = torch.where(new_w[..., None] > 0, new_metric / new_w.clamp(min=1e-12)[..., None], metric)
            owner = torch.where(owner >= 0, target.gather(1, owner.clamp(min=0)), owner)
            mask = mask & (target == torch.arange(N, device=mask.device))
            sizes = torch.where(mask, new_w, sizes)
        slot = mask.long().cumsum(1) - 1  # surviving representatives, in order
        return torch.where(owner >= 0, slot.gather(1, owner.clamp(min=0)), owner)
