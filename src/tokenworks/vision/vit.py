"""Shared ViT pieces of the 1D tokenizers (TiTok, FlexTok, Hita, TexTok, GigaTok, DiGIT).

- :class:`Transformer`: pre-norm layers from ``torch.nn.TransformerEncoderLayer`` and a final
  LayerNorm; ``forward(x, mask, tap=i)`` also returns the hidden states after layer ``i``
  (GigaTok regularizes them). ``mask`` is a boolean (T, T) matrix, True where attention is
  *forbidden* (PyTorch's convention).
- :class:`PatchEmbed`: strided-conv patch embedding with learned positions.
- :class:`LatentEncoder`: patch embedding + K learnable latent tokens through a transformer;
  the outputs at the latent positions are the continuous 1D tokens (TiTok's encoder).
- :class:`LatentDecoder`: one learnable mask token per patch position + the (quantized) latent
  tokens through a transformer; the outputs at the patch positions become pixels (TiTok's
  decoder). Latent positions may be replaced by a learnable ``dropped`` token (FlexTok's
  nested dropout) through ``keep``.
- :class:`PixelHead`: per-patch linear to pixels, a small residual conv that smooths patch
  borders, sigmoid.

Images enter in [0, 1] and are mapped to [-1, 1] inside the encoders.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["LatentDecoder", "LatentEncoder", "PatchEmbed", "PixelHead", "Transformer", "causal_mask", "check_vit_options"]


def check_vit_options(*, image_size: int, patch_size: int, width: int, depth: int, heads: int) -> None:
    """The checks every ViT-based tokenizer's options share, with messages naming the option."""
    from tokenworks.checks import check_int

    check_int("patch_size", patch_size, min=1, max=image_size)
    if image_size % patch_size:
        raise ValueError(f"patch_size ({patch_size}) must divide image_size ({image_size})")
    check_int("width", width, min=4)
    check_int("depth", depth, min=1)
    check_int("heads", heads, min=1)
    if width % heads:
        raise ValueError(f"heads ({heads}) must divide width ({width})")


def causal_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) boolean mask, True above the diagonal: position i may attend to j <= i only."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * 0.02)


class Transformer(nn.Module):
    """``depth`` pre-norm transformer layers (GELU MLP, no dropout) and a final LayerNorm."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, mlp_ratio * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth)
        )  # fmt: skip
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, tap: int | None = None):
        """x (B, T, W) -> (B, T, W); with ``tap=i`` also the hidden states after layer i (1-based)."""
        tapped = None
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, src_mask=mask)
            if tap == i:
                tapped = x
        x = self.norm(x)
        return x if tap is None else (x, tapped)


class PixelHead(nn.Module):
    """Patch features (B, P, W) -> images (B, C, H, W) in [0, 1]."""

    def __init__(self, width: int, patch: int, grid: int, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.patch, self.grid = patch, grid
        self.linear = nn.Linear(width, patch * patch * channels)
        self.refine = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, channels, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.linear(h), "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=self.grid, p=self.patch, q=self.patch)
        return torch.sigmoid(x + self.refine(x))


class PatchEmbed(nn.Module):
    """(B, C, H, W) in [0, 1] -> patch tokens with learned positions (B, (H/p)*(W/p), W)."""

    def __init__(self, *, image_size: int, channels: int, patch: int, width: int) -> None:
        super().__init__()
        self.grid = image_size // patch
        self.num_patches = self.grid**2
        self.embed = nn.Conv2d(channels, width, patch, stride=patch)
        self.pos = _param(1, self.num_patches, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return rearrange(self.embed(images * 2 - 1), "b w h x -> b (h x) w") + self.pos


class LatentEncoder(nn.Module):
    """Patches + ``num_latents`` learnable latent tokens -> (B, num_latents, out_dim).

    The sequence is [patches (P); latents (K); extra (E)]; ``extra`` (B, E, W) are optional
    conditioning tokens (TexTok's text tokens), ``mask`` an optional (P+K+E)-square mask.
    """

    def __init__(self, *, image_size: int, channels: int, patch: int, width: int, depth: int, heads: int, num_latents: int, out_dim: int) -> None:
        super().__init__()
        self.patches = PatchEmbed(image_size=image_size, channels=channels, patch=patch, width=width)
        self.grid, self.num_patches = self.patches.grid, self.patches.num_patches
        self.num_latents = num_latents
        self.latents = _param(1, num_latents, width)
        self.transformer = Transformer(width, depth, heads)
        self.out = nn.Linear(width, out_dim)

    def forward(self, images: torch.Tensor, extra: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patches(images)  # (B, P, W)
        z = self.latents.expand(x.shape[0], -1, -1)  # (B, K, W)
        seq = torch.cat([x, z] if extra is None else [x, z, extra], dim=1)
        h = self.transformer(seq, mask)
        return self.out(h[:, self.num_patches : self.num_patches + self.num_latents])  # (B, K, out_dim)


class LatentDecoder(nn.Module):
    """(B, k, in_dim) latent tokens (k <= num_latents) -> images (B, C, H, W) in [0, 1].

    The sequence is [mask tokens (P); latents (K); extra (E)]. Latent positions beyond k, and
    those where ``keep`` (B, K) is False, hold the learnable ``dropped`` token (only with
    ``droppable=True``).
    """

    def __init__(self, *, image_size: int, channels: int, patch: int, width: int, depth: int, heads: int, num_latents: int, in_dim: int, droppable: bool = False) -> None:
        super().__init__()
        self.grid = image_size // patch
        self.num_patches = self.grid**2
        self.num_latents = num_latents
        self.inp = nn.Linear(in_dim, width)
        self.latent_pos = _param(1, num_latents, width)
        self.mask_token = _param(1, 1, width)
        self.pos = _param(1, self.num_patches, width)
        self.dropped = _param(1, 1, width) if droppable else None
        self.transformer = Transformer(width, depth, heads)
        self.head = PixelHead(width, patch, self.grid, channels)

    def latent_sequence(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, k, in_dim) -> (B, K, W): embedded latents, dropped positions replaced."""
        b, k, _ = tokens.shape
        z = self.inp(tokens)
        if k < self.num_latents or keep is not None:
            if self.dropped is None:
                raise ValueError(f"tokens must hold num_latents={self.num_latents} tokens, got {k}")
            z = torch.cat([z, self.dropped.expand(b, self.num_latents - k, -1)], dim=1)
            if keep is not None:
                z = torch.where(keep[..., None], z, self.dropped.to(z.dtype))
        return z + self.latent_pos

    def forward(self, tokens: torch.Tensor, *, keep: torch.Tensor | None = None, extra: torch.Tensor | None = None, mask: torch.Tensor | None = None, tap: int | None = None):
        z = self.latent_sequence(tokens, keep)
        m = (self.mask_token + self.pos).expand(z.shape[0], -1, -1)  # (B, P, W)
        seq = torch.cat([m, z] if extra is None else [m, z, extra], dim=1)
        out = self.transformer(seq, mask, tap=tap)
        h, tapped = out if tap is not None else (out, None)
        images = self.head(h[:, : self.num_patches])
        return images if tap is None else (images, tapped[:, : self.num_patches])
