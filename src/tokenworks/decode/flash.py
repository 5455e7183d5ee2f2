"""P31 FLASH: a draft head over compressed visual tokens that proposes k tokens per pass.

Mechanism. Speculative decoding for a vision-language model pays the draft for every visual
token and every draft step. FLASH's draft head (here :class:`FlashHead`) instead

- compresses the image's tokens into ``queries`` learned query vectors (one cross-attention
  of the queries over the image tokens' embeddings; ``queries=0`` drops the image: the
  text-only control);
- runs a small transformer over ``[compressed visual tokens, the answer so far, k mask
  tokens]`` with a **semi-autoregressive** mask: visual tokens see each other, answer tokens
  see the visual tokens and earlier answer tokens, mask token ``j`` sees everything before it
  (mask tokens ``< j`` included), so one pass proposes all k tokens;
- is verified by the target with the base's exact rule (greedy: the output equals the target's
  own greedy output; sampling: the target's distribution; the proposal is deterministic).

The head is trained by self-distillation (:func:`train_flash_head`): on the target's own greedy
answers to training images, from a random prefix length, cross-entropy on the next k tokens.
Its embeddings start from the target's input embeddings (then trained; ``embed_dim`` + a projection).

Deviations from the paper (and why): FLASH's head reads the target's hidden states and its
compression keeps the most informative visual tokens by attention; this head reads token
embeddings (the base's ``propose`` hook sees tokens, not the target's states) and compresses
with learned queries, as the issue asks. No tree of drafts (one chain of k).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tokenworks.checks import check_int
from tokenworks.decode.base import ProposeContext, SpeculativeDecoder
from tokenworks.registry import register

__all__ = ["Flash", "FlashHead", "semi_ar_mask", "train_flash_head"]


def semi_ar_mask(m: int, n: int, k: int) -> torch.Tensor:
    """(m + n + k, m + n + k) bool, True = may attend: visual block full, answer causal,
    mask token j sees everything before it and mask tokens <= j."""
    S = m + n + k
    allowed = torch.ones(S, S).tril().bool()
    allowed[:m, :m] = True
    return allowed


class FlashHead(nn.Module):
    """Draft head: (image ids (B, P), answer ids (B, n)) -> logits (B, k, V) for the next k tokens."""

    def __init__(self, vocab_size: int, image_tokens: int, k: int = 4, queries: int = 4, d: int = 64, layers: int = 2, max_len: int = 32,
                 embed_dim: int | None = None) -> None:  # fmt: skip
        super().__init__()
        check_int("k", k, min=1)
        check_int("queries", queries, min=0, max=image_tokens)
        self.k, self.queries, self.image_tokens = k, queries, image_tokens
        self.embed = nn.Embedding(vocab_size, embed_dim or d)
        self.proj = nn.Linear(embed_dim, d) if embed_dim else nn.Identity()  # target-sized embeddings -> d
        self.img_pos = nn.Parameter(torch.randn(image_tokens, d) * 0.02)
        self.q = nn.Parameter(torch.randn(max(queries, 1), d) * 0.02)
        self.compress = nn.MultiheadAttention(d, 4, batch_first=True)
        self.pos = nn.Parameter(torch.randn(max_len + k, d) * 0.02)
        self.mask_tok = nn.Parameter(torch.randn(k, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, vocab_size))

    def forward(self, image: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        B, n = answer.shape
        parts = []
        if self.queries:
            kv = self.proj(self.embed(image)) + self.img_pos  # (B, P, d)
            vis, _ = self.compress(self.q.expand(B, -1, -1), kv, kv)  # (B, m, d)
            parts.append(vis)
        parts.append(self.proj(self.embed(answer)) + self.pos[:n])
        parts.append(self.mask_tok.expand(B, -1, -1) + self.pos[n : n + self.k])
        x = torch.cat(parts, 1)
        allowed = semi_ar_mask(self.queries, n, self.k).to(x.device)
        h = self.body(x, mask=~allowed)
        return self.out(h[:, -self.k :])  # (B, k, V)


def train_flash_head(head: FlashHead, image: torch.Tensor, answer: torch.Tensor, pad: int, *, steps: int = 600, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0, ckpt_dir=None, desc: str = "FLASH head"):  # fmt: skip
    """Self-distillation: ``answer`` (N, L) are the target's greedy answers to ``image`` (N, P)
    (padded with ``pad``). Each batch takes one random prefix length; loss on the next k tokens."""
    from tokenworks.train import TrainConfig, train

    L, k = answer.shape[1], head.k

    def batch_fn(step, g):
        i = torch.randint(0, len(answer), (batch_size,), generator=g)
        return image[i], answer[i], torch.randint(1, L, (1,), generator=g)  # images, answers, prefix length

    def loss_fn(m, batch):
        img, ans, t = batch
        t = int(t)
        y = torch.full((ans.shape[0], k), -100, dtype=torch.long)
        tail = ans[:, t : t + k]
        y[:, : tail.shape[1]] = tail.masked_fill(tail == pad, -100)
        logits = m(img, ans[:, :t])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)

    tc = TrainConfig(steps=steps, lr=lr, warmup=min(30, steps), weight_decay=0.01, seed=seed, desc=desc, checkpoint_every=max(100, steps // 4))
    train(head, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    return head.eval()


@register("flash", paper="P31")
@dataclass(kw_only=True)
class Flash(SpeculativeDecoder):
    """Draft-head speculative decoding for VLMs: one head pass proposes k tokens (deterministic)."""

    needs_draft = False
    head: Any = field(default=None, repr=False)  # a trained FlashHead; None: no proposal (plain decoding)
    image_tokens: int = 16  # the prompt's first image_tokens ids are the image

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("image_tokens", self.image_tokens, min=1)
        if self.head is not None and not isinstance(self.head, FlashHead):
            raise TypeError(f"head must be a tokenworks.decode.flash.FlashHead, got {type(self.head).__name__}")
        if self.head is not None and self.k > self.head.k:
            raise ValueError(f"k ({self.k}) must be <= the head's k ({self.head.k})")
        self.head_forwards = 0

    @torch.no_grad()
    def propose(self, ctx: ProposeContext):
        B = ctx.active.shape[0]
        drafts = torch.zeros(B, self.k, dtype=torch.long, device=ctx.device)
        lengths = torch.zeros(B, dtype=torch.long, device=ctx.device)
        if self.head is None:
            return drafts, lengths, None
        P = self.image_tokens
        rows = [b for b in range(B) if bool(ctx.active[b])]
        for n in sorted({len(ctx.history[b]) for b in rows}):  # one head pass per answer length
            group = [b for b in rows if len(ctx.history[b]) == n]
            h = torch.tensor([ctx.history[b] for b in group], device=ctx.device)
            logits = self.head(h[:, :P], h[:, P:])[:, : self.k]
            self.head_forwards += 1
            drafts[group] = logits.argmax(-1)
            lengths[group] = self.k
        room = torch.tensor([ctx.max_length[b] - len(ctx.history[b]) - 1 for b in range(B)], device=ctx.device)
        return drafts, lengths.minimum(room.clamp(min=0)), None

    def generate(self, target, input_ids, attention_mask=None, **kw):
        """The base's loop; ``out.stats.extra["head_forwards"]``: passes of the draft head."""
        self.head_forwards = 0
        out = super().generate(target, input_ids, attention_mask, **kw)
        out.stats.extra["head_forwards"] = self.head_forwards
        return out
