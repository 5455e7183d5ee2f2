"""Greedy draft-verify (baseline; the deterministic-draft special case of Leviathan et al. 2023,
as in Stern et al. 2018's blockwise parallel decoding and HF's assisted generation).

Mechanism. The draft model proposes its ``k`` argmax tokens; the target accepts the longest
prefix that it would also have produced. Greedy decoding (``do_sample=False``): accept while
a draft equals the target's argmax, then emit the target's argmax (output identical to the
target's greedy output). Sampling: the proposal is deterministic (``q`` is one-hot), so exact
speculative sampling accepts draft ``x`` with probability ``p(x)`` and on rejection samples
from ``p`` with ``x`` removed: still exactly the target's distribution, with a lower
acceptance than sampling the draft. The loop, caches and rollback are the base's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.decode.base import ProposeContext, SpeculativeDecoder
from tokenworks.registry import register

__all__ = ["GreedyDraft"]


@register("greedy_draft", family="SPEC", cite="Stern et al. 2018; Leviathan et al. 2023, greedy draft-verify")
@dataclass(kw_only=True)
class GreedyDraft(SpeculativeDecoder):
    """Baseline: the draft's argmax tokens, verified against the target (deterministic proposal)."""

    def propose(self, ctx: ProposeContext):
        drafts, _ = self.draft_tokens(ctx, greedy_draft=True)
        return drafts, ctx.active.long() * self.k, None
