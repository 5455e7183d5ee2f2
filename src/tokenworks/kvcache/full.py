"""Baseline: the full key-value cache (the reference every policy is measured against).

Keeps every token: ``score`` returns None and the base never compresses. Attaching it still
routes attention through the policy machinery (with the model's own mask and attention
function), so it also checks that the machinery alone changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tokenworks.kvcache.base import KVPolicy
from tokenworks.registry import register

__all__ = ["FullCache"]


@register("full", family="KV", cite="the uncompressed key-value cache (reference)")
@dataclass(kw_only=True, eq=False)
class FullCache(KVPolicy):
    """Baseline: no eviction. ``budget`` must be 1.0."""

    phase: ClassVar[str] = "never"

    budget: float | int = 1.0

    def validate(self) -> None:
        if self.budget != 1.0 or isinstance(self.budget, int):
            raise ValueError(f"budget must be 1.0 for the full cache (it keeps every token), got {self.budget!r}")

    def score(self, view):
        return None
