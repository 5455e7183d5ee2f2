"""P15 BAMM: bidirectional autoregressive motion model (hybrid attention masks, END prediction,
cascaded decoding with parallel refinement).

Mechanism (Pinyoanuntapong et al. 2024, read in exitudio/BAMM, written anew here): one
transformer over ``[text, x_1 .. x_L, END]`` whose attention is causal *plus* full visibility of a
random set of "revealed" tokens: a query at position i sees positions <= i and every revealed
position; a revealed position's row sees only the revealed positions and the condition. Training
(per sample, with probability 1/2) reveals each token with a random rate u ~ U(0, 1), corrupts a
random fraction (up to 1/2) of the other input tokens with random codes, and predicts every
non-revealed next token, END included. With nothing revealed it is a plain causal model, so:

1. decoding starts autoregressively (causal mask) and samples END: the length is predicted, not
   given;
2. then ``steps`` parallel refinement iterations re-mask the least confident tokens (a cosine
   fraction, END kept) and re-predict them all at once, seeing every kept token on both sides.

Network evaluations: L + 1 (AR pass, no KV cache) + ``steps``. Deviations: no classifier-free
guidance, MiniLM text instead of CLIP, 3 layers d=64, FSQ codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.motion.ar import ARGenerator, with_end
from tokenworks.motion.base import cosine_ratio, pad_after
from tokenworks.registry import register

__all__ = ["BAMMGenerator", "hybrid_mask"]


def hybrid_mask(revealed: torch.Tensor) -> torch.Tensor:
    """(B, S) revealed token positions -> (B, S+1, S+1) allowed (query, key): causal over
    ``[cond, tokens]`` plus every revealed key; revealed rows see only revealed keys + cond."""
    B, S = revealed.shape
    rev = torch.cat([torch.ones(B, 1, dtype=torch.bool), revealed], 1)  # the condition is always visible
    causal = torch.ones(S + 1, S + 1, dtype=torch.bool).tril()[None].expand(B, -1, -1)
    allowed = causal & ~rev[:, :, None]  # revealed rows lose their causal view...
    return allowed | rev[:, None, :]  # ...and every row sees the revealed keys


@register("bamm", paper="P15")
@dataclass(kw_only=True, eq=False, repr=False)
class BAMMGenerator(ARGenerator):
    """Hybrid causal / bidirectional masked model with END prediction."""

    def loss(self, tokens, lengths, cond):
        B, N = tokens.shape
        ids = with_end(tokens, lengths, self.END, self.PAD)  # (B, S)
        S = ids.shape[1]
        valid = torch.arange(S)[None] <= lengths[:, None]  # tokens + END
        rate = torch.rand(B, 1) * (torch.rand(B, 1) < 0.5)
        revealed = (torch.rand(B, S) < rate) & valid
        noisy = (torch.rand(B, S) < 0.5 * torch.rand(B, 1)) & (torch.arange(S)[None] < lengths[:, None]) & ~revealed
        inp = torch.where(noisy, torch.randint(0, self.codebook_size, (B, S)), ids)
        logits = self.logits(inp, cond, hybrid_mask(revealed))[:, :-1]  # position i predicts ids[i]
        target = valid & ~revealed
        return F.cross_entropy(logits[target].float(), ids[target])

    def _generate(self, cond, lengths, steps, g):
        ids, out_len, probs, nfe = self.autoregress(cond, lengths, g)
        B, S = ids.shape
        toks = torch.arange(S)[None] < out_len[:, None]
        conf = torch.log(probs.clamp_min(1e-12))
        for r in range(steps):
            n = (out_len.float() * cosine_ratio(r + 1, steps + 1)).ceil().long()  # re-masked this round
            rank = conf.masked_fill(~toks, float("inf")).argsort(1).argsort(1)
            redo = (rank < n[:, None]) & toks
            revealed = (~redo & toks) | (torch.arange(S)[None] == out_len[:, None])  # kept tokens + END
            logits = self.logits(ids, cond, hybrid_mask(revealed))[:, :-1, : self.END]
            nfe += 1
            new, p = self.sample(logits, g)
            ids = torch.where(redo, new, ids)
            conf = torch.where(redo, torch.log(p.clamp_min(1e-12)), conf)
        return pad_after(ids[:, : self.max_tokens], out_len, self.PAD), out_len, nfe
