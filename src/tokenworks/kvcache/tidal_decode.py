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

Deviations: the selection is made per query head over all held tokens from the masked
pre-softmax scores, as in the authors' Hugging Face reference; their fused top-k kernels are
replaced by ``torch.sort`` in the base and a plain gather + attention (no kernel here is
faster on CPU). A decoding forward of more than one token uses full attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.checks import check_int
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

    def validate(self) -> None:
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
        if sel >= num_layers - 1:
            raise ValueError(
                f"selection_layer={sel} leaves no sparse layer in a {num_layers}-layer model; "
                f"it must be <= {num_layers - 2}"
            )
        if resel is not None and not sel < resel < num_layers:
            raise ValueError(f"reselection_layer={resel} must be in ({sel}, {num_layers}) for a {num_layers}-layer model")

    def score(self, view: LayerView) -> torch.Tensor | None:
        if view.prefill or view.query.shape[2] != 1:
            return None
        sel, resel = self.layers(view.num_layers)
        if view.layer < sel:
            return None
        if view.layer in (sel, resel):
            view.shared["tidal_scores"] = view.logits(last=1)[:, :, 0]  # (B, H, K)
            return None
        return view.shared["tidal_scores"]
