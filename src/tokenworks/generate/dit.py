"""Baseline: a small class-conditional DiT (Peebles & Xie 2023) trained by flow matching
(Lipman et al. 2023) over continuous tokenizer latents, with a switchable attention variant.

    gen = tokenworks.create("dit", num_tokens=196, token_dim=4, upsample=2, attention="fit",
                            attention_options={"group": 7, "latents": 8}, layers=2)
    out = gen.generate([0, 3], steps=16, seed=0)      # (B, 196, 4) latents

The tokens are the FSQ pre-rounding latents of a committed tokenizer
(:mod:`tokenworks.generate.latents`) on its square grid; with ``upsample`` = u they are that
grid nearest-upsampled u times per side (u^2 as many tokens, same image: how the
``generator-compression`` suite gets longer sequences from one tokenizer), and decoding
average-pools back. Every token is embedded (linear), gets a fixed 2-D sine-cosine position,
and passes the attention variant's layers (:mod:`tokenworks.generate.attention`; adaLN-single
conditioning on time + label as in PixArt-alpha); a linear layer (small init) gives the
velocity. Training: the straight path of ``flow_matching`` (``x_t = t x_1 + (1 - t) x_0``,
x_0 ~ N(0, I), uniform t), MSE on the velocity; sampling: ``steps`` Euler steps of
``flow_matching``'s ODE solver from t = 0 to 1 (:func:`tokenworks.generate.flow.euler`),
classifier-free guidance on the velocity, ``temperature`` scales the starting noise. ``nfe`` =
``steps``.

Deviations from DiT: no patchify (a latent token is one token), flow matching instead of DDPM,
adaLN-single (PixArt) instead of per-block adaLN-Zero (fewer parameters, the same for every
variant), no learned sigma, the output layer starts small instead of zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenworks.checks import ArgumentError, check_int
from tokenworks.generate.attention.base import DiTAttention, sincos_2d
from tokenworks.generate.base import ImageGenerator
from tokenworks.generate.flow import _PATH, euler, time_embedding
from tokenworks.registry import register

__all__ = ["DiT", "pool_latents", "upsample_latents"]


def upsample_latents(tokens: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, n*n, D) tokens on a square grid -> (B, (u n)^2, D), each token repeated u x u."""
    if factor == 1:
        return tokens
    n = math.isqrt(tokens.shape[1])
    x = rearrange(tokens, "b (h w) d -> b d h w", h=n)
    return rearrange(x.repeat_interleave(factor, 2).repeat_interleave(factor, 3), "b d h w -> b (h w) d")


def pool_latents(tokens: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`upsample_latents` (average of each u x u block; exact on upsampled tokens)."""
    if factor == 1:
        return tokens
    n = math.isqrt(tokens.shape[1])
    x = F.avg_pool2d(rearrange(tokens, "b (h w) d -> b d h w", h=n), factor)
    return rearrange(x, "b d h w -> b (h w) d")


@register("dit", family="GEN", cite="Peebles & Xie 2023, DiT; Lipman et al. 2023, flow matching")
@dataclass(kw_only=True, eq=False, repr=False)
class DiT(ImageGenerator):
    """Flow-matching DiT over continuous latents; ``attention`` names a registered variant."""

    continuous = True
    attention: str = "full-attention"
    attention_options: dict = field(default_factory=dict)
    upsample: int = 1

    def validate(self) -> None:
        from tokenworks.registry import get

        check_int("upsample", self.upsample, min=1, max=16)
        side = math.isqrt(self.num_tokens)
        if side * side != self.num_tokens:
            raise ArgumentError("num_tokens", f"must be a square number (tokens on a square grid), got {self.num_tokens}")
        if side % self.upsample:
            raise ArgumentError("upsample", f"must divide the grid side {side}, got {self.upsample}")
        if self.d_model % 4:
            raise ArgumentError("d_model", f"must be divisible by 4 (2-D sine-cosine positions), got {self.d_model}")
        if not isinstance(self.attention_options, dict):
            raise ArgumentError("attention_options", f"must be a dict, got {self.attention_options!r}")
        info = get(self.attention)
        if info.kind != DiTAttention.kind:
            raise ArgumentError("attention", f"must name a DiT attention variant ({DiTAttention.kind}), got {self.attention!r}")
        self.grid = (side, side)

    def build(self) -> None:
        from tokenworks.registry import create

        d = self.d_model
        self.in_proj = nn.Linear(self.token_dim, d)
        self.register_buffer("pos", sincos_2d(*self.grid, d), persistent=False)
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # adaLN-single
        self.backbone = create(self.attention, **self.attention_options).setup(d, self.heads, self.layers, self.grid)
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, self.token_dim)
        for m in (self.t_block[1], self.final_mod[1]):  # adaLN starts from the per-layer tables alone
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.out.weight, std=0.02)  # small, not zero as in DiT: a zero output layer would stop every gradient at step 0
        nn.init.zeros_(self.out.bias)

    @classmethod
    def prepare_tokens(cls, tokens: torch.Tensor, options: dict) -> torch.Tensor:
        """The tokenizer's latents -> this generator's training tokens (upsampled)."""
        return upsample_latents(tokens, int(options.get("upsample", 1)))

    def velocity(self, x, t, labels, g=None):
        """x (B, L, D) at times t (B,), labels (B,) -> velocity (B, L, D)."""
        c = self.t_mlp(time_embedding(t, self.d_model)) + self.label_emb(labels)
        h = self.in_proj(x) + self.pos
        h = self.backbone(h, self.t_block(c), {"g": g})
        shift, scale = self.final_mod(c).chunk(2, -1)
        return self.out(self.final_norm(h) * (1 + scale[:, None]) + shift[:, None])

    def loss(self, tokens, labels):
        tokens = self.check_tokens(tokens).float()
        x0 = torch.randn_like(tokens)
        t = torch.rand(tokens.shape[0], device=tokens.device)
        path = _PATH.sample(x_0=x0, x_1=tokens, t=t)
        return (self.velocity(path.x_t, t, self.drop_labels(labels)) - path.dx_t).pow(2).mean()

    def _generate(self, labels, steps, g):
        B = labels.shape[0]
        x0 = torch.randn(B, self.num_tokens, self.token_dim, generator=g) * self.temperature

        def vel(x, t):
            return self.guided(lambda lab, xx, tt: self.velocity(xx, tt, lab, g), labels, x, t)

        return euler(vel, x0, steps), steps

    def decode(self, tokens, tokenizer):
        from tokenworks.generate.latents import decode_latents

        return decode_latents(tokenizer, pool_latents(tokens, self.upsample))
