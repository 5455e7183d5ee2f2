"""P47 When Does Metadata Conditioning (NOT) Work for Language Model Pre-Training? (Higuchi et
al. 2025): pre-train with a metadata prefix naming each document's latent rule set.

The mechanism is in the data: every training row starts with ``prefix_len`` metadata tokens
(here one token naming the PCFG rule set, :meth:`tokenworks.data.PCFGFamily.meta_token`)
followed by the document; the metadata tokens are inputs only, never targets (the loss mask
drops the targets that are themselves metadata: the first ``prefix_len - 1`` of them; with a
one-token prefix the first target is the document's first token, predicted *from* the
metadata). At test time the downstream prompt carries no metadata: the model must infer the
rule set from the context, which is where the paper finds that metadata training helps only
once the context is long enough and hurts below that (measured by the ``lm-tokens`` suite).

:meth:`MetadataPrefix.add_prefix` builds the rows; the control (``standard_lm``) trains on the
same documents, same length, without the prefix. Deviations: see
:mod:`tokenworks.data.pcfg` (the grammars).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int, check_tensor
from tokenworks.registry import register
from tokenworks.text.lm_variant import LMVariant

__all__ = ["MetadataPrefix"]


@register("metadata_prefix", paper="P47")
@dataclass(kw_only=True)
class MetadataPrefix(LMVariant):
    """Metadata tokens before each training document, out of the loss (see the module docstring)."""

    prefix_len: int = 1

    def __post_init__(self) -> None:
        check_int("prefix_len", self.prefix_len, min=1, max=4096)

    def add_prefix(self, docs: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        """Rows of the same length as ``docs`` (B, L): ``meta`` (B, prefix_len) then the
        document's first ``L - prefix_len`` tokens."""
        check_tensor("docs", docs, ndim=2, floating=False)
        check_tensor("meta", meta, shape=(docs.shape[0], self.prefix_len), floating=False)
        if docs.shape[1] <= self.prefix_len:
            raise ValueError(f"docs must be longer than prefix_len ({self.prefix_len}), got shape {tuple(docs.shape)}")
        return torch.cat([meta, docs[:, : docs.shape[1] - self.prefix_len]], dim=1)

    def loss_mask(self, batch: torch.Tensor) -> torch.Tensor | None:
        mask = torch.ones(batch.shape[0], batch.shape[1] - 1, dtype=torch.bool, device=batch.device)
        mask[:, : self.prefix_len - 1] = False  # targets that are metadata tokens
        return mask
