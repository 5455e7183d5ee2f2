"""Scenes: g x g grids of real Fashion-MNIST and MNIST items with per-position labels.

A scene of ``grid`` x ``grid`` cells (28 px each: 56 x 56 for 2 x 2, 84 x 84 for 3 x 3) puts
in every cell either nothing (probability ``empty``), a Fashion-MNIST item or an MNIST-5k
digit (half and half). The label of a cell is its class: 0-9 Fashion-MNIST classes, 10-19
digits 0-9, 20 empty (:data:`SCENE_CLASSES`). Items come from the split asked for (the test
scenes use only test images). Scenes are drawn from a ``torch.Generator``, so a seed fixes them.
Empty cells make scenes differ in how much of them repeats (P54's redundancy), and the
position of each item is part of the task, so which tokens a reducer keeps matters.
"""

from __future__ import annotations

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.data.images import DIGIT_CLASSES, FASHION_CLASSES, load_fashion_mnist, load_mnist5k

__all__ = ["EMPTY", "SCENE_CLASSES", "make_scenes"]

SCENE_CLASSES = tuple(FASHION_CLASSES) + tuple(f"digit {d}" for d in DIGIT_CLASSES) + ("empty",)
EMPTY = len(SCENE_CLASSES) - 1


def make_scenes(n: int, *, split: str = "train", grid: int = 2, empty: float = 0.25,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` scenes: images (n, 1, 28 grid, 28 grid) float in [0, 1], labels (n, grid * grid)
    long (row-major cells)."""
    check_int("n", n, min=1)
    check_int("grid", grid, min=1, max=8)
    check_float("empty", empty, min=0.0, max=1.0)
    fashion, digits = load_fashion_mnist(split), load_mnist5k(split)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    cells = n * grid * grid
    kind = torch.rand(cells, generator=g)
    is_empty = kind < empty
    is_digit = ~is_empty & (torch.rand(cells, generator=g) < 0.5)
    fi = torch.randint(0, len(fashion), (cells,), generator=g)
    di = torch.randint(0, len(digits), (cells,), generator=g)
    img = torch.where(is_digit[:, None, None, None], digits.images[di], fashion.images[fi]).float() / 255.0
    img = img.masked_fill(is_empty[:, None, None, None], 0.0)
    labels = torch.where(is_digit, digits.labels[di] + 10, fashion.labels[fi])
    labels = labels.masked_fill(is_empty, EMPTY)
    img = img.view(n, grid, grid, 1, 28, 28).permute(0, 3, 1, 4, 2, 5).reshape(n, 1, 28 * grid, 28 * grid)
    return img.contiguous(), labels.view(n, grid * grid)
