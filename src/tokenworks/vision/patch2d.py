"""Baseline: the 2D patch tokenizer (VQ-VAE / VQGAN style conv encoder-decoder).

A convolutional encoder downsamples the image by ``downsample`` (2 or 4) and every cell of the
resulting grid is one token: 28x28 images give 14x14 = 196 or 7x7 = 49 tokens. A mirrored
decoder maps quantized tokens back to pixels (sigmoid output). Any registered quantizer can be
the bottleneck. This is the reference the 1D tokenizers (TiTok, FlexTok, ...) are compared with
at equal bits per image, and the model of the ``quantizers`` benchmark suite.

Deviations from VQGAN: no perceptual or adversarial loss (MSE only; no LPIPS/discriminator
weights exist offline), and a small width for CPU training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import check_choice, check_int
from tokenworks.registry import register
from tokenworks.vision.base import ImageTokenizer

__all__ = ["PatchTokenizer2D", "ResBlock"]


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.GroupNorm(8 if ch % 8 == 0 else 1, ch), nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1),
                                 nn.GroupNorm(8 if ch % 8 == 0 else 1, ch), nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


@register("patch2d", family="VIS", cite="van den Oord et al. 2017 (VQ-VAE); Esser et al. 2021 (VQGAN): 2D grid of patch tokens")
@dataclass(kw_only=True, eq=False, repr=False)
class PatchTokenizer2D(ImageTokenizer):
    """Baseline 2D grid tokenizer: one token per cell of the downsampled image."""

    image_size: int = 28
    channels: int = 1
    latent_dim: int = 16
    quantizer: str = "fsq"
    quantizer_options: dict = field(default_factory=dict)
    downsample: int = 4
    width: int = 32

    def validate(self) -> None:
        check_choice("downsample", self.downsample, (2, 4))
        check_int("width", self.width, min=8)
        if self.image_size % self.downsample:
            raise ValueError(f"image_size ({self.image_size}) must be divisible by downsample ({self.downsample})")

    def build(self) -> None:
        w, c, d = self.width, self.channels, self.latent_dim
        if self.downsample == 4:  # 28 -> 14 -> 7; the residual block works on the 7x7 grid
            enc = [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.GELU(), nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), ResBlock(2 * w), nn.GELU(), nn.Conv2d(2 * w, d, 1)]
            dec = [nn.Conv2d(d, 2 * w, 3, padding=1), ResBlock(2 * w), nn.GELU(), nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.GELU(), nn.ConvTranspose2d(w, c, 4, stride=2, padding=1)]
        else:  # 28 -> 14
            enc = [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.GELU(), ResBlock(w), nn.GELU(), nn.Conv2d(w, d, 1)]
            dec = [nn.Conv2d(d, w, 3, padding=1), ResBlock(w), nn.GELU(), nn.ConvTranspose2d(w, c, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample

    @property
    def num_tokens(self) -> int:
        return self.grid**2

    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return rearrange(self.encoder(images), "b d h w -> b (h w) d")  # (B, N, D)

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        grid = rearrange(tokens, "b (h w) d -> b d h w", h=self.grid)
        return torch.sigmoid(self.decoder(grid))
