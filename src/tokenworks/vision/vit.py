"""Shared ViT pieces of the 1D tokenizers (TiTok, FlexTok, Hita, TexTok, GigaTok, DiGIT).

- :class:`Transformer`: pre-norm layers from ``torch.nn.TransformerEncoderLayer`` and a final
  LayerNorm; ``forward(x, mask, tap=i)`` also returns the hidden states after layer ``i``
  (GigaTok regularizes them). ``mask`` is a boolean (T, T) matrix, True where attention is
  *forbidden* (PyTorch's convention).
- :class:`PatchEmbed`: strided-conv patch embedding with learned positions.
- :class:`LatentEncoder`: patch embedding + K learnable latent tokens (official TiTok init:
  ``width**-0.5`` tokens plus a position embedding) through ``ln_pre`` and a transformer; the
  outputs at the latent positions are the continuous 1D tokens (TiTok's encoder).
- :class:`LatentDecoder`: one learnable mask token per cell of a ``image_size/decoder_patch``
  grid (7x7 at 28x28) + the (quantized) latent tokens through ``ln_pre`` and a transformer;
  the outputs at the mask positions form a feature grid that a conv decoder turns into pixels
  (as TiTok decodes into a VQGAN grid and then through the VQGAN conv decoder). Latent
  positions may be replaced by a learnable ``dropped`` token (FlexTok's nested dropout)
  through ``keep``.
- the decoder's *linear path*: beside the transformer, every grid cell also receives a learned
  linear function of all K tokens (rank ``linear_rank``, 8), added to the transformer's output
  before the conv decoder. Not in TiTok: at this CPU budget (1,200 steps) a ViT decoder
  learns to route K global tokens into 49 cells slowly (measured on TiTok-32 at 400 steps:
  15.3 dB without, 17.0 dB with it); the path gives the decoder at least a linear decoding
  of the tokens (what PCA gets) from the first steps, and the ViT adds the rest.
- the encoder's *linear path* (``linear_rank`` > 0, TiTok's ``encoder_linear_rank``): every
  latent token also receives a learned linear function of all pixels (rank 4 in the suite: the
  FSQ scalars a token carries), added to the transformer's output at its position. Not in TiTok
  either: the latent queries gather the image through softmax attention over 16 patches, a
  convex mix, and 2 layers at width 64 learn slowly to pass many independent linear features
  of the image into each token; measured on TiTok-32 at 400 steps (batch 64, lr 2e-3): test
  PSNR 17.16 dB without, 19.19 dB with it; at the suite's 1,200 steps (3 seeds, 500 test
  images) TiTok-32 went from 20.20 to 21.60 dB and TiTok-49 from 20.54 (1 seed) to 21.98 dB,
  above quantized PCA at equal bits and scalars (20.35 / 21.17). The old TiTok-32 decoded its
  *unrounded* latents at only 20.53 dB: quantization was not the bottleneck. With both paths the
  tokenizer contains a linear autoencoder (what PCA is) from the first step.
- :class:`ConvPixelDecoder`: the 2D baseline's conv decoder (1x1 conv, residual block, two
  stride-2 transposed convs, sigmoid) on the grid.

History: the first version decoded a 4x4 grid (patch 7) with a per-patch linear pixel head,
2 layers at width 64, latent init std 0.02 and no ``ln_pre``; it was the bottleneck (TiTok-32
below a 32-component PCA, 1D tokens nearly identical across positions).

Images enter in [0, 1] and are mapped to [-1, 1] inside the encoders.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["LatentDecoder", "LatentEncoder", "PatchEmbed", "ConvPixelDecoder", "Transformer", "causal_mask", "check_vit_options"]


def check_vit_options(*, image_size: int, patch_size: int, width: int, depth: int, heads: int,
                      decoder_width: int | None = None, decoder_depth: int | None = None, decoder_patch: int | None = None) -> None:  # fmt: skip
    """The checks every ViT-based tokenizer's options share, with messages naming the option."""
    from tokenworks.checks import check_int

    if decoder_width is not None:
        check_int("decoder_width", decoder_width, min=4)
        if decoder_width % heads:
            raise ValueError(f"heads ({heads}) must divide decoder_width ({decoder_width})")
    if decoder_depth is not None:
        check_int("decoder_depth", decoder_depth, min=1)
    if decoder_patch is not None:
        check_int("decoder_patch", decoder_patch, min=1, max=image_size)
        if decoder_patch & (decoder_patch - 1) or image_size % decoder_patch:
            raise ValueError(f"decoder_patch must be a power of two dividing image_size ({image_size}), got {decoder_patch}")

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


def _scaled(*shape: int) -> nn.Parameter:
    """A learnable (..., width) tensor at the official TiTok init scale width**-0.5."""
    return nn.Parameter(torch.randn(*shape) * shape[-1] ** -0.5)


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


class ConvPixelDecoder(nn.Module):
    """Grid features (B, g*g, W) -> images (B, C, g*up, g*up) in [0, 1]: a 1x1 conv, a residual
    block and ``log2(up)`` stride-2 transposed convs, i.e. the decoder of the 2D baseline
    (:mod:`tokenworks.vision.patch2d`) run on the transformer's grid (TiTok decodes through a
    VQGAN conv decoder the same way)."""

    def __init__(self, width: int, grid: int, up: int, channels: int, conv_width: int = 32) -> None:
        super().__init__()
        from tokenworks.vision.patch2d import ResBlock

        if up & (up - 1):
            raise ValueError(f"decoder_patch must be a power of two, got {up}")
        self.grid = grid
        c = 2 * conv_width
        layers: list[nn.Module] = [nn.Conv2d(width, c, 1), ResBlock(c)]
        stages = up.bit_length() - 1
        for i in range(stages):
            out = channels if i == stages - 1 else max(conv_width, c // 2)
            layers += [nn.GELU(), nn.ConvTranspose2d(c, out, 4, stride=2, padding=1)]
            c = out
        if stages == 0:
            layers += [nn.GELU(), nn.Conv2d(c, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(rearrange(h, "b (gh gw) w -> b w gh gw", gh=self.grid)))


class PatchEmbed(nn.Module):
    """(B, C, H, W) in [0, 1] -> patch tokens with learned positions (B, (H/p)*(W/p), W)."""

    def __init__(self, *, image_size: int, channels: int, patch: int, width: int) -> None:
        super().__init__()
        self.grid = image_size // patch
        self.num_patches = self.grid**2
        self.embed = nn.Conv2d(channels, width, patch, stride=patch)
        self.pos = _scaled(1, self.num_patches, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return rearrange(self.embed(images * 2 - 1), "b w h x -> b (h x) w") + self.pos


class LatentEncoder(nn.Module):
    """Patches + ``num_latents`` learnable latent tokens -> (B, num_latents, out_dim).

    The sequence is [patches (P); latents (K); extra (E)]; ``extra`` (B, E, W) are optional
    conditioning tokens (TexTok's text tokens), ``mask`` an optional (P+K+E)-square mask.
    As in the official TiTok: latent tokens and their position embedding start at
    ``width**-0.5`` scale, and ``ln_pre`` normalizes the sequence before the transformer.
    """

    def __init__(self, *, image_size: int, channels: int, patch: int, width: int, depth: int, heads: int, num_latents: int, out_dim: int,
                 linear_rank: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.patches = PatchEmbed(image_size=image_size, channels=channels, patch=patch, width=width)
        self.grid, self.num_patches = self.patches.grid, self.patches.num_patches
        self.num_latents = num_latents
        self.latents = _scaled(1, num_latents, width)
        self.latent_pos = _scaled(1, num_latents, width)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, heads)
        self.out = nn.Linear(width, out_dim)
        # the encoder's linear path: every latent token gets a learned linear function of all pixels (rank linear_rank)
        self.linear_rank = linear_rank
        if linear_rank:
            self.linear_in = nn.Linear(channels * image_size**2, num_latents * linear_rank)
            self.linear_out = nn.Linear(linear_rank, width)

    def forward(self, images: torch.Tensor, extra: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patches(images)  # (B, P, W)
        z = (self.latents + self.latent_pos).expand(x.shape[0], -1, -1)  # (B, K, W)
        seq = self.ln_pre(torch.cat([x, z] if extra is None else [x, z, extra], dim=1))
        h = self.transformer(seq, mask)[:, self.num_patches : self.num_patches + self.num_latents]  # (B, K, W)
        if self.linear_rank:
            lin = rearrange(self.linear_in(images.flatten(1) * 2 - 1), "b (k r) -> b k r", k=self.num_latents)
            h = h + self.linear_out(lin)
        return self.out(h)  # (B, K, out_dim)


class LatentDecoder(nn.Module):
    """(B, k, in_dim) latent tokens (k <= num_latents) -> images (B, C, H, W) in [0, 1].

    The sequence is [mask tokens (P); latents (K); extra (E)] with one mask token per cell of
    the ``image_size / decoder_patch`` grid; after ``ln_pre`` and the transformer, the outputs at
    the mask positions form a feature grid that :class:`ConvPixelDecoder` turns into pixels.
    Latent positions beyond k, and those where ``keep`` (B, K) is False, hold the learnable
    ``dropped`` token (only with ``droppable=True``).
    """

    def __init__(self, *, image_size: int, channels: int, width: int, depth: int, heads: int, num_latents: int, in_dim: int,
                 decoder_patch: int = 4, conv_width: int = 32, droppable: bool = False, linear_rank: int = 8) -> None:  # fmt: skip
        super().__init__()
        self.grid = image_size // decoder_patch
        self.num_patches = self.grid**2
        self.num_latents = num_latents
        self.inp = nn.Linear(in_dim, width)
        # the linear path: every grid cell gets a learned linear function of all tokens (rank linear_rank)
        self.linear_rank = linear_rank
        if linear_rank:
            self.linear_maps = nn.Parameter(torch.randn(self.num_patches, num_latents, linear_rank, in_dim) * (num_latents * in_dim) ** -0.5)
            self.linear_out = nn.Linear(linear_rank, width)
        self.latent_pos = _scaled(1, num_latents, width)
        self.mask_token = _scaled(1, 1, width)
        self.pos = _scaled(1, self.num_patches, width)
        self.dropped = _scaled(1, 1, width) if droppable else None
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, heads)
        self.head = ConvPixelDecoder(width, self.grid, decoder_patch, channels, conv_width)

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

    def linear_path(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, k, in_dim) -> (B, P, W): sum over tokens of a per-(cell, token) linear map; tokens
        beyond k or dropped by ``keep`` contribute nothing."""
        b, k, _ = tokens.shape
        if k < self.num_latents:
            tokens = torch.cat([tokens, tokens.new_zeros(b, self.num_latents - k, tokens.shape[2])], dim=1)
        if keep is not None:
            tokens = tokens * keep[..., None].to(tokens.dtype)
        return self.linear_out(torch.einsum("bkd,pkrd->bpr", tokens, self.linear_maps))

    def forward(self, tokens: torch.Tensor, *, keep: torch.Tensor | None = None, extra: torch.Tensor | None = None, mask: torch.Tensor | None = None, tap: int | None = None):
        z = self.latent_sequence(tokens, keep)
        m = (self.mask_token + self.pos).expand(z.shape[0], -1, -1)  # (B, P, W)
        seq = self.ln_pre(torch.cat([m, z] if extra is None else [m, z, extra], dim=1))
        out = self.transformer(seq, mask, tap=tap)
        h, tapped = out if tap is not None else (out, None)
        h = h[:, : self.num_patches]
        if self.linear_rank:
            h = h + self.linear_path(tokens, keep)
        images = self.head(h)
        return images if tap is None else (images, tapped[:, : self.num_patches])
