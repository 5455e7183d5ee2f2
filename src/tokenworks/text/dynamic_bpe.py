"""P57 Retrofitting (Large) Language Models with Dynamic Tokenization: batch-level BPE merging.

Mechanism: over the token sequences of one batch, count every adjacent pair of (possibly
already merged) tokens that lies inside a word, merge the most frequent pair everywhere in
the batch, and repeat for ``merges`` steps (BPE, but learned on the batch itself, at inference
time). The merged tokens have no embeddings, so a hypernetwork (P29 ZeTT,
``tw.create("zett")``) predicts them from their parts, or the mean of the parts' embeddings
is used. For a decoder LM the merged sequence is the *prompt* (prefill); generation then
continues with the original tokenizer (``TokenMerger.generate``), as in the paper's prefill
setting. The base ``TokenMerger`` does words, counting, applying, embedding and prefill; this
class picks the pair.

Deviations from the paper and why:
- Word boundaries come from token bytes (a merge never joins across a space or punctuation,
  see ``tokenworks.text.merging``) rather than the tokenizer's pre-tokenizer, so the same rule
  works for any tokenizer and any window cut out of a stream.
- Ties between equally frequent pairs go to the smallest pair of id tuples, so merging is
  deterministic (the paper does not say how ties are broken).
- The paper's approximate-nearest-neighbour output vocabulary for generation with merged
  tokens is not implemented: generation uses the original output embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.checks import check_int
from tokenworks.registry import register
from tokenworks.text.merging import TokenMerger

__all__ = ["DynamicBPE"]


@register("dynamic_bpe", paper="P57")
@dataclass(kw_only=True)
class DynamicBPE(TokenMerger):
    """Batch-level BPE: up to ``merges`` merges of the most frequent in-word pair (count >=
    ``min_count``)."""

    merges: int = 256
    min_count: int = 1

    def validate(self) -> None:
        check_int("min_count", self.min_count, min=1)

    def select(self, counts):
        best = max(counts.values())
        if best < self.min_count:
            return None
        return min(p for p, n in counts.items() if n == best)
