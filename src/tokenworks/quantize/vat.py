"""P06 VAT (Variational Tokenizer): Gaussian latent + multi-scale residual quantization.

Mechanism: the (already compressed) latent tokens are mapped to a Gaussian (``mu``,
``log_var``; in training a sample ``mu + sigma * eps``, at inference ``mu``) with a KL penalty
towards N(0, I). The Gaussian latent is then quantized residually over scales of growing size,
with one codebook shared by all scales: at scale s the residual is average-pooled to the
scale's grid, quantized, upsampled back (linear / bilinear interpolation) and subtracted. The
quantized latent is the sum over scales, so the first scales hold a coarse summary and later
ones refine it, and tokens of all scales live in one Gaussian space.

Layouts: with ``layout="2d"`` (default) the N tokens are a row-major square grid of side
``scales[-1]`` and the scales are grid sides (``[1, 2, 4, 7]`` quantizes a 7x7 grid at 1x1,
2x2, 4x4 and 7x7: 70 indices), so a coarse cell pools a 2D block of the grid, not a fragment of
the raster order; with ``layout="1d"`` the N = ``scales[-1]`` tokens are a sequence (VAT's own
case: its latent tokens are an unordered set compressed by a transformer, with no 2D layout).
Indices are every scale's indices, flattened row-major and concatenated: (B, sum of cells).

The multi-scale residual loop, pooling, upsampling, shared EMA codebook (k-means init,
dead-code restarts) and commitment loss are ``vector-quantize-pytorch``'s ``HierarchicalVQ``
(``quant_resi=0``: no convolution after upsampling); the Gaussian mapping and KL are written
here. Gradients reach the encoder straight through from the summed codes to the Gaussian sample.
``decode_indices(indices, levels=k)`` decodes from the first ``k`` scales only (coarse-to-fine).

Deviations: VAT compresses point/mesh features with an in-context transformer and decodes a
triplane; the point-cloud model around this quantizer is :mod:`tokenworks.shapes.vat` (a set
encoder and a query decoder to points, no triplane), and the image tokenizers use it on their
own token grids. The finest scale must equal the token layout (no scale finer than the grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from tokenworks.checks import check_choice, check_float, check_int, check_int_list
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["VariationalMultiScaleQuantizer", "gaussian_kl"]


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, 1)) per element."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)


@register("vat", paper="P06")
@dataclass(kw_only=True, eq=False, repr=False)
class VariationalMultiScaleQuantizer(Quantizer):
    """P06 VAT: Gaussian latent, then residual VQ over a 2D (or 1D) pyramid of scales."""

    dim: int
    codebook_size: int = 512
    scales: list[int] = field(default_factory=lambda: [1, 2, 4, 7])
    layout: str = "2d"
    kl_weight: float = 1e-3
    commitment_weight: float = 0.25
    decay: float = 0.95

    def validate(self) -> None:
        check_int("codebook_size", self.codebook_size, min=2)
        self.scales = list(check_int_list("scales", self.scales, min=1))
        if any(b <= a for a, b in zip(self.scales, self.scales[1:])):
            raise ValueError(f"scales must be strictly increasing, got {self.scales}")
        check_choice("layout", self.layout, ("1d", "2d"))
        check_float("kl_weight", self.kl_weight, min=0.0)
        check_float("commitment_weight", self.commitment_weight, min=0.0)
        check_float("decay", self.decay, min=0.0, max=1.0, max_open=True)

    def build(self) -> None:
        from vector_quantize_pytorch import HierarchicalVQ

        self.to_gaussian = nn.Linear(self.dim, 2 * self.dim)
        self.hvq = HierarchicalVQ(
            dim=self.dim, codebook_size=self.codebook_size, scales=self.scales, shared_codebook=True, channel_first=False,
            decay=self.decay, commitment_weight=self.commitment_weight, kmeans_init=True, threshold_ema_dead_code=1.0,
            quant_resi=0.0, accept_image_fmap=self.layout == "2d",
        )  # fmt: skip

    @property
    def side(self) -> int:
        return self.scales[-1]

    @property
    def num_tokens(self) -> int:
        """The token count this quantizer takes: side**2 (2d) or side (1d)."""
        return self.side**2 if self.layout == "2d" else self.side

    @property
    def cells(self) -> list[int]:
        """Indices per scale."""
        return [s * s if self.layout == "2d" else s for s in self.scales]

    @property
    def codebook(self) -> torch.Tensor:
        return self.hvq.vq.codebook

    def _check_tokens(self, tokens: int) -> None:
        if tokens != self.num_tokens:
            shape = f"a {self.side}x{self.side} grid" if self.layout == "2d" else "a sequence"
            raise ValueError(f"x must hold {self.num_tokens} tokens ({shape} for scales={self.scales}, layout={self.layout!r}), got {tokens}")

    def index_shape(self, batch: int, tokens: int) -> tuple[int, ...]:
        self._check_tokens(tokens)
        return (batch, sum(self.cells))

    def sequence_bits(self, tokens: int) -> float:
        return math.prod(self.index_shape(1, tokens)) * math.log2(self.codebook_size)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.to_gaussian(x).chunk(2, dim=-1)
        return mu, log_var.clamp(-10, 10)

    def _grid(self, z: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, side, side, D) or (B, N, D)
        return z.reshape(z.shape[0], self.side, self.side, z.shape[-1]) if self.layout == "2d" else z

    def quantize(self, x: torch.Tensor):
        b, n, d = x.shape
        self._check_tokens(n)
        mu, log_var = self.gaussian(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp() if self.training else mu
        kl = gaussian_kl(mu, log_var).sum(-1).mean()
        total, levels, commit = self.hvq(self._grid(z))
        total = total.reshape(b, n, d)
        quantized = z + (total - z).detach()  # straight-through from the Gaussian sample to the summed codes
        indices = torch.cat([lv.reshape(b, -1) for lv in levels], dim=1)
        return quantized, indices, commit.sum() + self.kl_weight * kl

    def decode_indices(self, indices: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        if indices.ndim != 2 or indices.shape[1] != sum(self.cells):
            raise ValueError(f"indices must have shape (B, {sum(self.cells)}) for scales={self.scales}, got {tuple(indices.shape)}")
        levels = len(self.scales) if levels is None else check_int("levels", levels, min=1, max=len(self.scales))
        per_level, start = [], 0
        for i, (s, c) in enumerate(zip(self.scales, self.cells)):
            part = indices[:, start : start + c] if i < levels else torch.full_like(indices[:, start : start + c], -1)
            per_level.append(part.reshape(-1, s, s) if self.layout == "2d" else part)
            start += c
        out = self.hvq.get_output_from_indices(per_level)
        return out.reshape(indices.shape[0], self.num_tokens, self.dim)
