"""Exact speculative sampling (baseline: Leviathan et al. 2023; Chen et al. 2023).

Mechanism. A small draft model samples ``k`` tokens ``x_i ~ q_i``; the target scores all of
them in one forward, giving ``p_1 .. p_{k+1}``; draft ``x_i`` is accepted with probability
``min(1, p_i(x_i) / q_i(x_i))``; at the first rejection a token is drawn from
``norm(max(0, p_i - q_i))``; after k acceptances a bonus token is drawn from ``p_{k+1}``. Every
generated token is then distributed exactly as the target's own sampling would distribute it
(tested with a chi-square test), and the expected acceptance of one draft is
``sum_x min(p(x), q(x))`` (tested). With ``do_sample=False`` the draft drafts greedily and
acceptance is "equals the target's argmax", so the output equals the target's greedy output.
The loop, caches and rollback are the base's (``tokenworks.decode.base``).

No deviation from the papers' algorithm; temperature scales both models' logits alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.decode.base import ProposeContext, SpeculativeDecoder
from tokenworks.registry import register

__all__ = ["SpeculativeSampling"]


@register("spec_sampling", family="SPEC", cite="Leviathan et al. 2023; Chen et al. 2023, speculative sampling")
@dataclass(kw_only=True)
class SpeculativeSampling(SpeculativeDecoder):
    """Baseline: draft model samples k tokens, exact rejection sampling against the target."""

    def propose(self, ctx: ProposeContext):
        drafts, q = self.draft_tokens(ctx)
        return drafts, ctx.active.long() * self.k, q
