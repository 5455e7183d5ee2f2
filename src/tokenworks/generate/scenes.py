"""2x2 same-class scenes: a 14x14 token grid from the committed 7x7-grid tokenizer.

A scene tiles ``tiles x tiles`` Fashion-MNIST images of one class (56x56 for 2x2); its tokens
are the ``patch2d-7x7`` ids of each item placed at the item's place in one (7 tiles)^2 raster
grid, so a raster generator over the scene sees 196 tokens on a 14x14 grid, and windows of
neighbouring tokens (Token-Shuffle, P58) are spatial neighbours, also across item borders.
:class:`TiledTokenizer` wraps the item tokenizer (``encode``/``decode`` of whole scenes);
:func:`scene_items` cuts scenes back into items for the per-item metrics (fd_local, class
accuracy of the frozen classifier), each item labelled with the scene's class.

Choice: tiling instead of a tokenizer trained on 56x56 images (none is committed and the asset
budget is spent); all four items share the class so that the class label conditions all of them.
"""

from __future__ import annotations

import torch
from einops import rearrange

from tokenworks.checks import check_int

__all__ = ["TiledTokenizer", "same_class_scenes", "scene_items", "tile_ids", "untile_ids"]


def tile_ids(ids: torch.Tensor, tiles: int) -> torch.Tensor:
    """Item ids (B * tiles^2, h * w) on square grids, items row-major per scene -> scene ids (B, (tiles h)^2)."""
    h = int(round(ids.shape[1] ** 0.5))
    return rearrange(ids, "(b r c) (h w) -> b (r h c w)", r=tiles, c=tiles, h=h)


def untile_ids(ids: torch.Tensor, tiles: int) -> torch.Tensor:
    """Inverse of :func:`tile_ids`."""
    side = int(round(ids.shape[1] ** 0.5))
    return rearrange(ids, "b (r h c w) -> (b r c) (h w)", r=tiles, c=tiles, h=side // tiles)


def scene_items(images: torch.Tensor, tiles: int = 2) -> torch.Tensor:
    """Scenes (B, C, tiles H, tiles W) -> items (B tiles^2, C, H, W), row-major per scene."""
    return rearrange(images, "b ch (r h) (c w) -> (b r c) ch h w", r=tiles, c=tiles)


def same_class_scenes(ids: torch.Tensor, labels: torch.Tensor, tiles: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Item ids (n, h w) with labels (n,) -> scenes of ``tiles^2`` consecutive items of one class
    (in data order; leftovers dropped): (scene ids (m, tiles^2 h w), labels (m,)), class-major."""
    k = tiles * tiles
    out, lab = [], []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c)[:, 0]
        idx = idx[: len(idx) // k * k]
        if len(idx):
            out.append(tile_ids(ids[idx], tiles))
            lab.append(torch.full((len(idx) // k,), c, dtype=torch.long))
    return torch.cat(out), torch.cat(lab)


class TiledTokenizer:
    """``tiles x tiles`` scenes through an item tokenizer (encode/decode per item, ids tiled)."""

    def __init__(self, tokenizer, tiles: int = 2) -> None:
        self.tiles = check_int("tiles", tiles, min=1, max=8)
        self.item = tokenizer
        self.codebook_size = tokenizer.codebook_size
        self.num_tokens = tokenizer.num_tokens * tiles * tiles
        self.bits_per_image = tokenizer.bits_per_image * tiles * tiles

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return tile_ids(self.item.encode(scene_items(images, self.tiles)), self.tiles)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.item.decode(untile_ids(ids, self.tiles))
        return rearrange(x, "(b r c) ch h w -> b ch (r h) (c w)", r=self.tiles, c=self.tiles)
