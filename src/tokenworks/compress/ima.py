"""P59 IMA (Shukor & Cord, "Implicit multimodal alignment: on the generalization of frozen
LLMs to multimodal inputs"): perceptual and textual tokens inside a frozen LM.

Two pieces:
- :func:`alignment_scores`: per LM layer, the implicit alignment score: the cosine
  similarity between a prompt's mean visual-token hidden state and its mean text-token hidden
  state, averaged over prompts (the paper's measure between perceptual and textual
  representations of the same example; it reports that the score grows with depth and
  correlates with task performance across models/checkpoints). The suite correlates it with
  accuracy over checkpoints saved during training (assets/compress/scene-vlm/ckpt-*).
- :class:`IMAFFNSkip`: compute skipping: visual tokens change slowly across the LM's layers,
  so from layer ``K`` on, only the ``budget`` fraction of visual tokens that changed most in
  the previous layer (1 - cosine(input, output) of layer i - 1) run layer i's FFN; the others
  skip it (their residual stream passes unchanged through the FFN). Every token is kept
  (nothing is pruned), so the saving is FFN FLOPs only. Deviations: the paper skips the FFN
  (and attention) of all visual tokens at chosen layers; choosing by measured change is this
  project's reading of "slow-changing"; the official code (mshukor/ima-lmms) was not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["IMAFFNSkip", "alignment_scores"]


@register("ima_ffn_skip", paper="P59")
@dataclass(kw_only=True, eq=False)
class IMAFFNSkip(Reducer):
    """P59: skip the FFN of the visual tokens that changed least (inside the LM, from layer K)."""

    needs_attention = True  # the host hands the per-token change as the score
    skips_ffn: ClassVar[bool] = True
    hosts: ClassVar[tuple[str, ...]] = ("llava",)
    default_layer: ClassVar[int] = 1

    def assign(self, view: TokenView) -> torch.Tensor:
        return self.keep_first(view, self.order_by(view.cls_attention(), view.mask))


@torch.no_grad()
def alignment_scores(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """(layers + 1,) P59's implicit alignment score per hidden state of the LM (0 = input embeddings)."""
    image = model.config.image_token_index
    total = None
    for px, ids in zip(pixel_values.split(batch), input_ids.split(batch)):
        hs = model(input_ids=ids, pixel_values=px, output_hidden_states=True).hidden_states
        img = (ids == image).float()[..., None]
        txt = 1.0 - img
        txt[:, 0] = 0.0  # <bos> is neither
        s = []
        for h in hs:
            v = (h * img).sum(1) / img.sum(1)
            t = (h * txt).sum(1) / txt.sum(1)
            s.append(F.cosine_similarity(v.float(), t.float(), dim=-1).sum())
        s = torch.stack(s)
        total = s if total is None else total + s
    return total / len(input_ids)
