"""P06 VAT (Variational Tokenizer): Gaussian latent + multi-scale residual quantization.

Mechanism: the (already compressed) latent tokens are mapped to a Gaussian (``mu``,
``log_var``; in training a sample ``mu + sigma * eps``, at inference ``mu``) with a KL penalty
towards N(0, I). The Gaussian latent is then quantized residually over scales with a growing
number of tokens: at scale s the residual (B, N, D) is area-resampled along the token axis to
``scales[s]`` tokens, quantized with one codebook shared by all scales, resampled back to N
tokens and subtracted. The quantized latent is the sum over scales, so the first scales hold a
coarse summary and later ones refine it: tokens of different scales live in one Gaussian space.

Indices are the concatenation of every scale's indices: shape (B, sum(scales)) with scales
clipped to N. The shared codebook (nearest-code, EMA, commitment loss) is
``vector-quantize-pytorch``'s ``VectorQuantize``; the Gaussian mapping and the multi-scale
residual loop are written here because the library has neither.

Deviations: VAT compresses point/mesh features with an in-context transformer and decodes a
triplane; here the quantizer works on any token sequence (the image tokenizers use it), and the
resampling between scales is linear interpolation along the token order (VAT's tokens have an
implicit order learned by the in-context transformer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int, check_int_list
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["VariationalMultiScaleQuantizer"]


def _resample(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, M, D) -> (B, n, D) by linear interpolation along tokens (area when shrinking)."""
    if x.shape[1] == n:
        return x
    t = x.transpose(1, 2)
    mode = "area" if n < x.shape[1] else "linear"
    out = F.interpolate(t, size=n, mode=mode) if mode == "area" else F.interpolate(t, size=n, mode=mode, align_corners=False)
    return out.transpose(1, 2)


@register("vat", paper="P06")
@dataclass(kw_only=True, eq=False, repr=False)
class VariationalMultiScaleQuantizer(Quantizer):
    """P06 VAT: Gaussian latent, then residual VQ over scales of growing token count."""

    dim: int
    codebook_size: int = 512
    scales: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    kl_weight: float = 1e-3
    commitment_weight: float = 0.25
    decay: float = 0.95

    def validate(self) -> None:
        check_int("codebook_size", self.codebook_size, min=2)
        self.scales = list(check_int_list("scales", self.scales, min=1))
        if any(b <= a for a, b in zip(self.scales, self.scales[1:])):
            raise ValueError(f"scales must be strictly increasing, got {self.scales}")
        check_float("kl_weight", self.kl_weight, min=0.0)
        check_float("commitment_weight", self.commitment_weight, min=0.0)

    def build(self) -> None:
        from vector_quantize_pytorch import VectorQuantize

        self.to_gaussian = nn.Linear(self.dim, 2 * self.dim)
        self.vq = VectorQuantize(
            dim=self.dim, codebook_size=self.codebook_size, decay=self.decay,
            commitment_weight=self.commitment_weight, kmeans_init=True, threshold_ema_dead_code=1.0,
        )  # fmt: skip

    def scales_for(self, tokens: int) -> list[int]:
        """The scales used for a sequence of ``tokens`` tokens (those above it are dropped;
        the last scale is ``tokens`` itself when any scale reaches it)."""
        out = [s for s in self.scales if s < tokens]
        if any(s >= tokens for s in self.scales):
            out.append(tokens)
        return out

    def index_shape(self, batch: int, tokens: int) -> tuple[int, ...]:
        return (batch, sum(self.scales_for(tokens)))

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.to_gaussian(x).chunk(2, dim=-1)
        return mu, log_var.clamp(-10, 10)

    def quantize(self, x: torch.Tensor):
        b, n, _ = x.shape
        mu, log_var = self.gaussian(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp() if self.training else mu
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1).mean()
        residual, total = z, torch.zeros_like(z)
        all_idx, loss = [], z.new_zeros(())
        for s in self.scales_for(n):
            q, idx, l = self.vq(_resample(residual, s))
            up = _resample(q, n)
            total = total + up
            residual = residual - up
            all_idx.append(idx)
            loss = loss + l.sum()
        # straight-through from the Gaussian latent to the summed codes
        quantized = z + (total - z).detach()
        return quantized, torch.cat(all_idx, dim=1), loss + self.kl_weight * kl

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 2:
            raise ValueError(f"indices must have shape (B, sum(scales)), got {tuple(indices.shape)}")
        total_len = indices.shape[1]
        # find N such that sum(scales_for(N)) == total_len
        n = next((m for m in range(1, total_len + 1) if sum(self.scales_for(m)) == total_len), None)
        if n is None:
            raise ValueError(f"indices length {total_len} matches no token count for scales {self.scales}")
        out, start = 0, 0
        for s in self.scales_for(n):
            codes = self.vq.get_output_from_indices(indices[:, start : start + s])
            out = out + _resample(codes, n)
            start += s
        return out
