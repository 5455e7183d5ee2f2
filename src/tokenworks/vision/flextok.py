"""P43 FlexTok: Resampling Images into 1D Token Sequences of Flexible Length.

Mechanism: the encoder appends K register tokens to the image patches; a register attends to
all patches and, causally, to the registers before it, so the first k registers depend on
nothing after them. In training, nested dropout keeps only the first k registers of each
image (k drawn per image, uniformly over the powers of two 1, 2, 4, ..., K, or uniformly over
1..K) and replaces the rest with one learnable "dropped" token before the decoder. One model
thus decodes from any prefix of 1..K tokens, coarse to fine: ``tok.decode(ids, keep=k)`` (or
``tok.decode(ids[:, :k])``) reads only the first k tokens.

``nested_dropout=False`` trains the same architecture on all K tokens every step: the
control of the benchmark (truncating its sequence at evaluation is then out of distribution).

Deviations from the paper:
- the decoder is the deterministic ViT decoder of TiTok trained with MSE, not a rectified-flow
  decoder (no sampling, so truncated reconstructions are blurry means rather than samples);
  FlexTok's REPA-style representation loss and its VAE latent space are left out;
- FSQ bottleneck with a small codebook (default [8, 5, 5, 5]) instead of FSQ with 64,000
  codes, so that the token prior stays small;
- CPU-sized widths for 28x28 grey images (see TiTok).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_choice, check_int
from tokenworks.registry import register
from tokenworks.vision.titok import TiTok
from tokenworks.vision.vit import LatentDecoder, LatentEncoder, causal_mask

__all__ = ["FlexTok", "register_mask"]


def register_mask(num_patches: int, num_registers: int, device=None) -> torch.Tensor:
    """Encoder attention mask over [patches; registers], True = forbidden: patches see only
    patches; register i sees all patches and registers 0..i."""
    p, k = num_patches, num_registers
    mask = torch.zeros(p + k, p + k, dtype=torch.bool, device=device)
    mask[:p, p:] = True
    mask[p:, p:] = causal_mask(k, device)
    return mask


@register("flextok", paper="P43")
@dataclass(kw_only=True, eq=False, repr=False)
class FlexTok(TiTok):
    """P43 ordered 1D tokenizer: causal registers + nested dropout, decodes any prefix."""

    variable_length = True

    num_latents: int = 32
    nested_dropout: bool = True
    schedule: str = "pow2"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.nested_dropout, bool):
            raise TypeError(f"nested_dropout must be a bool, got {self.nested_dropout!r}")
        check_choice("schedule", self.schedule, ("pow2", "uniform"))

    def build(self) -> None:
        self.encoder = LatentEncoder(**self.vit_options(), out_dim=self.latent_dim)
        self.decoder = LatentDecoder(**self.decoder_options(), in_dim=self.latent_dim, droppable=True)
        self.register_buffer("enc_mask", register_mask(self.encoder.num_patches, self.num_latents), persistent=False)

    def keep_choices(self) -> list[int]:
        """The prefix lengths nested dropout draws from."""
        if self.schedule == "uniform":
            return list(range(1, self.num_latents + 1))
        out = [1 << i for i in range(self.num_latents.bit_length()) if (1 << i) <= self.num_latents]
        return out if out[-1] == self.num_latents else [*out, self.num_latents]

    def draw_keep(self, batch: int, device=None) -> torch.Tensor:
        """Prefix lengths k (B,) for nested dropout, uniform over ``keep_choices()`` (global RNG)."""
        choices = torch.tensor(self.keep_choices(), device=device)
        return choices[torch.randint(0, len(choices), (batch,), device=device)]

    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(images, mask=self.enc_mask)  # (B, K, latent_dim), register i sees registers <= i

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        keep = None
        if self.training and self.nested_dropout and torch.is_grad_enabled():
            k = self.draw_keep(tokens.shape[0], tokens.device)  # (B,)
            keep = torch.arange(self.num_latents, device=tokens.device)[None, :] < k[:, None]  # (B, K)
        return self.decoder(tokens, keep=keep)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, captions=None, *, keep: int | None = None) -> torch.Tensor:
        """Decode the first ``keep`` tokens of ``ids`` (all of them by default)."""
        if keep is not None:
            check_int("keep", keep, min=1, max=self.num_latents)
            if isinstance(ids, torch.Tensor) and ids.ndim >= 2 and ids.shape[1] < keep:
                raise ValueError(f"keep ({keep}) exceeds the {ids.shape[1]} tokens in ids")
            ids = ids[:, :keep]
        return super().decode(ids, captions)
