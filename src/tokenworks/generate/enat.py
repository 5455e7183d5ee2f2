"""P07 ENAT: masked generation whose encoder sees only visible tokens and reuses their features
across decoding steps.

Mechanism (Ni et al. 2024, "ENAT: rethinking spatial and temporal interactions in token-based
image synthesis"): (spatial) visible tokens and [MASK] tokens play different roles, so an
encoder runs over the visible tokens only and a small decoder over all positions (visible
features + MASK embeddings) predicts the masked ones; (temporal) most visible tokens were
visible at the previous step too, so their encoder features are reused and only the tokens
newly decoded at this step ("critical tokens") go through the encoder. The schedule and the
confidence-based choice are MaskGIT's (:mod:`tokenworks.generate.maskgit`).

How the reuse is made exact here: a token revealed at step r attends, in the encoder, only to
tokens revealed at steps <= r (the label is step 0): a block-causal mask in reveal order, the
way a KV cache is exact for a causal LM. Earlier tokens' per-layer inputs are cached and the new
tokens attend to them, so each token crosses the encoder once per image: encoder FLOPs are those
of one pass over N tokens, plus ``decoder_layers`` over N+1 positions per step. Training draws a
random number of reveal groups and assigns the visible tokens to them at random, so the encoder
meets the same masks it gets at inference. ``encode_full`` computes the same features by one
masked pass over the whole sequence (the reference the tests compare the cache with).

Deviations: ENAT refreshes reused features with a light SC-RAP module (previous features + the
new step's context); we keep them frozen (exactly reusable, no refresh). One decoder layer, d=128,
CFG on the logits with the guided and null batches kept in one cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.generate.base import ImageGenerator, Transformer, cross_entropy
from tokenworks.generate.maskgit import mask_schedule, random_mask
from tokenworks.registry import register

__all__ = ["ENAT"]


@register("enat", paper="P07")
@dataclass(kw_only=True, eq=False, repr=False)
class ENAT(ImageGenerator):
    """Visible-token encoder with cached features + a small decoder over mask tokens."""

    decoder_layers: int = 1
    gumbel: float = 4.5
    max_groups: int = 8  # training: reveal groups drawn from 1..max_groups

    def validate(self) -> None:
        check_int("decoder_layers", self.decoder_layers, min=1, max=64)
        check_float("gumbel", self.gumbel, min=0.0)
        check_int("max_groups", self.max_groups, min=1, max=4096)

    def build(self) -> None:
        d = self.d_model
        self.tok_emb = nn.Embedding(self.codebook_size, d)
        self.pos_emb = nn.Parameter(torch.randn(self.num_tokens + 1, d) * 0.02)
        self.dec_pos = nn.Parameter(torch.randn(self.num_tokens + 1, d) * 0.02)
        self.mask_emb = nn.Parameter(torch.zeros(d))
        self.encoder = Transformer(d, self.layers, self.heads)
        self.decoder = Transformer(d, self.decoder_layers, self.heads)
        self.head = nn.Linear(d, self.codebook_size)

    # ---------------------------------------------------------------- encoder / decoder
    def embed(self, labels, ids, pos):
        """labels (B,), ids (B, T) codes at sequence positions pos (B, T) (1..N) -> (B, T, d)."""
        return self.tok_emb(ids) + self.pos_emb[pos]

    def encode_full(self, labels, ids, group):
        """Reference / training path: features of every visible position in one masked pass.
        ids (B, N) (any value where masked), group (B, N) reveal step (-1 = masked) ->
        (B, N+1, d) features of [label, tokens] (rows of masked positions are meaningless)."""
        B, N = ids.shape
        x = torch.cat([self.label_emb(labels)[:, None] + self.pos_emb[0], self.tok_emb(ids.clamp(0, self.codebook_size - 1)) + self.pos_emb[1:]], 1)
        grp = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=ids.device), group], 1)  # label: step 0
        vis = grp >= 0
        allowed = vis[:, None, :] & (grp[:, None, :] <= grp[:, :, None])  # key revealed no later than query
        allowed = allowed | torch.eye(N + 1, dtype=torch.bool, device=ids.device)
        return self.encoder(x, allowed)[0]

    def decode_logits(self, feats, visible):
        """feats (B, N+1, d), visible (B, N+1) bool -> logits (B, N, K)."""
        x = torch.where(visible[..., None], feats, self.mask_emb) + self.dec_pos
        return self.head(self.decoder(x)[0][:, 1:])

    def loss(self, tokens, labels):
        B, N = tokens.shape
        masked = random_mask(B, N, device=tokens.device)
        G = int(torch.randint(1, self.max_groups + 1, ()))
        group = torch.where(masked, -1, torch.randint(1, G + 1, (B, N), device=tokens.device))
        feats = self.encode_full(self.drop_labels(labels), tokens, group)
        visible = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=tokens.device), ~masked], 1)
        return cross_entropy(self.decode_logits(feats, visible)[masked], tokens[masked])

    # ---------------------------------------------------------------- decoding with reuse
    def trace(self, labels, steps, g):
        """Decode with the incremental encoder. Returns (tokens (B, N), features (B2, N+1, d) as
        cached, by position, reveal group (B, N), network evaluations); B2 = 2B under guidance."""
        B, N, d = labels.shape[0], self.num_tokens, self.d_model
        steps = min(steps, N)
        guided = self.cfg != 1.0
        lab = torch.cat([labels, torch.full_like(labels, self.NULL)]) if guided else labels
        B2 = lab.shape[0]
        x0 = (self.label_emb(lab) + self.pos_emb[0])[:, None]
        out, inputs = self.encoder(x0)
        cache = inputs  # per-layer inputs of the encoded tokens, (B2, T, d) each
        feats = torch.zeros(B2, N + 1, d)
        feats[:, 0] = out[:, 0]
        visible = torch.zeros(B2, N + 1, dtype=torch.bool)
        visible[:, 0] = True
        cur = torch.full((B, N), -1, dtype=torch.long)
        group = torch.full((B, N), -1, dtype=torch.long)
        for s, left in enumerate(mask_schedule(N, steps)):
            logits = self.decode_logits(feats, visible)
            if guided:
                logits = logits[B:] + self.cfg * (logits[:B] - logits[B:])
            masked = cur < 0
            ids, p = self.sample_ids(logits, g)
            noise = -torch.log(-torch.log(torch.rand(B, N, generator=g).clamp(1e-9, 1 - 1e-9)))
            conf = torch.log(p.clamp_min(1e-12)) + self.gumbel * (1 - (s + 1) / steps) * noise
            conf = conf.masked_fill(~masked, float("-inf"))
            n_new = int(masked[0].sum()) - left  # same for every row
            new_pos = conf.topk(n_new, 1).indices.sort(1).values  # (B, n_new) most confident
            new_ids = ids.gather(1, new_pos)
            cur.scatter_(1, new_pos, new_ids)
            group.scatter_(1, new_pos, s + 1)
            if left == 0:
                break
            pos2, ids2 = new_pos.repeat(B2 // B, 1), new_ids.repeat(B2 // B, 1)
            out, inputs = self.encoder(self.embed(lab, ids2, pos2 + 1), None, cache)  # new tokens see cache + each other
            cache = [torch.cat([c, i], 1) for c, i in zip(cache, inputs)]
            feats.scatter_(1, (pos2 + 1)[..., None].expand(-1, -1, d), out)
            visible.scatter_(1, pos2 + 1, True)
        return cur, feats, group, steps

    def _generate(self, labels, steps, g):
        tokens, _, _, nfe = self.trace(labels, steps, g)
        return tokens, nfe
