"""P58 Token-Shuffle: Towards High-Resolution Image Generation with Autoregressive Models.

Mechanism. An autoregressive image model spends one transformer position per image token.
Token-Shuffle merges each ``s x s`` window of neighbouring tokens into one position *along the
channel dimension* before the transformer and splits it again after:

- token-shuffle (input): each token's embedding (dim d) is projected down to d / s^2, the s^2
  embeddings of a window are concatenated (d again) and refined by a residual MLP, so the
  transformer sees N / s^2 positions (window raster order);
- token-unshuffle (output): each position's hidden state is refined by a residual MLP, split
  into s^2 parts of d / s^2, each projected back to d and read by the shared (tied) output
  head, so one network evaluation predicts the s^2 tokens of the next window, sampled
  independently given it (N / s^2 evaluations per image instead of N).

:func:`token_shuffle` / :func:`token_unshuffle` are the pure rearrangements ((B, N, C) <->
(B, N / s^2, C s^2), channel layout ``(c s1 s2)`` as :func:`torch.nn.functional.pixel_unshuffle`);
:class:`TokenShuffleAR` is :class:`~tokenworks.generate.ar.RasterAR` (the same HF Llama, label
token, KV cache and guidance) with the two MLP stages around it. With ``shuffle=1`` no stage is
added and the model *is* RasterAR (same parameters, same samples).

Deviations / choices: class labels instead of text prompts (the paper trains jointly with text
in an MLLM); one residual MLP on each side (the paper stacks a few); the tokens of a window are
sampled independently given the window's hidden state (as in the paper); a 14x14 grid of
``patch2d-7x7`` ids from 2x2 same-class scenes (:mod:`tokenworks.generate.scenes`) so that there
is something to merge; ``s`` must divide the grid side (s=4 does not divide 14).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenworks.checks import check_int
from tokenworks.generate.ar import RasterAR
from tokenworks.registry import register

__all__ = ["TokenShuffleAR", "token_shuffle", "token_unshuffle", "window_positions"]


def _side(n: int, s: int, name: str = "shuffle") -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"tokens must form a square grid, got {n} tokens")
    if side % s:
        raise ValueError(f"{name} must divide the token grid side {side}, got {s}")
    return side


def token_shuffle(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, N, C) tokens of a square raster grid -> (B, N / s^2, C s^2): each s x s window
    concatenated along channels (layout ``(c s1 s2)``), windows in raster order."""
    check_int("shuffle", s, min=1)
    side = _side(x.shape[1], s)
    return rearrange(x, "b (h s1 w s2) c -> b (h w) (c s1 s2)", s1=s, s2=s, h=side // s)


def token_unshuffle(y: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse of :func:`token_shuffle`: (B, M, C s^2) -> (B, M s^2, C) in raster order."""
    check_int("shuffle", s, min=1)
    if y.shape[-1] % (s * s):
        raise ValueError(f"channels must be divisible by shuffle**2={s * s}, got {y.shape[-1]}")
    hw = _side(y.shape[1], 1)
    return rearrange(y, "b (h w) (c s1 s2) -> b (h s1 w s2) c", s1=s, s2=s, h=hw)


def window_positions(n: int, s: int) -> torch.Tensor:
    """(N / s^2, s^2) raster positions of the tokens of each window, in the shuffled order."""
    return token_shuffle(torch.arange(n)[None, :, None], s)[0]


class ResMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        return x + self.net(x)


@register("token-shuffle", paper="P58")
@dataclass(kw_only=True, eq=False, repr=False)
class TokenShuffleAR(RasterAR):
    """RasterAR over s x s windows merged along channels (``shuffle`` = s; 1 = RasterAR)."""

    shuffle: int = 1

    def validate(self) -> None:
        check_int("shuffle", self.shuffle, min=1, max=16)
        _side(self.num_tokens, self.shuffle)
        if self.d_model % (self.shuffle**2):
            raise ValueError(f"d_model must be divisible by shuffle**2={self.shuffle**2}, got {self.d_model}")

    def build(self) -> None:
        super().build()
        s2 = self.shuffle**2
        if s2 > 1:
            d = self.d_model
            self.down = nn.Linear(d, d // s2)  # token-shuffle: d -> d / s^2 per token, s^2 concatenated
            self.fuse = ResMLP(d)
            self.split = ResMLP(d)  # token-unshuffle: refine, split into s^2 parts, d / s^2 -> d
            self.up = nn.Linear(d // s2, d)
            self.register_buffer("windows", window_positions(self.num_tokens, self.shuffle), persistent=False)

    @property
    def positions(self) -> int:
        """Transformer positions per image (tokens through the transformer, label excluded)."""
        return self.num_tokens // self.shuffle**2

    def merge(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, k s^2) of whole windows in shuffled order -> inputs (B, k, d)."""
        e = self.model.model.embed_tokens(ids)  # (B, k s^2, d)
        e = rearrange(self.down(e), "b (m k) c -> b m (c k)", k=self.shuffle**2)
        return self.fuse(e)

    def window_logits(self, h: torch.Tensor) -> torch.Tensor:
        """hidden (B, M, d) -> logits (B, M, s^2, V) of the next window's tokens."""
        parts = rearrange(self.split(h), "b m (c k) -> b m k c", k=self.shuffle**2)
        return self.model.lm_head(self.up(parts))

    def _shuffled(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.windows.reshape(-1)]  # (B, N) raster -> windows' tokens, in order

    def loss(self, tokens, labels):
        if self.shuffle == 1:
            return super().loss(tokens, labels)
        lab = self.model.model.embed_tokens(self.label_ids(self.drop_labels(labels))[:, None])
        ids = self._shuffled(tokens)
        x = torch.cat([lab, self.merge(ids)[:, :-1]], 1)  # (B, M, d): position m predicts window m
        h = self.model.model(inputs_embeds=x).last_hidden_state
        logits = self.window_logits(h).flatten(1, 2)  # (B, N, V) in shuffled order
        return F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten())

    @torch.no_grad()
    def nll_bits(self, tokens, labels=None):
        if self.shuffle == 1:
            return super().nll_bits(tokens, labels)
        raise NotImplementedError("nll_bits is defined for shuffle=1 only (windows are sampled jointly)")

    def _generate(self, labels, steps, g):
        if self.shuffle == 1:
            return super()._generate(labels, steps, g)
        from transformers import DynamicCache

        B, K, k = labels.shape[0], self.codebook_size, self.shuffle**2
        guided = self.cfg != 1.0
        lab = torch.cat([labels, torch.full_like(labels, self.NULL)]) if guided else labels
        cache = DynamicCache()
        x = self.model.model.embed_tokens(self.label_ids(lab)[:, None])
        out = torch.empty(B, self.positions, k, dtype=torch.long)
        for m in range(self.positions):
            h = self.model.model(inputs_embeds=x, past_key_values=cache, use_cache=True).last_hidden_state[:, -1:]
            logits = self.window_logits(h)[:, 0, :, :K]  # (B', s^2, K)
            if guided:
                logits = logits[B:] + self.cfg * (logits[:B] - logits[B:])
            out[:, m], _ = self.sample_ids(logits, g)
            x = self.merge(out[:, m].repeat(2 if guided else 1, 1))
        tokens = torch.empty(B, self.num_tokens, dtype=torch.long)
        tokens[:, self.windows.reshape(-1)] = out.flatten(1)
        return tokens, self.positions
