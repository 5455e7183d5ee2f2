"""Baseline: FastV (Chen et al. 2024): prune visual tokens inside the LM by the attention the
last text token paid them at the layer before.

At decoder layer K (the host's ``layer``; FastV uses K = 2) the visual tokens with the least
attention from the last prompt token at layer K - 1 (mean over heads) are dropped for every
later layer; the kept ones keep their original positions. The host
(:mod:`tokenworks.compress.llava_hook`) computes only that one attention row (one query
against all keys) from the layer's normed input, so it works with sdpa, where FastV's code
needs eager attention to read the full attention maps. Before the LM (``layer=0``) there is
no text token yet, so the score falls back to the vision tower's [CLS] attention (then it
behaves like ``cls_attention``).

Checked against the official code (pkunlp-icler/FastV,
``src/transformers/src/transformers/models/llama/modeling_llama.py``, ``LlamaModel.forward``):
at ``idx == fast_v_agg_layer`` (K) it reads ``layer_outputs[1]``, the softmaxed attention
weights returned by layer K - 1 (causal mask included), averages over heads, takes the last
row and its image slice ``[sys_length : sys_length + image_token_length]``, keeps the
``topk(fast_v_attention_rank)`` image tokens and, in the ``fast_v_inplace`` branch, gathers
the hidden states and sets ``position_ids = keep_indexs`` (original positions). Same here:
scored at layer K - 1 (softmax over every real key, then the visual slice), cut before layer
K, original positions kept. Differences: (1) the official code ranks with batch row 0
(``[0]``) and applies that ranking to every row (it is written for batch 1); here every row
is ranked on its own (rows may keep different counts: padding + mask); (2) its default
branch (``fast_v_inplace=False``) masks the dropped tokens in the attention mask instead of
removing them (same outputs, no saving); removing them is its ``inplace`` branch, done here;
(3) its in-place branch says "KV-Cache not supported" and the KV-cache variant
(``modeling_llama_fastv_kvcache.py``) leaves the rotary positions as a "todo"; here decode
steps after a pruned prefill use the cache, with position ids continuing the original
numbering (tests: the prefill against the LM run on the kept tokens at their positions, ``generate``
against a cache-free loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.compress.base import Reducer, TokenView
from tokenworks.registry import register

__all__ = ["FastV"]


@register("fastv", family="CMP", cite="FastV: an image is worth 1/2 tokens after layer 2 (Chen et al. 2024)")
@dataclass(kw_only=True, eq=False)
class FastV(Reducer):
    """Baseline: keep the visual tokens the last text token attends to most (inside the LM)."""

    needs_attention = True
    hosts: ClassVar[tuple[str, ...]] = ("llava",)
    default_layer: ClassVar[int] = 2

    def assign(self, view: TokenView) -> torch.Tensor:
        return self.keep_first(view, self.order_by(view.cls_attention(), view.mask))
