"""Baseline: DivPrune (Alvar et al. 2025), max-min diversity pruning.

Keeps the subset of tokens that (greedily) maximizes the minimum pairwise cosine distance
(the max-min diversity problem): the first token is the most isolated one (largest distance
to its nearest neighbour), then repeatedly the token farthest from everything kept so far
(farthest-point / greedy k-center order). The greedy order is prefix-consistent, so one order
serves every per-row count. Features: the tokens themselves (the official code uses the
vision encoder's output features). The loop runs over kept tokens (the greedy choice is
sequential), vectorized over the batch and candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["DivPrune", "cosine_distance", "farthest_point_order"]


def cosine_distance(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N) pairwise cosine distances 1 - cos."""
    x = F.normalize(x.float(), dim=-1)
    return 1.0 - x @ x.transpose(1, 2)


def farthest_point_order(dist: torch.Tensor, mask: torch.Tensor, first: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy k-center order: start at ``first`` (B,), then ``steps - 1`` times the real token
    whose distance to its nearest chosen token is largest (ties: lowest index; padding only
    once a row has no real token left). ``steps`` <= N. Returns (B, N):
    the chosen tokens in order, then the rest (real ones by index, padding last)."""
    B, N, _ = dist.shape
    chosen = torch.zeros(B, N, dtype=torch.bool, device=dist.device)
    order = torch.empty(B, steps, dtype=torch.long, device=dist.device)
    nearest = torch.full((B, N), float("inf"), device=dist.device)
    pick = first
    rows = torch.arange(B, device=dist.device)
    for i in range(steps):
        order[:, i] = pick
        chosen[rows, pick] = True
        nearest = torch.minimum(nearest, dist[rows, pick])
        score = nearest.masked_fill(~mask, -1.0).masked_fill(chosen, float("-inf"))  # padding after real
        pick = score.argmax(1)
    rest = (~chosen).float() + mask.float()  # 2: unchosen real, 1: unchosen padding, chosen: 1 or 0
    rest = rest.masked_fill(chosen, -1.0)
    tail = torch.sort(rest, dim=1, descending=True, stable=True).indices[:, : N - steps]
    return torch.cat([order, tail], 1)


@register("divprune", family="CMP", cite="DivPrune: diversity-based visual token pruning (Alvar et al. 2025)")
@dataclass(kw_only=True, eq=False)
class DivPrune(Reducer):
    """Baseline: max-min diversity subset (most isolated token first, then farthest point)."""

    def assign(self, view: TokenView) -> torch.Tensor:
        dist = cosine_distance(view.tokens)
        real = view.mask[:, :, None] & view.mask[:, None, :]
        eye = torch.eye(dist.shape[1], dtype=torch.bool, device=dist.device)
        nn_dist = dist.masked_fill(~real | eye, float("inf")).amin(2)
        nn_dist = torch.where(torch.isfinite(nn_dist), nn_dist, 0.0).masked_fill(~view.mask, float("-inf"))
        first = nn_dist.argmax(1)
        order = farthest_point_order(dist, view.mask, first, int(view.counts.max()))
        return self.keep_first(view, order)
