"""P45 TidalDecode: Fast and Accurate LLM Decoding with Position Persistent Sparse Attention
(Yang et al. 2024).

Mechanism. Sparse attention during decoding, with token selection done in very few layers:
layers below ``selection_layer`` use full attention; the selection layer also uses full
attention and, from its attention scores, picks for each query head the top-``budget``
positions; the following layers attend only to those positions (the same positions, hence
"position persistent"); one ``reselection_layer`` recomputes the selection with full
attention for the layers after it. Nothing is evicted: the cache keeps every token, attention
reads only the selected ones. The prefill uses full attention everywhere.

Defaults follow the paper's choice for 32-layer Llama (selection at layer 2, re-selection at
layer 13) scaled to the model's depth: ``selection_layer = max(1, round(L * 2 / 32))`` and
``reselection_layer = max(selection + 2, round(L * 13 / 32))`` when that is a valid layer.

The hot path (one decoding token). At a selection layer the policy computes that layer's
attention itself, once: logits of each query head against its own kv head's keys (a grouped
matmul, no ``repeat_interleave`` of the cache), softmax and the weighted sum of values in the
model's dtype; the same logits give the selection by ``torch.topk``. A sparse layer gathers,
for each query head, its selected slots straight from its kv head's keys and values (one
``index_select`` on the flattened cache) and runs ``scaled_dot_product_attention`` on them.
Sizes come from counts kept on the host, so no layer waits on the device.

``select_per="kv_head"`` (an option, not the paper's default) selects per kv head by the
largest logit over its query heads, so a sparse layer of a grouped-query model reads
``budget`` tokens per kv head instead of per query head: with 4 query heads per kv head at a
25% budget, per-query-head selection reads as many keys and values as dense attention.

Deviations: the selection is made per query head over all held tokens from the masked
pre-softmax scores, as in the authors' Hugging Face reference; their fused top-k kernels are
replaced by ``torch.topk`` and a gather + ``scaled_dot_product_attention``. A decoding forward
of more than one token uses full attention. In hybrid models (Gemma2/3) only full-attention
layers select or attend sparsely; the selection layers must be full-attention layers.
Budget: TidalDecode evicts nothing, so it *holds* the whole cache; ``budget`` is what each
sparse layer *reads* (its attention bytes per token), not what is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.checks import check_choice, check_int
from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["TidalDecode"]


@register("tidal_decode", paper="P45")
@dataclass(kw_only=True, eq=False)
class TidalDecode(KVPolicy):
    """P45: full attention + top-k selection at one layer, reused by the following layers."""

    evicts: ClassVar[bool] = False
    phase: ClassVar[str] = "decode"

    selection_layer: int | None = None
    reselection_layer: int | str | None = "auto"
    select_per: str = "query_head"

    def validate(self) -> None:
        check_choice("select_per", self.select_per, ("query_head", "kv_head"))
        if self.selection_layer is not None:
            check_int("selection_layer", self.selection_layer, min=0)
        if self.reselection_layer not in (None, "auto"):
            check_int("reselection_layer", self.reselection_layer, min=1)

    def layers(self, num_layers: int) -> tuple[int, int | None]:
        """(selection layer, re-selection layer or None) for a model of ``num_layers`` layers."""
        sel = self.selection_layer if self.selection_layer is not None else max(1, round(num_layers * 2 / 32))
        if self.reselection_layer == "auto":
            r = max(sel + 2, round(num_layers * 13 / 32))
            resel = r if r < num_layers else None
        else:
            resel = self.reselection_layer
        return sel, resel

    def on_attach(self, model, num_layers: int) -> None:
        sel, resel = self.layers(num_layers)
        for name, i in (("selection_layer", sel), ("reselection_layer", resel)):
            if i is not None and i < num_layers and i not in self._managed:
                full = sorted(self._managed)
                raise ValueError(f"{name}={i} is a sliding-window layer of this model; choose a full-attention layer: {full}")
        if sel >= num_layers - 1:
            raise ValueError(
                f"selection_layer={sel} leaves no sparse layer in a {num_layers}-layer model; "
                f"it must be <= {num_layers - 2}"
            )
        if resel is not None and not sel < resel < num_layers:
            raise ValueError(f"reselection_layer={resel} must be in ({sel}, {num_layers}) for a {num_layers}-layer model")

    def score(self, view: LayerView) -> torch.Tensor | None:
        """The selection's scores for this layer: (B, H, K), or None for full attention."""
        if view.prefill or view.query.shape[2] != 1:
            return None
        sel, resel = self.layers(view.num_layers)
        if view.layer < sel or view.layer in (sel, resel):
            return None
        return view.shared.get("tidal_scores")

    def sparse_attend(self, view: LayerView):
        if view.prefill or view.query.shape[2] != 1:
            return None
        if all(c >= n for c, n in zip(view.cap_host, view.n_valid)):  # the budget covers every held token
            return None
        sel, resel = self.layers(view.num_layers)
        if view.layer < sel:
            return None
        if view.layer in (sel, resel):
            return self._select_and_attend(view)
        scores = view.shared.get("tidal_scores")
        if scores is None:
            return None
        idx, sel_valid, everything = self._select(view, scores)
        if everything:
            return None
        return self._sparse_attention(view, idx, sel_valid, view.layer)

    def _select_and_attend(self, view: LayerView):
        """Full attention of a selection layer, computed once per kv-head group; its logits are
        the selection's scores."""
        q, keys, values = view.query, view.keys, view.values
        B, H, _, D = q.shape
        Hkv, K = keys.shape[1], keys.shape[2]
        qg = q.view(B, Hkv, view.groups, D)
        logits = torch.matmul(qg, keys.transpose(2, 3)) * view.scaling  # (B, Hkv, G, K)
        if view.softcap:
            logits = torch.tanh(logits / view.softcap) * view.softcap
        if view.n_valid != [K] * B:
            logits = logits.masked_fill(~view.valid[:, :, None, :], float("-inf"))
        w = torch.softmax(logits, dim=-1, dtype=torch.float32).to(values.dtype)
        out = torch.matmul(w, values).view(B, H, 1, -1).transpose(1, 2).contiguous()  # (B, 1, H, Dv)
        # per kv head: the group's largest logit per token (a token any of its query heads wants)
        view.shared["tidal_scores"] = logits.amax(2) if self.select_per == "kv_head" else logits.view(B, H, K)
        return out, None
