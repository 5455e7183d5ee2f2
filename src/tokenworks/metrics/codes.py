"""Codebook statistics over token indices.

Codebook usage and perplexity count codes over a whole set of images and can hide a
degenerate tokenizer that puts almost every position of an image on the same code (issue 8:
1.3 distinct codes per image behind 60% codebook usage). ``distinct_codes_per_image``,
``position_entropy`` and ``top_code_share`` look for that collapse.

Token codes: ``indices`` of shape (B, N) give one code per token; (B, N, G) give G entries per
token (residual levels, bit groups) and the token's code is the tuple of its G entries.
"""

from __future__ import annotations

import torch

from tokenworks.checks import check_int, check_tensor

__all__ = [
    "code_histogram",
    "codebook_perplexity",
    "codebook_usage",
    "distinct_codes_per_image",
    "position_entropy",
    "top_code_share",
]


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


def _token_codes(indices: torch.Tensor) -> torch.Tensor:
    """(B, N) or (B, N, G) indices -> (B, N) ids, equal iff the tokens' codes (tuples) are equal."""
    check_tensor("indices", indices, ndim=(2, 3), floating=False)
    if indices.shape[0] < 1 or indices.shape[1] < 1:
        raise ValueError(f"indices must hold at least one image and one token, got shape {tuple(indices.shape)}")
    if indices.ndim == 2:
        return indices.long()
    b, n, g = indices.shape
    _, ids = torch.unique(indices.reshape(b * n, g).long(), dim=0, return_inverse=True)
    return ids.reshape(b, n)


def distinct_codes_per_image(indices: torch.Tensor) -> float:
    """Mean over images of the number of distinct token codes among an image's N tokens
    (1 = every position of an image carries the same code; N = all different)."""
    ids = _token_codes(indices).sort(dim=1).values  # (B, N)
    distinct = 1 + (ids[:, 1:] != ids[:, :-1]).sum(1)  # (B,)
    return float(distinct.double().mean())


def position_entropy(indices: torch.Tensor) -> float:
    """Mean over token positions of the entropy (bits) of the code at that position across the
    B images: 0 = the position carries the same code in every image (it tells nothing about the
    image), log2(B) at most."""
    ids = _token_codes(indices)  # (B, N)
    b, n = ids.shape
    pos = torch.arange(n, device=ids.device).expand(b, n)
    pairs, counts = torch.unique(torch.stack([pos.reshape(-1), ids.reshape(-1)], 1), dim=0, return_counts=True)
    p = counts.double() / b
    ent = torch.zeros(n, dtype=torch.double, device=ids.device).index_add_(0, pairs[:, 0], -p * p.log2())
    return float(ent.mean())


def top_code_share(indices: torch.Tensor) -> float:
    """Share of all tokens that carry the single most used token code."""
    ids = _token_codes(indices).reshape(-1)
    _, counts = torch.unique(ids, return_counts=True)
    return float(counts.max()) / ids.numel()

