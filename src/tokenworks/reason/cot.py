"""Baselines: chain-of-thought (CoT) and direct answer (no CoT), decoded with the reasoner loop.

Baseline (no paper of the index introduces them): CoT supervision (Wei et al. 2022) trains the
model on ``question <bot> steps <eot> answer``; the no-CoT model on ``question <bot> <eot>
answer``. Both reason only in tokens: ``latent_steps`` must be 0 and the loop decodes greedily
(the output equals the model's own ``generate``). The difference is the model they run on.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.reason.base import Reasoner
from tokenworks.registry import register

__all__ = ["ChainOfThought", "NoChainOfThought"]


@dataclass(kw_only=True)
class _TokensOnly(Reasoner):
    uses_latents = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_steps != 0:
            raise ValueError(f"latent_steps: {type(self).__name__} reasons in tokens only, so it must be 0, got {self.latent_steps}")


@register("cot", family="LAT", cite="Wei et al. 2022, chain-of-thought supervision")
@dataclass(kw_only=True)
class ChainOfThought(_TokensOnly):
    """Baseline: the CoT model writes its steps as tokens, then the answer."""


@register("no_cot", family="LAT", cite="direct answer (no chain of thought)")
@dataclass(kw_only=True)
class NoChainOfThought(_TokensOnly):
    """Baseline: the no-CoT model answers right after ``<bot>``."""
