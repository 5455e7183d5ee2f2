"""Prompt-lookup decoding (baseline: Saxena 2023, n-gram drafts copied from the context).

Mechanism. No draft model: the last ``n`` tokens of a row (``n`` from ``max_ngram`` down to
``min_ngram``) are searched in the row's earlier tokens (prompt and generated text); the
``k`` tokens that followed the first match are the draft. A row without a match gets no
draft (a plain decoding step). Verification is the base's exact rule with a deterministic
proposal (greedy: accept while equal to the target's argmax), so the output is the target's.

Matching follows Hugging Face's ``PromptLookupCandidateGenerator`` (first match in the
sequence, longest n-gram first, the draft cut before an EOS), so that its
``generate(prompt_lookup_num_tokens=k)`` is a like-for-like peer; the search is vectorized
per row with ``unfold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.decode.base import ProposeContext, SpeculativeDecoder
from tokenworks.registry import register

__all__ = ["PromptLookup", "lookup"]


def lookup(seq: torch.Tensor, k: int, max_ngram: int, min_ngram: int = 1, eos: set[int] | None = None) -> list[int]:
    """The draft for one row (1-D ``seq``): up to ``k`` tokens after the first earlier match of
    the row's last n-gram (n = max_ngram .. min_ngram), cut before the first EOS; ``[]`` when
    nothing matches."""
    T = seq.numel()
    for n in range(min(max_ngram, T - 1), min_ngram - 1, -1):
        windows = seq.unfold(0, n, 1)  # (T - n + 1, n)
        hits = (windows == seq[-n:]).all(1).nonzero()[:, 0]
        for i in hits.tolist():
            start, end = i + n, min(i + n + k, T)
            if start < end:
                draft = seq[start:end].tolist()
                cut = next((j for j, t in enumerate(draft) if eos and t in eos), None)
                return draft if cut is None else draft[:cut]
    return []


@register("prompt_lookup", family="SPEC", cite="Saxena 2023, prompt lookup decoding")
@dataclass(kw_only=True)
class PromptLookup(SpeculativeDecoder):
    """Baseline: n-gram drafts looked up in the row's own context; no draft model."""

    needs_draft = False
    k: int = 10
    max_ngram: int = 2
    min_ngram: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("max_ngram", self.max_ngram, min=1)
        check_int("min_ngram", self.min_ngram, min=1, max=self.max_ngram)

    def propose(self, ctx: ProposeContext):
        B = len(ctx.history)
        drafts = torch.zeros(B, self.k, dtype=torch.long, device=ctx.device)
        lengths = torch.zeros(B, dtype=torch.long, device=ctx.device)
        for b in range(B):
            if not ctx.active[b]:
                continue
            d = lookup(torch.tensor(ctx.history[b]), self.k, self.max_ngram, self.min_ngram, ctx.eos)
            if d:
                drafts[b, : len(d)] = torch.tensor(d, device=ctx.device)
                lengths[b] = len(d)
        return drafts, lengths, None
