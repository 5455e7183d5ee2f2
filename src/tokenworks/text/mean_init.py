"""Baseline: mean of constituent embeddings (FVT, Gee et al. 2022, "Fast Vocabulary Transfer
for Language Model Compression"), the heuristic initialization ZeTT (P29) is compared with.

A new token's input (and output) embedding is the mean of the source embeddings of the
source tokens that spell it. A token the source vocabulary already has is spelled by itself,
so transferring onto the source tokenizer reproduces the model exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.registry import register
from tokenworks.text.transfer import EmbeddingTransfer

__all__ = ["MeanInit", "pad_parts"]


def pad_parts(parts, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, P) with 0 in padding, mask (N, P) True on real parts) for N decompositions."""
    P = max(len(p) for p in parts)
    ids = torch.zeros((len(parts), P), dtype=torch.long)
    mask = torch.zeros((len(parts), P), dtype=torch.bool)
    for k, p in enumerate(parts):
        ids[k, : len(p)] = torch.tensor(p, dtype=torch.long)
        mask[k, : len(p)] = True
    return ids.to(device), mask.to(device)


@register("mean_init", family="TXT", cite="Gee et al. 2022, Fast Vocabulary Transfer (mean of subword embeddings)")
@dataclass(kw_only=True)
class MeanInit(EmbeddingTransfer):
    """Baseline: each new embedding is the mean of its constituents' source embeddings."""

    def predict(self, parts, source_in, source_out):
        ids, mask = pad_parts(parts, source_in.device)
        w = mask.to(source_in.dtype) / mask.sum(1, keepdim=True)  # (N, P)

        def mean(e: torch.Tensor) -> torch.Tensor:
            return torch.einsum("np,npd->nd", w, e[ids])

        return mean(source_in), (None if source_out is None else mean(source_out))
