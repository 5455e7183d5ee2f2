"""P16 MMM: masked motion modelling with confidence-based parallel decoding and editing by masking.

Mechanism (Pinyoanuntapong et al. 2024): a bidirectional transformer sees the text condition
and the motion tokens with some replaced by MASK and predicts the masked ones. Training masks a
fraction ``cos(pi/2 * u)`` (u ~ U(0, 1), at least one token) of each motion's tokens; decoding
starts from all MASK and, over ``steps`` iterations, samples every masked token, keeps the most
confident and re-masks the rest so that a cosine fraction stays masked (MaskGIT's schedule with
its annealed Gumbel noise on the confidences). The length is given (MMM uses the ground-truth
length or a separate length estimator).

Editing (:meth:`MMMGenerator.edit`): tokens to keep are fixed in the input and never re-masked,
the others start masked; in-betweening keeps a prefix and a suffix, prefix (suffix) completion
keeps the start (end). The kept tokens are returned unchanged, exactly.

Deviations: no classifier-free guidance, no token-replacement noise, MiniLM text embedding
instead of CLIP, 3 layers d=64, FSQ codes instead of a 512-code VQ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.checks import check_float
from tokenworks.motion.base import MotionGenerator, check_steps, cosine_ratio, pad_after
from tokenworks.registry import register

__all__ = ["MMMGenerator", "edit_mask"]


def edit_mask(lengths: torch.Tensor, max_tokens: int, task: str, keep: int) -> torch.Tensor:
    """Which tokens an edit keeps: ``inbetween`` keeps ``keep`` tokens at both ends, ``prefix``
    (``suffix``) keeps the first (last) ``keep`` tokens; (B, max_tokens) bool."""
    if task not in ("inbetween", "prefix", "suffix"):
        raise ValueError(f"task must be one of inbetween, prefix, suffix, got {task!r}")
    pos = torch.arange(max_tokens)[None]
    L = lengths[:, None]
    head = pos < keep
    tail = (pos >= L - keep) & (pos < L)
    return {"inbetween": head | tail, "prefix": head & (pos < L), "suffix": tail}[task]


@register("mmm", paper="P16")
@dataclass(kw_only=True, eq=False, repr=False)
class MMMGenerator(MotionGenerator):
    """Masked motion model: parallel confidence decoding, editing by masking."""

    bidirectional = True
    gumbel: float = 4.5  # MaskGIT's choice temperature (annealed to 0)

    def validate(self) -> None:
        check_float("gumbel", self.gumbel, min=0.0)

    def _ids(self, tokens):
        return torch.cat([tokens, torch.full((tokens.shape[0], 1), self.PAD, dtype=tokens.dtype)], 1)

    def loss(self, tokens, lengths, cond):
        B, N = tokens.shape
        valid = torch.arange(N)[None] < lengths[:, None]
        ratio = torch.cos(torch.pi / 2 * torch.rand(B))
        n_mask = (ratio * lengths).ceil().clamp(min=1)
        score = torch.rand(B, N).masked_fill(~valid, 2.0)
        rank = score.argsort(1).argsort(1)
        masked = (rank < n_mask[:, None]) & valid
        inp = torch.where(masked, torch.full_like(tokens, self.MASK), tokens)
        logits = self.logits(self._ids(inp), cond, self.full(lengths, self.seq_len))[:, 1 : N + 1, : self.END]
        return F.cross_entropy(logits[masked].float(), tokens[masked])

    def decode(self, cond, lengths, steps, g, tokens=None, keep=None):
        """Confidence-based parallel decoding from ``tokens`` with ``keep`` fixed (all masked if None)."""
        B, N = cond.shape[0], self.max_tokens
        valid = torch.arange(N)[None] < lengths[:, None]
        keep = torch.zeros(B, N, dtype=torch.bool) if keep is None else keep & valid
        cur = torch.full((B, N), self.MASK, dtype=torch.long)
        if tokens is not None:
            cur = torch.where(keep, tokens, cur)
        free = (valid & ~keep).sum(1)  # tokens to generate
        for s in range(steps):
            masked = (cur == self.MASK) & valid
            logits = self.logits(self._ids(cur), cond, self.full(lengths, self.seq_len))[:, 1 : N + 1, : self.END]
            ids, p = self.sample(logits, g)
            ids = torch.where(masked, ids, cur)
            left = (free.float() * cosine_ratio(s + 1, steps)).floor().long()  # still masked after this step
            noise = -torch.log(-torch.log(torch.rand(B, N, generator=g).clamp(1e-9, 1 - 1e-9)))
            conf = torch.log(p.clamp_min(1e-12)) + self.gumbel * (1 - (s + 1) / steps) * noise
            conf = conf.masked_fill(~masked, float("inf"))  # fixed / already decoded tokens stay
            rank = conf.argsort(1).argsort(1)
            remask = (rank < left[:, None]) & masked
            cur = torch.where(remask, torch.full_like(ids, self.MASK), ids)
        return pad_after(cur, lengths, self.PAD)

    def _generate(self, cond, lengths, steps, g):
        if lengths is None:
            raise ValueError("lengths must be given to mmm (it does not predict the end of a motion)")
        return self.decode(cond, lengths, steps, g), lengths, steps

    @torch.no_grad()
    def edit(self, tokens: torch.Tensor, keep: torch.Tensor, labels, *, lengths, steps: int = 8, seed: int = 0):
        """Regenerate the tokens not in ``keep`` (B, max_tokens) given the kept ones; returns
        (B, max_tokens) tokens whose kept entries equal the input exactly."""
        check_steps(steps)
        cond = self.conditions(labels)
        lengths = self.check_lengths(lengths, cond.shape[0])
        if tokens.shape != (cond.shape[0], self.max_tokens) or keep.shape != tokens.shape:
            raise ValueError(f"tokens and keep must have shape ({cond.shape[0]}, {self.max_tokens}), got {tuple(tokens.shape)} and {tuple(keep.shape)}")
        was = self.training
        self.eval()
        out = self.decode(cond, lengths, steps, torch.Generator().manual_seed(seed), tokens=tokens.long(), keep=keep.bool())
        self.train(was)
        return out
