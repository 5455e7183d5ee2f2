"""Codebook statistics over token indices."""

from __future__ import annotations

import torch

from tokenworks.checks import check_int, check_tensor

__all__ = ["code_histogram", "codebook_perplexity", "codebook_usage"]


def code_histogram(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Counts of each code (length ``codebook_size``) over all entries of ``indices``."""
    check_tensor("indices", indices, floating=False)
    check_int("codebook_size", codebook_size, min=1)
    flat = indices.reshape(-1).long()
    if flat.numel() and (flat.min() < 0 or flat.max() >= codebook_size):
        raise ValueError(f"indices must be in [0, {codebook_size}), got [{flat.min()}, {flat.max()}]")
    return torch.bincount(flat, minlength=codebook_size)


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> float:
    """Share of the codebook that occurs at least once in ``indices``."""
    return float((code_histogram(indices, codebook_size) > 0).float().mean())


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code distribution: 1 = one code used, codebook_size = uniform."""
    h = code_histogram(indices, codebook_size).double()
    p = h / h.sum().clamp_min(1)
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return float(ent.exp())
