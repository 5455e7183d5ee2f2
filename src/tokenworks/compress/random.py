"""Baseline: random pruning (the floor every informed reducer should beat).

Each token gets a pseudo-random score from an integer hash of (seed, row-independent position)
and the base keeps the top ``budget``. The score depends on the token's index only, not on the
batch, so a row keeps the same tokens alone or in a batch, and a fixed seed the same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.compress.base import Reducer, TokenView
from tokenworks.kvcache.random import hash_uniform
from tokenworks.registry import register

__all__ = ["RandomPrune"]


@register("random_prune", family="CMP", cite="random token pruning (floor baseline; VTC-Bench, P66)")
@dataclass(kw_only=True, eq=False)
class RandomPrune(Reducer):
    """Baseline: keep a uniformly random subset of ``budget`` tokens."""

    seed: int = 0

    def validate(self) -> None:
        check_int("seed", self.seed, min=0)

    def assign(self, view: TokenView) -> torch.Tensor:
        B, N = view.mask.shape
        pos = torch.arange(N, device=view.mask.device).expand(B, N)
        score = hash_uniform((self.seed * 1_000_003 + pos) * 65_537 + 12_345)
        return self.keep_first(view, self.order_by(score, view.mask))
