"""Baseline: MAR (Li et al. 2024, "Autoregressive image generation without vector
quantization"): random-order masked autoregression over continuous tokens with a small
per-token flow head.

A bidirectional transformer sees the label and the continuous tokens, masked ones replaced by a
learned MASK vector, and gives each position a condition z; a small MLP head
(:class:`~tokenworks.generate.flow.FlowHead`) models the token given z. Training masks a cosine
fraction of the tokens and applies the head's loss at the masked positions (4 noise draws per
token, MAR's ``diffusion_batch_mul``). Generation visits the tokens in a random order and reveals
them in ``steps`` groups following MaskGIT's cosine schedule; each group's tokens are sampled
by ``flow_steps`` Euler steps of the head. ``nfe`` counts transformer passes (head FLOPs are in
the FLOP counts). Classifier-free guidance mixes the head's velocities; ``temperature`` scales
the starting noise.

Deviations: MAR's head is a denoising-diffusion MLP (DDPM, 100 steps); ours is flow matching
with Euler steps (the issue's choice; xAR uses it too). One bidirectional transformer instead
of MAR's MAE encoder-decoder; continuous tokens are a committed FSQ tokenizer's pre-rounding
latents (:mod:`tokenworks.generate.latents`), not a KL-VAE's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tokenworks.checks import check_int
from tokenworks.generate.base import ImageGenerator, Transformer
from tokenworks.generate.flow import FlowHead
from tokenworks.generate.maskgit import mask_schedule, random_mask
from tokenworks.registry import register

__all__ = ["MAR"]


@register("mar", family="GEN", cite="Li et al. 2024, MAR (autoregression without vector quantization)")
@dataclass(kw_only=True, eq=False, repr=False)
class MAR(ImageGenerator):
    """Masked autoregression over continuous tokens with a flow head."""

    continuous = True
    flow_steps: int = 16
    head_width: int = 128
    head_depth: int = 3

    def validate(self) -> None:
        check_int("flow_steps", self.flow_steps, min=1, max=10_000)
        check_int("head_width", self.head_width, min=8, max=8192)
        check_int("head_depth", self.head_depth, min=1, max=64)

    def seq_len(self) -> int:
        """Token slots after the label (Hi-MAR adds its pivots)."""
        return self.num_tokens

    def build(self) -> None:
        d = self.d_model
        self.in_proj = nn.Linear(self.token_dim, d)
        self.mask_emb = nn.Parameter(torch.zeros(d))
        self.pos_emb = nn.Parameter(torch.randn(self.seq_len() + 1, d) * 0.02)
        self.net = Transformer(d, self.layers, self.heads)
        self.head = FlowHead(self.token_dim, d, self.head_width, self.head_depth)

    def features(self, labels, x, visible, keys=None):
        """labels (B,), x (B, T, D), visible (B, T) bool, keys (B, T) bool positions that exist
        (None = all) -> z (B, T, d) for every position."""
        B = x.shape[0]
        h = torch.where(visible[..., None], self.in_proj(x), self.mask_emb)
        h = torch.cat([self.label_emb(labels)[:, None], h], 1) + self.pos_emb
        allowed = None
        if keys is not None:
            k = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), keys], 1)
            allowed = k[:, None, :].expand(-1, k.shape[1], -1) | torch.eye(k.shape[1], dtype=torch.bool, device=x.device)
        return self.net(h, allowed)[0][:, 1:]

    def loss(self, tokens, labels):
        masked = random_mask(*tokens.shape[:2], device=tokens.device)
        z = self.features(self.drop_labels(labels), tokens, ~masked)
        return self.head.loss(tokens[masked], z[masked])

    def fill(self, labels, x, todo, steps, g, keys=None):
        """Generate the positions ``todo`` (B, T) of x (B, T, D) in a random order, in ``steps``
        cosine-scheduled groups; the others stay as given. Returns (x, transformer passes)."""
        x = x.clone()
        B, T = todo.shape
        free = todo.sum(1)
        if int(free.max()) == 0:
            return x, 0
        steps = max(1, min(steps, int(free.max())))
        left = torch.tensor([mask_schedule(int(f), steps) if f > 0 else [0] * steps for f in free])  # (B, steps)
        # a random order over the todo positions: rank r = revealed when fewer than free-r remain
        score = torch.rand(B, T, generator=g).masked_fill(~todo, 2.0)
        rank = score.argsort(1).argsort(1)  # todo positions get ranks 0..free-1
        guided = self.cfg != 1.0
        lab = torch.cat([labels, torch.full_like(labels, self.NULL)]) if guided else labels
        done = ~todo
        for s in range(steps):
            new = todo & (rank < (free - left[:, s])[:, None]) & ~done
            if not new.any():
                continue
            z = self.features(lab, x.repeat(2 if guided else 1, 1, 1), done.repeat(2 if guided else 1, 1),
                              None if keys is None else keys.repeat(2 if guided else 1, 1))  # fmt: skip
            zc = z[:B][new] if not guided else torch.cat([z[:B][new], z[B:][new]])
            x[new] = self.head.sample(zc, self.flow_steps, g, self.temperature, self.cfg)
            done = done | new
        return x, steps

    def _generate(self, labels, steps, g):
        B = labels.shape[0]
        x = torch.zeros(B, self.num_tokens, self.token_dim)
        return self.fill(labels, x, torch.ones(B, self.num_tokens, dtype=torch.bool), steps, g)

    def _complete(self, tokens, keep, labels, steps, g):
        return self.fill(labels, tokens.float(), ~keep, steps, g)[0]
