"""P05 Hita: Holistic Tokenizer for Autoregressive Image Generation.

Mechanism: learnable holistic queries and the image's patch tokens go through two encoder
stages. Stage 1 (full attention) lets the holistic queries read the whole image. Stage 2 puts
the holistic tokens first and the patch tokens after them under a causal mask, so every token
depends only on the tokens before it, which is the order an autoregressive prior generates
them in. Both kinds are quantized; the id sequence is [holistic (H); patches (G)]. Before the
pixel decoder, a light fusion module (one causal transformer layer over the de-quantized
sequence) controls the flow of information from the holistic tokens to the later ones.

Deviations from the paper (official code read at CVMI-Lab/Hita, ``hita/core/layers.py``):
- the patch tokens of stage 2 are the stage-1 patch outputs average-pooled to a
  ``patch_grid`` x ``patch_grid`` grid (the 4x4 patch-7 grid pooled to 2x2 by default, so
  12 holistic + 4 patch = 16 tokens at 28x28) instead of VQGAN-CNN features at 1/16 resolution; the frozen DINOv2 features that
  Hita adds to stage 1 are left out (no such encoder offline);
- one codebook (the tokenizer's quantizer) for holistic and patch tokens, where Hita uses two
  VQ codebooks (12-d and 8-d codes);
- the decoder reads every fused token (holistic and patch), where Hita takes the fused
  outputs at the patch positions shifted by ``shift_k`` and decodes them with a VQGAN CNN;
  at a 2x2 patch grid the patch positions alone would be a needless bottleneck;
- MSE only (no perceptual/adversarial losses), CPU-sized widths; the pixel decoder is the
  shared 1D decoder of :mod:`tokenworks.vision.vit` (7x7 grid, conv decoder, linear path).

``holistic_tokens=0`` gives the patch-only control of the same architecture (stage 2 is then
a causal pass over the pooled patch tokens alone), e.g. ``patch_grid=4`` for 16 patch tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenworks.checks import check_int
from tokenworks.registry import register
from tokenworks.vision.base import ImageTokenizer
from tokenworks.vision.vit import LatentDecoder, PatchEmbed, Transformer, causal_mask, check_vit_options

__all__ = ["Hita"]


@register("hita", paper="P05")
@dataclass(kw_only=True, eq=False, repr=False)
class Hita(ImageTokenizer):
    """P05 holistic-then-patch tokenizer with causal token order and a causal fusion layer."""

    image_size: int = 28
    channels: int = 1
    latent_dim: int = 16
    quantizer: str = "fsq"
    quantizer_options: dict = field(default_factory=dict)
    holistic_tokens: int = 12
    patch_grid: int = 2
    patch_size: int = 7
    width: int = 64
    depth: int = 2
    heads: int = 4
    fusion_depth: int = 1
    decoder_width: int = 64
    decoder_depth: int = 2
    decoder_patch: int = 4

    def validate(self) -> None:
        check_int("holistic_tokens", self.holistic_tokens, min=0, max=1024)
        check_vit_options(image_size=self.image_size, patch_size=self.patch_size, width=self.width, depth=self.depth, heads=self.heads,
                          decoder_width=self.decoder_width, decoder_depth=self.decoder_depth, decoder_patch=self.decoder_patch)  # fmt: skip
        check_int("patch_grid", self.patch_grid, min=1, max=self.image_size // self.patch_size)
        check_int("fusion_depth", self.fusion_depth, min=1)

    def build(self) -> None:
        # stage 1: holistic queries + all patches, full attention
        self.patches = PatchEmbed(image_size=self.image_size, channels=self.channels, patch=self.patch_size, width=self.width)
        self.queries = nn.Parameter(torch.randn(1, self.holistic_tokens, self.width) * self.width**-0.5)
        self.ln_pre = nn.LayerNorm(self.width)
        self.stage1 = Transformer(self.width, self.depth, self.heads)
        # stage 2: causal over [holistic; pooled patches]
        self.seq_pos = nn.Parameter(torch.randn(1, self.num_tokens, self.width) * self.width**-0.5)
        self.stage2 = Transformer(self.width, self.depth, self.heads)
        self.to_latent = nn.Linear(self.width, self.latent_dim)
        # decoder: light causal fusion, then the ViT pixel decoder over all fused tokens
        self.fuse_in = nn.Linear(self.latent_dim, self.width)
        self.fuse_pos = nn.Parameter(torch.randn(1, self.num_tokens, self.width) * self.width**-0.5)
        self.fusion = Transformer(self.width, self.fusion_depth, self.heads)
        self.decoder = LatentDecoder(image_size=self.image_size, channels=self.channels, width=self.decoder_width, depth=self.decoder_depth,
                                     heads=self.heads, num_latents=self.num_tokens, in_dim=self.width, decoder_patch=self.decoder_patch)  # fmt: skip
        self.register_buffer("causal", causal_mask(self.num_tokens), persistent=False)

    @property
    def num_patch_tokens(self) -> int:
        return self.patch_grid**2

    @property
    def num_tokens(self) -> int:
        return self.holistic_tokens + self.num_patch_tokens

    def stage1_outputs(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> stage-1 sequence [holistic (H); pooled patches (G)], (B, H+G, W)."""
        x = self.patches(images)  # (B, P, W)
        q = self.queries.expand(x.shape[0], -1, -1)  # (B, H, W)
        h = self.stage1(self.ln_pre(torch.cat([q, x], dim=1)))
        holistic, patches = h[:, : self.holistic_tokens], h[:, self.holistic_tokens :]
        grid = rearrange(patches, "b (gh gw) w -> b w gh gw", gh=self.patches.grid)
        pooled = rearrange(F.adaptive_avg_pool2d(grid, self.patch_grid), "b w gh gw -> b (gh gw) w")
        return torch.cat([holistic, pooled], dim=1)

    def causal_stage(self, seq: torch.Tensor) -> torch.Tensor:
        """Stage 2: (B, T, W) -> latents (B, T, latent_dim); output i depends on inputs <= i only."""
        t = seq.shape[1]
        return self.to_latent(self.stage2(seq + self.seq_pos[:, :t], self.causal[:t, :t]))

    def fuse(self, tokens: torch.Tensor) -> torch.Tensor:
        """Fusion: (B, T, latent_dim) de-quantized tokens -> (B, T, W); output i sees tokens <= i."""
        t = tokens.shape[1]
        return self.fusion(self.fuse_in(tokens) + self.fuse_pos[:, :t], self.causal[:t, :t])

    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.causal_stage(self.stage1_outputs(images))  # (B, H+G, latent_dim)

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.fuse(tokens))
