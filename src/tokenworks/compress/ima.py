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
  (nothing is pruned), so the saving is FFN FLOPs only.

Checked against the official code (mshukor/ima-lmms):
- the score: ``Analysing_LLMs/compute_sim.py`` (``compute_sim``) works on per-example token
  means (the hidden states are stored as ``im.mean(1)`` / ``txt.mean(1)`` per layer) and returns
  the cosine of every (visual example, text example) pair plus a ``global_sim``: the cosine
  between the dataset means of the visual and of the text vectors. Here the score is the mean
  over prompts of the *matched* pair (visual and text of the same prompt: the pair matrix's
  diagonal), which is what the paper describes as the alignment of an example's perceptual
  and textual tokens; the all-pairs mean and ``global_sim`` are not computed.
- FFN skipping: ``DePALM/pruning/skipping_llama.py`` with ``skip_mode`` holding
  ``skip_ffn`` and ``prompt`` skips, at every layer ``idx`` with ``start_layer < idx <
  end_layer`` and ``idx % skip_interval == 0``, the FFN *and its post-attention LayerNorm* of
  *all* the first ``prompt_len`` tokens (the visual prompt; text tokens still run it); no
  per-token selection. Deviation here: a per-token choice by measured change (this project's
  reading of "slow-changing"), from layer ``K`` on at every layer, with ``budget`` = the fraction
  of visual tokens that still run the FFN; ``budget`` -> 0 from ``layer`` = start_layer + 1 with
  ``skip_interval`` = 1 is the official rule (all visual FFNs skipped there).
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
