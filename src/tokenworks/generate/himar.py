"""P25 Hi-MAR: hierarchical masked autoregression, low-resolution pivot tokens first, then the
dense tokens conditioned on them.

Mechanism (Zheng et al. 2025, "Hierarchical Masked Autoregressive Models with Low-Resolution
Token Pivots"): dense tokens generated in parallel lack global structure early on; Hi-MAR first
generates a few tokens of a low-resolution version of the image (pivots), which carry the global
layout, then generates the dense tokens with all pivots visible. Here the pivots are the dense
continuous latents average-pooled from the g x g grid to p x p (``pivot_grid``, 3x3 for 7x7) and
one transformer + flow head serves both phases over ``[label, p*p pivots, N dense]``:
phase 1 generates the pivots with the dense slots absent from attention, phase 2 generates
the dense tokens with the pivots visible. Training picks a phase per image (``pivot_prob``) and
masks a cosine fraction of that phase's tokens. ``steps`` are split: ``max(1, steps // 3)`` for
the pivots, the rest for the dense tokens (``nfe`` counts both).

Deviations: pivots come from pooling the same tokenizer's latents (Hi-MAR tokenizes a
low-resolution image); one shared transformer with slot embeddings instead of Hi-MAR's
scale-aware transformer; no separate pivot-conditioned diffusion head (the head sees z, which
attends to the pivots); flow matching instead of DDPM, as in :mod:`tokenworks.generate.mar`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from tokenworks.checks import check_float, check_int
from tokenworks.generate.maskgit import random_mask
from tokenworks.generate.mar import MAR
from tokenworks.registry import register

__all__ = ["HiMAR"]


@register("himar", paper="P25")
@dataclass(kw_only=True, eq=False, repr=False)
class HiMAR(MAR):
    """Pivot tokens (pooled latents) first, dense tokens conditioned on them."""

    pivot_grid: int = 3
    pivot_prob: float = 0.3

    def validate(self) -> None:
        super().validate()
        g = math.isqrt(self.num_tokens)
        if g * g != self.num_tokens:
            raise ValueError(f"num_tokens must be a square grid for himar, got {self.num_tokens}")
        check_int("pivot_grid", self.pivot_grid, min=1, max=g)
        check_float("pivot_prob", self.pivot_prob, min=0.0, max=1.0, min_open=True, max_open=True)

    @property
    def num_pivots(self) -> int:
        return self.pivot_grid**2

    def seq_len(self) -> int:
        return self.num_pivots + self.num_tokens

    def pivots(self, dense: torch.Tensor) -> torch.Tensor:
        """Dense latents (B, N, D) -> pivot latents (B, p*p, D) by average pooling the grid."""
        g = math.isqrt(self.num_tokens)
        grid = rearrange(dense, "b (h w) d -> b d h w", h=g)
        return rearrange(F.adaptive_avg_pool2d(grid, self.pivot_grid), "b d h w -> b (h w) d")

    def loss(self, tokens, labels):
        B, N, _ = tokens.shape
        P = self.num_pivots
        x = torch.cat([self.pivots(tokens), tokens], 1)  # (B, P+N, D)
        phase1 = torch.rand(B, device=tokens.device) < self.pivot_prob
        m_piv, m_den = random_mask(B, P, device=tokens.device), random_mask(B, N, device=tokens.device)
        masked = torch.cat([m_piv & phase1[:, None], m_den & ~phase1[:, None]], 1)
        keys = torch.cat([torch.ones(B, P, dtype=torch.bool, device=tokens.device), (~phase1[:, None]).expand(B, N)], 1)
        z = self.features(self.drop_labels(labels), x, ~masked & keys, keys)
        return self.head.loss(x[masked], z[masked])

    def dense_given_pivots(self, labels, pivots, steps, g, dense=None, keep=None):
        """Phase 2: dense tokens (B, N, D) given pivots (B, P, D) (and kept dense tokens)."""
        B, N, P = labels.shape[0], self.num_tokens, self.num_pivots
        dense = torch.zeros(B, N, self.token_dim) if dense is None else dense.float()
        todo_d = torch.ones(B, N, dtype=torch.bool) if keep is None else ~keep
        x = torch.cat([pivots, dense], 1)
        todo = torch.cat([torch.zeros(B, P, dtype=torch.bool), todo_d], 1)
        x, nfe = self.fill(labels, x, todo, steps, g)
        return x[:, P:], nfe

    def _generate(self, labels, steps, g):
        B, N, P = labels.shape[0], self.num_tokens, self.num_pivots
        s1 = max(1, steps // 3)
        s2 = max(1, steps - s1)
        x = torch.zeros(B, P + N, self.token_dim)
        keys = torch.cat([torch.ones(B, P, dtype=torch.bool), torch.zeros(B, N, dtype=torch.bool)], 1)
        todo = torch.cat([torch.ones(B, P, dtype=torch.bool), torch.zeros(B, N, dtype=torch.bool)], 1)
        x, n1 = self.fill(labels, x, todo, s1, g, keys)
        dense, n2 = self.dense_given_pivots(labels, x[:, :P], s2, g)
        return dense, n1 + n2

    def _complete(self, tokens, keep, labels, steps, g):
        # pivots of the kept tokens are not defined when some are missing: generate the pivots
        # of the image first when anything is to be generated, keeping the kept dense tokens
        if bool(keep.all()):
            return tokens.clone()
        B, N, P = labels.shape[0], self.num_tokens, self.num_pivots
        x = torch.cat([torch.zeros(B, P, self.token_dim), tokens.float()], 1)
        keys = torch.cat([torch.ones(B, P, dtype=torch.bool), keep], 1)
        todo = torch.cat([torch.ones(B, P, dtype=torch.bool), torch.zeros(B, N, dtype=torch.bool)], 1)
        s1 = max(1, steps // 3)
        x, _ = self.fill(labels, x, todo, s1, g, keys)
        return self.dense_given_pivots(labels, x[:, :P], max(1, steps - s1), g, tokens, keep)[0]
