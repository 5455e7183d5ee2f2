"""Baseline: autoregressive motion-token GPT in the style of T2M-GPT (Zhang et al. 2023).

Mechanism: ``[text condition, x_1 .. x_L, END]`` under a causal mask; position i predicts
token i + 1, END included, so the length is sampled, not given. Decoding samples one token per
network evaluation (no KV cache: every step re-runs the prefix; the network-evaluation count is
L + 1). Deviations: no classifier-free guidance, no input-token corruption (T2M-GPT's
"corrupted sequence" trick), a 3-layer d=64 transformer instead of 18 layers d=1024.
With ``lengths`` given, END is forbidden before the length and forced at it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.motion.base import MotionGenerator, pad_after
from tokenworks.registry import register

__all__ = ["ARGenerator"]


def with_end(tokens: torch.Tensor, lengths: torch.Tensor, end: int, pad: int) -> torch.Tensor:
    """(B, N) tokens -> (B, N + 1) with END at ``lengths`` and PAD after it."""
    B, N = tokens.shape
    out = torch.cat([tokens, torch.full((B, 1), pad, dtype=tokens.dtype)], 1)
    pos = torch.arange(N + 1)[None]
    out = torch.where(pos < lengths[:, None], out, torch.full_like(out, pad))
    return out.scatter(1, lengths[:, None], end)


@register("motion-ar", family="GEN", cite="Zhang et al. 2023, T2M-GPT (autoregressive motion tokens)")
@dataclass(kw_only=True, eq=False, repr=False)
class ARGenerator(MotionGenerator):
    """Causal next-token model over motion tokens with an END token."""

    def loss(self, tokens, lengths, cond):
        ids = with_end(tokens, lengths, self.END, self.PAD)  # (B, S)
        logits = self.logits(ids, cond, self.causal(*ids.shape))[:, :-1]  # position i predicts ids[i]
        valid = torch.arange(ids.shape[1])[None] <= lengths[:, None]
        return F.cross_entropy(logits[valid].float(), ids[valid])

    def autoregress(self, cond, lengths, g, ids=None):
        """Sample left to right until END (or ``lengths``); returns ids, lengths, per-token
        probabilities, network evaluations."""
        B, S = cond.shape[0], self.seq_len
        ids = torch.full((B, S), self.PAD, dtype=torch.long)
        probs = torch.ones(B, S)
        out_len = torch.full((B,), self.max_tokens, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        nfe = 0
        for i in range(S):
            logits = self.logits(ids, cond, self.causal(B, S))[:, i]
            nfe += 1
            at_end = (lengths == i) if lengths is not None else torch.full((B,), i == self.max_tokens)
            logits[:, : self.END] = logits[:, : self.END].masked_fill(at_end[:, None], float("-inf"))
            if lengths is not None:
                logits[:, self.END] = logits[:, self.END].masked_fill(~at_end, float("-inf"))
            if i == 0:
                logits[:, self.END] = float("-inf")  # at least one token
            tok, p = self.sample(logits, g)
            tok = torch.where(done, torch.full_like(tok, self.PAD), tok)
            ids[:, i] = tok
            probs[:, i] = p
            ended = (tok == self.END) & ~done
            out_len = torch.where(ended, torch.full_like(out_len, i), out_len)
            done |= ended
            if bool(done.all()):
                break
        return ids, out_len, probs, nfe

    def _generate(self, cond, lengths, steps, g):
        ids, out_len, _, nfe = self.autoregress(cond, lengths, g)
        return pad_after(ids[:, : self.max_tokens], out_len, self.PAD), out_len, nfe
