"""Baseline: random eviction (a floor every informed policy should beat).

At prefill and at every decoding step, each held token gets a pseudo-random score and the
base keeps the top ``cap``. Scores come from an integer hash of (seed, layer, kv head, real
position, step), not from a global RNG, so they do not depend on the batch: a left-padded row
keeps the same tokens as the row alone, and a fixed seed gives the same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["RandomEviction", "hash_uniform"]

_M32 = 0xFFFFFFFF


def hash_uniform(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (lowbias32) of ``x`` (int64), mapped to floats in [0, 1)."""
    x = x & _M32
    x = (x ^ (x >> 16)) * 0x7FEB352D & _M32
    x = (x ^ (x >> 15)) * 0x846CA68B & _M32
    x = x ^ (x >> 16)
    return x.double() / 2**32


@register("random", family="KV", cite="random eviction (floor baseline)")
@dataclass(kw_only=True, eq=False)
class RandomEviction(KVPolicy):
    """Baseline: keep a uniformly random subset of ``budget`` tokens, re-drawn every step."""

    seed: int = 0

    def validate(self) -> None:
        check_int("seed", self.seed, min=0)

    def score(self, view: LayerView) -> torch.Tensor | None:
        if not view.compress:
            return None
        B, Hkv, K = view.pos.shape
        head = torch.arange(Hkv, device=view.pos.device)[None, :, None]
        key = (((self.seed * 1_000_003 + view.layer) * 8_191 + head) * 1_048_573 + view.pos.clamp(min=0)) * 65_537 + view.step
        return hash_uniform(key).float()
