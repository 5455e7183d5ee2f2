"""SPEC: speculative and routed decoding over Hugging Face causal LMs.

- :class:`SpeculativeDecoder` (``base``): ``propose`` / ``verify`` hooks; the base runs the
  loop with both models' ``DynamicCache`` (rollback, left-padded batches, greedy/sampling).
- baselines: ``spec_sampling`` (exact speculative sampling), ``greedy_draft``, ``prompt_lookup``.
- ``lantern`` (P17): relaxed acceptance over latent-neighbour image codes; ``image_ar`` holds
  its class-conditional image-token model pair.
- ``flash`` (P31): a draft head over learned-query-compressed visual tokens proposing k tokens
  per pass; ``caption_vlm`` holds the tiny captioning VLM it drafts for.
- ``r2r`` (P62): a small model generates, a router sends divergent tokens to the large one.
- ``large_lm``: the large LM of the family's model pair (the reference LM grown and trained).
"""

from tokenworks.decode.base import DecodeOutput, DecodeStats, ProposeContext, SpeculativeDecoder, exact_verify
from tokenworks.decode.greedy_draft import GreedyDraft
from tokenworks.decode.prompt_lookup import PromptLookup
from tokenworks.decode.speculative_sampling import SpeculativeSampling

__all__ = [
    "DecodeOutput",
    "DecodeStats",
    "GreedyDraft",
    "PromptLookup",
    "ProposeContext",
    "SpeculativeDecoder",
    "SpeculativeSampling",
    "exact_verify",
]

from tokenworks.decode.r2r import R2R, Router  # noqa: E402

__all__ += ["R2R", "Router"]

from tokenworks.decode.lantern import Lantern, latent_neighbours  # noqa: E402

__all__ += ["Lantern", "latent_neighbours"]

from tokenworks.decode.flash import Flash, FlashHead  # noqa: E402

__all__ += ["Flash", "FlashHead"]
