"""P46 VA-VAE: Reconstruction vs. Generation, Taming Optimization Dilemma with Latent Diffusion
Models (vision-foundation-model alignment of the latent space).

Mechanism: the tokenizer's latent grid z (the encoder output, before the bottleneck) is
aligned with a frozen encoder's feature grid f of the same image by the VF loss:

    z'   = W z                                         (linear projection to the teacher's width)
    Lmcos = mean_ij ReLU(1 - m1 - cos(z'_ij, f_ij))     marginal cosine similarity
    Lmdms = mean_{a,b} ReLU(|cos(z'_a, z'_b) - cos(f_a, f_b)| - m2)   marginal distance matrix
    L_vf  = w_adaptive * vf_weight * (Lmcos + Lmdms),  w_adaptive = |grad L_rec| / |grad L_vf|

with both gradient norms taken at the encoder's last layer (the paper's adaptive weighting),
so the VF term pulls as hard as the reconstruction term whatever their scales. The margins
let the latents keep the detail the teacher does not encode.

VA-VAE is a 2D tokenizer (one latent per grid cell), so this is the 2D patch tokenizer of the
baseline (:mod:`patch2d`) with the VF loss; its 7x7 latent grid matches the teacher's.

Deviations from the paper:
- discrete tokens (the tokenizer's quantizer, FSQ by default) instead of a continuous KL-VAE,
  so that the same autoregressive token prior measures every tokenizer; the alignment acts on
  the pre-quantization latents;
- the teacher is the project's Fashion-MNIST classifier, not DINOv2 (see
  :mod:`tokenworks.vision.teacher`); margins m1 = 0.5, m2 = 0.25 and vf_weight = 0.1 follow our
  reading of the paper, not a tuning here; the distance-matrix term is computed within each
  image over its grid cells;
- no perceptual/adversarial losses, CPU-sized widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.registry import register
from tokenworks.vision.patch2d import PatchTokenizer2D
from tokenworks.vision.teacher import TeacherMixin

__all__ = ["VAVAE", "vf_loss"]


def vf_loss(z: torch.Tensor, f: torch.Tensor, margin_cos: float, margin_dist: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Lmcos, Lmdms) for projected latents z (B, N, C) and teacher features f (B, N, C)."""
    mcos = F.relu(1 - margin_cos - F.cosine_similarity(z, f, dim=-1)).mean()
    zn, fn = F.normalize(z, dim=-1), F.normalize(f, dim=-1)
    sim_z = zn @ zn.transpose(1, 2)  # (B, N, N)
    sim_f = fn @ fn.transpose(1, 2)
    mdms = F.relu((sim_z - sim_f).abs() - margin_dist).mean()
    return mcos, mdms


@register("vavae", paper="P46")
@dataclass(kw_only=True, eq=False, repr=False)
class VAVAE(TeacherMixin, PatchTokenizer2D):
    """P46 2D tokenizer whose latent grid is aligned with a frozen teacher (VF loss)."""

    vf_weight: float = 0.1
    margin_cos: float = 0.5
    margin_dist: float = 0.25
    adaptive: bool = True
    teacher_dim: int = 64

    def validate(self) -> None:
        super().validate()
        check_float("vf_weight", self.vf_weight, min=0.0)
        check_float("margin_cos", self.margin_cos, min=0.0, max=2.0)
        check_float("margin_dist", self.margin_dist, min=0.0, max=2.0)
        if not isinstance(self.adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {self.adaptive!r}")
        check_int("teacher_dim", self.teacher_dim, min=1)

    def build(self) -> None:
        super().build()
        self.vf_proj = nn.Linear(self.latent_dim, self.teacher_dim)

    def extra_loss(self, images: torch.Tensor, latents: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        if self.vf_weight == 0:
            return images.new_zeros(())
        target = self.teacher_features(images, self.grid)  # (B, N, teacher_dim)
        mcos, mdms = vf_loss(self.vf_proj(latents), target, self.margin_cos, self.margin_dist)
        vf = mcos + mdms
        weight = self.vf_weight
        if self.adaptive and torch.is_grad_enabled() and vf.requires_grad:
            last = self.encoder[-1].weight  # the encoder's last layer
            g_rec = torch.autograd.grad(F.mse_loss(recon, images), last, retain_graph=True)[0]
            g_vf = torch.autograd.grad(vf, last, retain_graph=True)[0]
            weight = weight * (g_rec.norm() / g_vf.norm().clamp_min(1e-8)).clamp(max=1e4).detach()
        return weight * vf
