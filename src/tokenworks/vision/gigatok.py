"""P04 GigaTok: Scaling Visual Tokenizers to 3 Billion Parameters (semantic regularization).

Mechanism: a 1D tokenizer (TiTok-style here, as GigaTok recommends 1D tokenizers) whose
*decoder* features are kept close to a frozen pretrained encoder's features of the same
image. After layer ``reg_layer`` of the decoder, the hidden states at the patch positions go
through a small MLP and are pulled toward the teacher's feature map at the same positions:

    L = L_rec + reg_weight * mean_i (1 - cos(MLP(h_i), f_i))

The regularizer constrains the latent space's complexity, which the paper finds keeps the
downstream autoregressive prior easy to learn as the tokenizer grows (the reconstruction vs
generation dilemma); the benchmark measures that with the held-out NLL of a token prior.

Deviations from the paper:
- the teacher is the project's Fashion-MNIST classifier (last conv map, 64 x 7 x 7), not
  DINOv2 (see :mod:`tokenworks.vision.teacher`); its 7x7 map matches the decoder's 7x7 grid
  (``decoder_patch`` 4; it would be average-pooled to a coarser grid);
- ``reg_weight`` 0.5 and a two-layer MLP are chosen, not tuned; no entropy loss (GigaTok adds
  one for billion-scale VQ; the FSQ bottleneck here has no codebook to collapse), no
  perceptual/adversarial losses, CPU-sized widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.registry import register
from tokenworks.vision.teacher import TeacherMixin
from tokenworks.vision.titok import TiTok

__all__ = ["GigaTok"]


@register("gigatok", paper="P04")
@dataclass(kw_only=True, eq=False, repr=False)
class GigaTok(TeacherMixin, TiTok):
    """P04 TiTok whose decoder features are aligned (cosine) with a frozen teacher's."""

    reg_weight: float = 0.5
    reg_layer: int = 1
    teacher_dim: int = 64

    def validate(self) -> None:
        super().validate()
        check_float("reg_weight", self.reg_weight, min=0.0)
        check_int("reg_layer", self.reg_layer, min=1, max=self.decoder_depth)
        check_int("teacher_dim", self.teacher_dim, min=1)

    def build(self) -> None:
        super().build()
        self.sem_proj = nn.Sequential(nn.Linear(self.decoder_width, self.decoder_width), nn.GELU(), nn.Linear(self.decoder_width, self.teacher_dim))

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.decoder(tokens)
        images, hidden = self.decoder(tokens, tap=self.reg_layer)  # hidden: (B, P, W) at the patch positions
        self.__dict__["_hidden"] = hidden  # read by extra_loss in the same training step
        return images

    def semantic_loss(self, hidden: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """mean_i (1 - cos(MLP(h_i), f_i)) over patch positions i; hidden (B, P, W)."""
        target = self.teacher_features(images, self.decoder.grid)  # (B, P, teacher_dim)
        return (1 - F.cosine_similarity(self.sem_proj(hidden), target, dim=-1)).mean()

    def extra_loss(self, images: torch.Tensor, latents: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        hidden = self.__dict__.pop("_hidden", None)
        if hidden is None or self.reg_weight == 0:
            return images.new_zeros(())
        return self.reg_weight * self.semantic_loss(hidden, images)
