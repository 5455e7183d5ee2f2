"""Generation metrics on feature sets: improved precision / recall and FLOPs counting.

Improved precision and recall (Kynkaanniemi et al. 2019): each real feature gets a ball whose
radius is the distance to its k-th nearest other real feature; precision is the fraction of
generated features inside at least one real ball, recall the fraction of real features inside
at least one generated ball (radii from the generated set). Features are the frozen
Fashion-MNIST classifier's (the same space as ``fd_local``; not Inception).
FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from tokenworks.checks import check_int, check_tensor

__all__ = ["count_flops", "knn_radii", "precision_recall"]


def knn_radii(features: torch.Tensor, k: int = 3, batch_size: int = 2048) -> torch.Tensor:
    """Distance from each row of features (N, D) to its k-th nearest *other* row, (N,)."""
    check_tensor("features", features, ndim=2, floating=True)
    check_int("k", k, min=1)
    if features.shape[0] <= k:
        raise ValueError(f"features needs more than k={k} rows, got {features.shape[0]}")
    f = features.double()
    out = []
    for chunk in f.split(batch_size):
        d = torch.cdist(chunk, f)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (distance 0)
    return torch.cat(out)


def _coverage(ref: torch.Tensor, radii: torch.Tensor, query: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Fraction of query rows within radii[j] of some ref row j."""
    hits = []
    for chunk in query.double().split(batch_size):
        hits.append((torch.cdist(chunk, ref.double()) <= radii[None]).any(1))
    return torch.cat(hits).double().mean()


def precision_recall(real: torch.Tensor, generated: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of ``generated`` (M, D) against ``real`` (N, D) features."""
    check_tensor("real", real, ndim=2, floating=True)
    check_tensor("generated", generated, ndim=2, floating=True)
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real and generated must have the same feature dim, got {real.shape[1]} and {generated.shape[1]}")
    precision = _coverage(real, knn_radii(real, k), generated)
    recall = _coverage(generated, knn_radii(generated, k), real)
    return float(precision), float(recall)


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` under ``torch.utils.flop_counter`` -> (its result, total FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, int(counter.get_total_flops())
