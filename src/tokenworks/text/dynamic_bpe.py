"""P57 Retrofitting (Large) Language Models with Dynamic Tokenization: batch-level BPE merging.

Mechanism: over the token sequences of one batch, count every adjacent pair of (possibly
already merged) tokens that lies inside one pre-token of the tokenizer, merge the most frequent
pair everywhere in the batch, and repeat for ``merges`` steps (BPE, but learned on the batch
itself, at inference time). The merged tokens have no embeddings, so a hypernetwork (P29 ZeTT,
``tw.create("zett")``) predicts them from their parts, or the mean of the parts' embeddings
is used. For a decoder LM the merged sequence is the *prompt* (prefill); generation then
continues with the original tokenizer (``TokenMerger.generate``), as in the paper's prefill
setting. The base ``TokenMerger`` (``tokenworks.text.merging``) does boundaries, vectorized
counting and applying, embedding and prefill; this class picks the pair.

What follows the official code (``tokenizations/dynamic_bpe.py`` and
``tokenizations/tokenization_utils.py`` of the dynamic-tokenization repository):
- Word boundaries from the tokenizer's own pre-tokenizer (its default ``"pretokens"``
  boundary): a merge never crosses a pre-token.
- Ties between equally frequent pairs go to the pair seen first in the batch (sequence by
  sequence, left to right), which is what the official ``max`` over a ``Counter`` returns.
- Embeddings: with the default ``unmerged="transfer"`` every token of the dynamically tokenized
  batch, merged or not, gets its embedding from the hypernetwork (or the mean of its parts,
  which for a single token is its own embedding); special tokens keep the model's own, as in
  the official code. ``unmerged="original"`` keeps the model's own embedding for every token
  left alone (only merged units are predicted); the benchmark reports both for ZeTT.

Deviations from the official code and why:
- Boundaries are decided on the whole sequence's text, in context; the official code asks the
  pre-tokenizer about each candidate pair's string in isolation (``pre_tokenize_str(a + b)``
  gives one piece), which can allow a merge the tokenizer itself would never make in context
  and needs its own whitespace heuristics. A boundary inside a multi-byte character is always
  joinable (the official code also allows pairs that are not valid UTF-8).
- Merged units are identified by their id tuples, not their strings, so two different id
  sequences spelling the same bytes stay distinct units.
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
    """Batch-level BPE: up to ``merges`` merges of the most frequent in-pre-token pair (count
    >= ``min_count``); ``unmerged``: embeddings of tokens left alone ("transfer" as in the
    paper, or "original")."""

    merges: int = 256
    min_count: int = 1
    unmerged: str = "transfer"

    def validate(self) -> None:
        check_int("min_count", self.min_count, min=1)

    def select(self, counts, first):
        best = int(counts.max())
        if best < self.min_count:
            return None
        tied = (counts == best).nonzero().squeeze(1)
        return int(tied[first[tied].argmin()])
