"""Point-cloud reconstruction metrics: Chamfer distance and F-score (as 3D tokenizer papers,
VAT among them, report them).

Both take batches of clouds ``pred`` (B, N, 3) and ``target`` (B, M, 3) and return (B,) tensors;
distances are exact (all pairs, ``torch.cdist``), chunked over the batch.
"""

from __future__ import annotations

import torch

from tokenworks.checks import check_float, check_tensor

__all__ = ["chamfer_distance", "f_score", "nearest_distances"]


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    check_tensor("pred", pred, ndim=3, floating=True)
    check_tensor("target", target, ndim=3, floating=True)
    if pred.shape[0] != target.shape[0] or pred.shape[-1] != target.shape[-1]:
        raise ValueError(f"pred and target must be (B, N, D) and (B, M, D) with the same B and D, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[1] < 1 or target.shape[1] < 1:
        raise ValueError(f"pred and target must hold at least one point each, got {tuple(pred.shape)} and {tuple(target.shape)}")


def nearest_distances(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each pred point to its nearest target point (B, N), and from
    each target point to its nearest pred point (B, M)."""
    _check(pred, target)
    d = torch.cdist(pred.double(), target.double())  # (B, N, M)
    return d.min(2).values, d.min(1).values


def chamfer_distance(pred: torch.Tensor, target: torch.Tensor, *, squared: bool = True) -> torch.Tensor:
    """mean_pred min_target d + mean_target min_pred d, with d the squared Euclidean distance
    (``squared=True``, the usual L2 Chamfer) or the Euclidean distance. (B,)"""
    a, b = nearest_distances(pred, target)
    if squared:
        a, b = a.pow(2), b.pow(2)
    return (a.mean(1) + b.mean(1)).float()


def f_score(pred: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.05) -> torch.Tensor:
    """F-score at distance ``threshold``: harmonic mean of precision (share of pred points within
    ``threshold`` of the target) and recall (share of target points within it of pred); 0 when
    both are 0. (B,)"""
    check_float("threshold", threshold, min=0.0, min_open=True)
    a, b = nearest_distances(pred, target)
    precision, recall = (a <= threshold).double().mean(1), (b <= threshold).double().mean(1)
    denom = precision + recall
    return torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), 0.0).float()
