"""Generation metrics: improved precision/recall against a brute-force k-NN loop, fd_local of a
set against itself, FLOPs of a known matmul."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenworks.metrics import count_flops, knn_radii, precision_recall


def _brute_pr(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        out = []
        for i in range(len(x)):
            d = sorted(float(np.sqrt(((x[i] - x[j]) ** 2).sum())) for j in range(len(x)) if j != i)
            out.append(d[k - 1])
        return out

    def cover(ref, r, q):
        hit = 0
        for y in q:
            hit += any(np.sqrt(((y - ref[j]) ** 2).sum()) <= r[j] for j in range(len(ref)))
        return hit / len(q)

    return cover(real, radii(real), gen), cover(gen, radii(gen), real)


@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_matches_brute_force_knn(k):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    gen = rng.normal(loc=0.7, scale=0.6, size=(45, 5))
    p, r = precision_recall(torch.tensor(real), torch.tensor(gen), k=k)
    bp, br = _brute_pr(real, gen, k)
    assert p == pytest.approx(bp) and r == pytest.approx(br)
    assert 0 < p < 1 and 0 < r < 1


def test_precision_recall_extremes_and_errors():
    x = torch.randn(50, 4)
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)
    far = x + 100
    assert precision_recall(x, far, k=3) == (0.0, 0.0)
    with pytest.raises(ValueError, match="feature dim"):
        precision_recall(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="k="):
        knn_radii(torch.randn(3, 2), k=3)


def test_fd_local_of_a_sample_against_itself_is_zero():
    from tokenworks.data import load_images
    from tokenworks.models.classifier import fd_local

    x = load_images("fashion-mnist", "test").take(300).float()
    assert fd_local(x, x.clone()) < 1e-6
    assert fd_local(x, torch.rand_like(x)) > 10 * (fd_local(x, x.clone()) + 1)


def test_count_flops_of_a_matmul():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    out, flops = count_flops(lambda: a @ b)
    assert flops == 2 * 8 * 16 * 4 and torch.allclose(out, a @ b)
