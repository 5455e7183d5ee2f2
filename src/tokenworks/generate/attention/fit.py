"""P03 FIT (Chen & Li 2023, "FIT: Far-reaching interleaved transformers"): local layers inside
groups of tokens interleaved with global layers over a few latents per group.

The L tokens are split into G groups (``group`` x ``group_w`` windows of the grid, raster order),
each with ``latents`` learned latent tokens (M = G * latents in all). Each FIT layer's token
mixing runs, in order:

1. *local*: self-attention inside each group, O(L * S) with S = L / G tokens per group;
2. *read*: each group's latents cross-attend to the group's (locally updated) tokens, O(L * m);
3. *global*: a transformer layer (self-attention + MLP, adaLN-modulated) over all M latents,
   O(M^2) -- the only place where groups exchange information;
4. *write*: each group's tokens cross-attend to the group's latents, O(L * m).

The update is local + write; the latents persist from layer to layer (``ctx["z"]``), as in
FIT where the latents are the network's global memory. Attention cost per layer is
``4 d (L S + 2 L m + M^2)`` multiply-adds x 2 (the tests check the measured FLOPs against it);
with S ~ L^(1/3) and m fixed it grows as L^(4/3) instead of full attention's L^2 (the paper's
claim; the ``generator-compression`` suite fits the exponent). With one group and the write
projection set to zero, a FIT stack is exactly a full-attention stack (tested).

Deviations: read and write are single cross-attentions without their own MLPs, and the token
MLP follows the write (FIT has local layers, then read, global layers, write); one local and
one global layer per FIT layer; latents start as a learned (m, d) table plus the group's 2-D
sine-cosine position (the paper learns them per group; ours work at any grid size, so one model
serves the cost-vs-tokens sweep). FIT's RIN-style self-conditioning of latents across sampling
steps is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import ArgumentError, check_int
from tokenworks.generate.attention.base import Attention, DiTAttention, modulate, sincos_2d
from tokenworks.registry import register

__all__ = ["FIT"]


@register("fit", paper="P03")
@dataclass(kw_only=True, eq=False, repr=False)
class FIT(DiTAttention):
    """Local attention in groups + read / global latent layer / write, every layer."""

    group: int = 7  # group height (tokens); group_w = 0: square groups
    group_w: int = 0
    latents: int = 8  # per group

    def validate(self) -> None:
        check_int("group", self.group, min=1, max=4096)
        check_int("group_w", self.group_w, min=0, max=4096)
        check_int("latents", self.latents, min=1, max=4096)

    def group_shape(self) -> tuple[int, int]:
        return self.group, self.group_w or self.group

    def check_grid(self, grid):
        gh, gw = self.group_shape()
        if grid[0] % gh:
            raise ArgumentError("group", f"must divide the token grid's height {grid[0]} (grid {grid[0]}x{grid[1]}), got {gh}")
        if grid[1] % gw:
            raise ArgumentError("group_w" if self.group_w else "group", f"must divide the token grid's width {grid[1]} (grid {grid[0]}x{grid[1]}), got {gw}")

    def build(self) -> None:
        d, n = self.d, self.layers
        mk = lambda: nn.ModuleList(Attention(d, self.heads) for _ in range(n))  # noqa: E731
        self.local, self.read, self.glob, self.write = mk(), mk(), mk(), mk()
        self.glob_mlp = nn.ModuleList(nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d)) for _ in range(n))
        self.latent_emb = nn.Parameter(torch.randn(self.latents, d) * 0.02)
        self.latent_table = nn.Parameter(torch.randn(n, 6, d) / d**0.5)
        self.znorm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)

    def begin(self, x, mod, ctx):
        gh, gw = self.group_shape()
        nh, nw = ctx["grid"][0] // gh, ctx["grid"][1] // gw
        pos = sincos_2d(nh, nw, self.d).to(x)  # (G, d) group positions
        z = self.latent_emb[None, None] + pos[None, :, None]  # (1, G, m, d)
        ctx["z"] = z.expand(x.shape[0], -1, -1, -1).reshape(-1, self.latents, self.d)  # (B*G, m, d)

    def mix(self, i, h, ctx):
        gh, gw = self.group_shape()
        H, W = ctx["grid"]
        B = h.shape[0]
        hg = rearrange(h, "b (nh gh nw gw) d -> (b nh nw) (gh gw) d", gh=gh, nw=W // gw, gw=gw)
        loc = self.local[i](hg)  # (B*G, S, d)
        h2 = hg + loc
        z = ctx["z"]
        z = z + self.read[i](self.znorm(z), h2)  # latents read their group
        zz = rearrange(z, "(b g) m d -> b (g m) d", b=B)
        s1, c1, g1, s2, c2, g2 = (ctx["mod"].reshape(B, 6, self.d) + self.latent_table[i]).unbind(1)
        zz = zz + g1[:, None] * self.glob[i](modulate(self.znorm(zz), s1, c1))
        zz = zz + g2[:, None] * self.glob_mlp[i](modulate(self.znorm(zz), s2, c2))
        z = rearrange(zz, "b (g m) d -> (b g) m d", m=self.latents)
        ctx["z"] = z
        out = loc + self.write[i](h2, z)  # tokens read their group's latents
        return rearrange(out, "(b nh nw) (gh gw) d -> b (nh gh nw gw) d", b=B, nh=H // gh, gh=gh, gw=gw)
