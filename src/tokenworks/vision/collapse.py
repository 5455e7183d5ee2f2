"""Per-image code statistics that expose positional collapse (vision-local until the shared
``tokenworks.metrics.codes`` versions land).

Codebook usage counts codes over a whole test set, so a tokenizer that writes the same code at
every position of an image (and varies only one token between images) still looks healthy.
These look inside each image and at each position:

- ``distinct_codes_per_image(ids)``: mean over images of the number of different codes among
  the image's tokens (a grouped id ``(N, T, G)`` counts as one code per token: its G-tuple);
  1.0 means every token of an image is the same code;
- ``position_entropy(ids)``: mean over token positions of the entropy (bits) of the code
  at that position across images; 0 means a position always holds the same code;
- ``top_code_share(ids)``: the share of all tokens that are the single most frequent code.
"""

from __future__ import annotations

import torch

from tokenworks.checks import check_tensor

__all__ = ["distinct_codes_per_image", "position_entropy", "token_codes", "top_code_share"]


def token_codes(ids: torch.Tensor) -> torch.Tensor:
    """(N, T) or (N, T, G) ids -> (N, T) int64, one code per token (G-tuples mapped to integers)."""
    check_tensor("ids", ids, ndim=(2, 3), floating=False)
    if ids.ndim == 2:
        return ids.long()
    _, inverse = torch.unique(ids.reshape(-1, ids.shape[-1]).long(), dim=0, return_inverse=True)
    return inverse.reshape(ids.shape[0], ids.shape[1])


def distinct_codes_per_image(ids: torch.Tensor) -> float:
    codes = token_codes(ids)
    srt = codes.sort(dim=1).values
    return float((1 + (srt[:, 1:] != srt[:, :-1]).sum(1)).double().mean())


def position_entropy(ids: torch.Tensor) -> float:
    codes = token_codes(ids)
    ents = []
    for t in range(codes.shape[1]):
        p = torch.bincount(codes[:, t]).double()
        p = p[p > 0] / p.sum()
        ents.append(float(-(p * p.log2()).sum()))
    return sum(ents) / len(ents)


def top_code_share(ids: torch.Tensor) -> float:
    codes = token_codes(ids).reshape(-1)
    return float(torch.bincount(codes).max()) / codes.numel()
