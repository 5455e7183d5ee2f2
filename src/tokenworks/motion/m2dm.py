"""P41 M2DM: absorbing-state discrete diffusion over motion tokens whose per-token masking
schedule follows token importance (priority-centric), against the uniform schedule.

Mechanism (Kong et al. 2023, "Priority-centric human motion generation in discrete latent
space"): the forward process replaces tokens by MASK (the absorbing state); M2DM masks the less
important tokens first, so the salient ones survive longest and are generated first in reverse.
Here token i with importance w_i in [0, 1] is masked at time t with probability

    p_i(t) = t ** exp(beta * (w_i - 1/2))

(beta = 0 or w_i = 1/2 for all gives the uniform schedule p(t) = t). With one uniform draw u_i per
token, token i is masked at t iff u_i < p_i(t), i.e. after its masking time
tau_i = u_i ** exp(-beta * (w_i - 1/2)): for equal draws the masking order is the order of
importance. Importance "from the data" (``importance="data"``): the code's information content
-log p(code) in the training tokens, rank-normalised to [0, 1] over the codebook (rare codes carry
more information); ``importance="uniform"`` gives the uniform-schedule baseline with the same
network. Reverse process: from all MASK at t = 1, over ``steps`` equal time steps, each masked
token's value x0 is sampled from the network and unmasked with the posterior probability
(p_i(t) - p_i(s)) / p_i(t) evaluated at the sampled value's importance. The length is given.

Deviations: importance from code statistics, not from the paper's learned/text priority; no
Transformer VQ-VAE with global self-attention; 3 layers d=64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.checks import check_choice, check_float
from tokenworks.motion.base import MotionGenerator, pad_after
from tokenworks.registry import register

__all__ = ["M2DMGenerator", "code_importance", "mask_probability", "masking_times"]


def mask_probability(t, w: torch.Tensor, beta: float) -> torch.Tensor:
    """p_i(t) = t ** exp(beta * (w_i - 1/2)) for importances ``w`` in [0, 1]."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return t.clamp(0, 1) ** torch.exp(beta * (w.float() - 0.5))


def masking_times(u: torch.Tensor, w: torch.Tensor, beta: float) -> torch.Tensor:
    """Time after which each token is masked (u_i < p_i(t)  <=>  t > tau_i)."""
    return u.float() ** torch.exp(-beta * (w.float() - 0.5))


def code_importance(counts: torch.Tensor) -> torch.Tensor:
    """Information content -log p(code) of each code (counts + 1 smoothing), rank-normalised to
    [0, 1] (ties share their mean rank)."""
    info = -torch.log((counts.double() + 1) / (counts.double() + 1).sum())
    order = info.argsort()
    ranks = torch.empty_like(info)
    ranks[order] = torch.arange(len(info), dtype=info.dtype)
    for v in info.unique():  # ties -> mean rank
        same = info == v
        ranks[same] = ranks[same].mean()
    return (ranks / max(1, len(info) - 1)).float()


@register("m2dm", paper="P41")
@dataclass(kw_only=True, eq=False, repr=False)
class M2DMGenerator(MotionGenerator):
    """Absorbing discrete diffusion with an importance-ordered (or uniform) masking schedule."""

    bidirectional = True
    importance: str = "data"  # "data" or "uniform"
    beta: float = 3.0

    def validate(self) -> None:
        check_choice("importance", self.importance, ("data", "uniform"))
        check_float("beta", self.beta, min=0.0, max=50.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.register_buffer("code_weight", torch.full((self.codebook_size,), 0.5))

    def set_code_counts(self, counts: torch.Tensor) -> None:
        if self.importance == "data":
            self.code_weight.copy_(code_importance(counts))

    def weights(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.code_weight[tokens.clamp(0, self.codebook_size - 1)]

    def forward_mask(self, tokens: torch.Tensor, lengths: torch.Tensor, t, u: torch.Tensor) -> torch.Tensor:
        """Which tokens are masked at time ``t`` (B,) or scalar given draws ``u`` (B, N)."""
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1)
        valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]
        return (u < mask_probability(t, self.weights(tokens), self.beta)) & valid

    def _ids(self, tokens):
        return torch.cat([tokens, torch.full((tokens.shape[0], 1), self.PAD, dtype=tokens.dtype)], 1)

    def loss(self, tokens, lengths, cond):
        B, N = tokens.shape
        t = torch.rand(B).clamp_min(1e-3)
        u = torch.rand(B, N)
        masked = self.forward_mask(tokens, lengths, t, u)
        if not bool(masked.any(1).all()):  # at least one masked token per motion: the first to go
            tau = masking_times(u, self.weights(tokens), self.beta).masked_fill(torch.arange(N)[None] >= lengths[:, None], 2.0)
            masked |= torch.zeros_like(masked).scatter(1, tau.argmin(1, keepdim=True), True) & ~masked.any(1, keepdim=True)
        inp = torch.where(masked, torch.full_like(tokens, self.MASK), tokens)
        logits = self.logits(self._ids(inp), cond, self.full(lengths, self.seq_len))[:, 1 : N + 1, : self.END]
        return F.cross_entropy(logits[masked].float(), tokens[masked])

    def _generate(self, cond, lengths, steps, g):
        if lengths is None:
            raise ValueError("lengths must be given to m2dm (it does not predict the end of a motion)")
        B, N = cond.shape[0], self.max_tokens
        valid = torch.arange(N)[None] < lengths[:, None]
        cur = torch.full((B, N), self.MASK, dtype=torch.long)
        for k in range(steps):
            t, s = 1 - k / steps, 1 - (k + 1) / steps
            masked = (cur == self.MASK) & valid
            logits = self.logits(self._ids(cur), cond, self.full(lengths, self.seq_len))[:, 1 : N + 1, : self.END]
            x0, _ = self.sample(logits, g)
            w = self.weights(x0)
            pt, ps = mask_probability(t, w, self.beta), mask_probability(s, w, self.beta)
            unmask = torch.rand(B, N, generator=g) < (pt - ps) / pt.clamp_min(1e-12)
            cur = torch.where(masked & unmask, x0, cur)
        return pad_after(cur, lengths, self.PAD), lengths, steps
