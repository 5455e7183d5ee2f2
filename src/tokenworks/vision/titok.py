"""P23 TiTok: An Image is Worth 32 Tokens for Reconstruction and Generation (1D tokenizer).

Mechanism: a ViT encoder reads the image patches together with K learnable latent tokens;
only the outputs at the latent positions are kept and quantized, so an image becomes a 1D
sequence of K tokens whose count does not depend on the image grid. The decoder is a ViT over
one learnable mask token per patch position plus the K quantized latents; the outputs at the
patch positions are turned into pixels. K (``num_latents``) sets the token count (8/16/32).

Deviations from the paper:
- single-stage training with an MSE reconstruction loss straight from pixels; TiTok's first
  stage regresses proxy codes of a pretrained MaskGIT-VQGAN and its second stage fine-tunes
  with perceptual and adversarial losses, none of which exist offline at this scale;
- the default bottleneck is FSQ (any registered quantizer works, e.g. ``vq``, ``binary``,
  ``robustok``) instead of a 4096-entry VQ with 12-d codes: FSQ needs no codebook loss and
  does not collapse in the short CPU training;
- tiny widths for 28x28 grey images (patch 7 -> 16 patches, width 64, two layers each side)
  and a per-patch linear pixel head followed by a small residual conv (the paper decodes to
  VQGAN tokens and uses the VQGAN decoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tokenworks.checks import check_int
from tokenworks.registry import register
from tokenworks.vision.base import ImageTokenizer
from tokenworks.vision.vit import LatentDecoder, LatentEncoder, check_vit_options

__all__ = ["TiTok"]


@register("titok", paper="P23")
@dataclass(kw_only=True, eq=False, repr=False)
class TiTok(ImageTokenizer):
    """P23 1D tokenizer: K learnable latent tokens read the patches; only they are quantized."""

    image_size: int = 28
    channels: int = 1
    latent_dim: int = 16
    quantizer: str = "fsq"
    quantizer_options: dict = field(default_factory=dict)
    num_latents: int = 16
    patch_size: int = 7
    width: int = 64
    depth: int = 2
    heads: int = 4

    def validate(self) -> None:
        check_int("num_latents", self.num_latents, min=1, max=1024)
        check_vit_options(image_size=self.image_size, patch_size=self.patch_size, width=self.width, depth=self.depth, heads=self.heads)

    def vit_options(self) -> dict:
        return {"image_size": self.image_size, "channels": self.channels, "patch": self.patch_size,
                "width": self.width, "depth": self.depth, "heads": self.heads, "num_latents": self.num_latents}  # fmt: skip

    def build(self) -> None:
        self.encoder = LatentEncoder(**self.vit_options(), out_dim=self.latent_dim)
        self.decoder = LatentDecoder(**self.vit_options(), in_dim=self.latent_dim)

    @property
    def num_tokens(self) -> int:
        return self.num_latents

    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(images)  # (B, K, latent_dim)

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(tokens)  # (B, C, H, W)
