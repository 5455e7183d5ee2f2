"""Baseline: MaskGIT (Chang et al. 2022), bidirectional masked token modelling with
confidence-based parallel decoding.

Training masks a fraction ``cos(pi/2 * u)`` (u ~ U(0, 1), at least one token) of each image's
tokens and predicts them from the label and the visible ones. Decoding starts from all MASK; at
step s of S every masked position is sampled, and all but ``floor(N * cos(pi/2 * (s+1)/S))``
of them are kept (at least one new per step), the most confident first (log-probability plus
Gumbel noise annealed linearly to 0, MaskGIT's ``choice_temperature``). The last step reveals
all. :func:`mask_schedule` is the number still masked after each step.

Choices: classifier-free guidance on the logits (MaskGIT had none; MAGE/MUSE-style), d=128,
2 layers; the network is the base class's :class:`~tokenworks.generate.base.Transformer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tokenworks.checks import check_float
from tokenworks.generate.base import ImageGenerator, Transformer, cross_entropy
from tokenworks.registry import register

__all__ = ["MaskGIT", "mask_schedule", "random_mask"]


def mask_schedule(n: int, steps: int) -> list[int]:
    """Tokens still masked after each of ``steps`` steps (cosine), strictly decreasing to 0."""
    left, out = n, []
    for s in range(steps):
        want = int(math.floor(n * math.cos(math.pi / 2 * (s + 1) / steps)))
        left = 0 if s == steps - 1 else max(0, min(want, left - 1))
        out.append(left)
    return out


def random_mask(B: int, N: int, device=None) -> torch.Tensor:
    """Training mask: ceil(N cos(pi/2 u)) random positions per row (at least one), (B, N) bool."""
    n_mask = (torch.cos(torch.pi / 2 * torch.rand(B, device=device)) * N).ceil().clamp(min=1)
    rank = torch.rand(B, N, device=device).argsort(1).argsort(1)
    return rank < n_mask[:, None]


@register("maskgit", family="GEN", cite="Chang et al. 2022, MaskGIT")
@dataclass(kw_only=True, eq=False, repr=False)
class MaskGIT(ImageGenerator):
    """Bidirectional transformer over [label, tokens with MASK]; cosine schedule."""

    gumbel: float = 4.5  # MaskGIT's choice temperature (annealed to 0)

    def validate(self) -> None:
        check_float("gumbel", self.gumbel, min=0.0)

    def build(self) -> None:
        self.MASK = self.codebook_size
        self.tok_emb = nn.Embedding(self.codebook_size + 1, self.d_model)
        self.pos_emb = nn.Parameter(torch.randn(self.num_tokens + 1, self.d_model) * 0.02)
        self.net = Transformer(self.d_model, self.layers, self.heads)
        self.head = nn.Linear(self.d_model, self.codebook_size)

    def logits(self, labels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """labels (B,), ids (B, N) with MASK -> logits (B, N, K)."""
        x = torch.cat([self.label_emb(labels)[:, None], self.tok_emb(ids)], 1) + self.pos_emb
        return self.head(self.net(x)[0][:, 1:])

    def loss(self, tokens, labels):
        masked = random_mask(*tokens.shape, device=tokens.device)
        inp = torch.where(masked, torch.full_like(tokens, self.MASK), tokens)
        logits = self.logits(self.drop_labels(labels), inp)
        return cross_entropy(logits[masked], tokens[masked])

    def reveal(self, cur, logits, s, steps, left, g):
        """One decoding step: sample masked positions, re-mask all but the most confident so that
        ``left`` (B,) stay masked. Returns the new ids (MASK where still masked)."""
        B, N = cur.shape
        masked = cur == self.MASK
        ids, p = self.sample_ids(logits, g)
        ids = torch.where(masked, ids, cur)
        noise = -torch.log(-torch.log(torch.rand(B, N, generator=g).clamp(1e-9, 1 - 1e-9)))
        conf = torch.log(p.clamp_min(1e-12)) + self.gumbel * (1 - (s + 1) / steps) * noise
        conf = conf.masked_fill(~masked, float("inf"))
        remask = (conf.argsort(1).argsort(1) < left[:, None]) & masked
        return torch.where(remask, torch.full_like(ids, self.MASK), ids)

    def _generate(self, labels, steps, g, tokens=None, keep=None):
        B, N = labels.shape[0], self.num_tokens
        cur = torch.full((B, N), self.MASK, dtype=torch.long)
        if keep is not None:
            cur = torch.where(keep, tokens, cur)
        free = (cur == self.MASK).sum(1)
        steps = max(1, min(steps, int(free.max())))
        left = torch.tensor([mask_schedule(int(f), steps) if f > 0 else [0] * steps for f in free])  # (B, steps)
        nfe = 0
        for s in range(steps):
            if not (cur == self.MASK).any():
                break
            logits = self.guided(self.logits, labels, cur)
            cur = self.reveal(cur, logits, s, steps, left[:, s], g)
            nfe += 1
        return cur, nfe

    def _complete(self, tokens, keep, labels, steps, g):
        return self._generate(labels, steps, g, tokens, keep)[0]
