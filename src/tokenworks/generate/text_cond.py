"""Baseline: a caption-conditioned MaskGIT over tokenizer ids, cross-attending to per-token text
states (the generator behind P27, :mod:`tokenworks.compress.follow_flow`).

    ctx = caption_context(["a dark, large, wide, plain pullover"])    # TextContext
    out = gen.generate(ctx, steps=8, seed=0)                          # GenerationResult

Text: captions of Fashion-MNIST images as :mod:`tokenworks.vision.captions` writes them for
TexTok ("a <brightness>, <size>, <shape>, <texture> <class>", tertiles fitted on the training
images), each attribute word dropped at random during training (so that "a dark pullover" and
"a pullover" are captions too), encoded by the bundled MiniLM-L6; the generator sees the
*per-token* last hidden states ([CLS] .. [SEP], 384-d) as keys/values of a cross-attention in
every block, with a mask saying which text tokens are present (P27 drops some after encoding).
Image side: MaskGIT's masked-token training and confidence decoding (:mod:`~tokenworks.generate.maskgit`)
over ``patch2d-7x7`` ids, each block = self-attention over image tokens, cross-attention to the
text, MLP (attention written out so that the cross-attention mass per text token can be read:
:meth:`TextMaskGIT.text_attention`). Classifier-free guidance: the null caption is one learned
token, dropped in at ``class_dropout`` during training.

Choices: MiniLM (the offline text encoder) instead of CLIP/T5; d=96, 2 layers; all 10 x 4^4
captions are encoded by need, once per process (:func:`caption_table`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.generate.base import GenerationResult, ImageGenerator, check_steps, cross_entropy
from tokenworks.generate.maskgit import MaskGIT, mask_schedule, random_mask
from tokenworks.registry import register

__all__ = ["CaptionData", "TextContext", "TextMaskGIT", "caption_context", "caption_table", "caption_text"]

ABSENT = 3  # attribute index meaning "not named"


@dataclass
class TextContext:
    """Encoded captions: ``states`` (B, T, E) per-token text states, ``mask`` (B, T) bool (True = present)."""

    states: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.states, torch.Tensor) or self.states.ndim != 3 or not self.states.is_floating_point():
            raise ValueError(f"text states must be a float tensor (B, T, E), got {getattr(self.states, 'shape', self.states)!r}")
        if not isinstance(self.mask, torch.Tensor) or self.mask.dtype != torch.bool or tuple(self.mask.shape) != tuple(self.states.shape[:2]):
            raise ValueError(f"text mask must be a bool tensor of shape {tuple(self.states.shape[:2])}")
        if not bool(self.mask.any(1).all()):
            raise ValueError("text mask must keep at least one token per caption")

    def __len__(self) -> int:
        return self.states.shape[0]

    def take(self, idx) -> TextContext:
        return TextContext(self.states[idx], self.mask[idx])

    def with_mask(self, mask: torch.Tensor) -> TextContext:
        return TextContext(self.states, mask)


def caption_text(label: int, attrs) -> str:
    """The caption of class ``label`` with attribute tertiles ``attrs`` (4 ints, 3 = not named)."""
    from tokenworks.data.images import FASHION_CLASSES
    from tokenworks.vision.captions import BRIGHTNESS, SHAPE, SIZE, TEXTURE

    parts = [words[a] for words, a in zip((BRIGHTNESS, SIZE, SHAPE, TEXTURE), attrs) if a != ABSENT]
    return " ".join(["a", *([", ".join(parts)] if parts else []), FASHION_CLASSES[label].lower()])


def caption_id(labels: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """(B,) labels, (B, 4) attribute indices (3 = absent) -> row of :func:`caption_table`."""
    return labels * 256 + (attrs * torch.tensor([64, 16, 4, 1])).sum(-1)


T_MAX = 24  # text positions per caption (the longest caption of the table has 18 tokens)
_STATES: dict[int, tuple[torch.Tensor, int]] = {}  # caption id -> (states (T_MAX, E), present tokens)


def caption_table(ids: torch.Tensor) -> TextContext:
    """MiniLM token states of captions by id (:func:`caption_id`), (B, T_MAX, 384); each distinct
    caption is encoded once per process (new ones in one batch)."""
    from tokenworks.vision.captions import caption_token_states

    ids = torch.as_tensor(ids).long()
    new = sorted(set(ids.tolist()) - set(_STATES))
    if new:
        states, mask = caption_token_states([caption_text(i // 256, [(i >> s) & 3 for s in (6, 4, 2, 0)]) for i in new])
        for i, st, m in zip(new, states, mask):
            pad = torch.zeros(T_MAX, st.shape[-1])
            n = int(m.sum())
            pad[:n] = st[:n]
            _STATES[i] = (pad, n)
    states = torch.stack([_STATES[i][0] for i in ids.tolist()])
    n = torch.tensor([_STATES[i][1] for i in ids.tolist()])
    return TextContext(states, torch.arange(T_MAX)[None] < n[:, None])


def caption_context(captions: list[str]) -> TextContext:
    """Any captions -> their MiniLM token states (not cached)."""
    from tokenworks.vision.captions import caption_token_states

    return TextContext(*caption_token_states(captions))


class CaptionData:
    """Attribute tertiles of the first ``n`` images of ``split`` (the order of ``token_data``)."""

    def __init__(self, split: str, n: int | None = None) -> None:
        from tokenworks.data import load_images
        from tokenworks.vision.captions import ATTRIBUTES, image_attributes

        train = load_images("fashion-mnist", "train")
        self.cuts = _train_cuts(len(train))
        data = load_images("fashion-mnist", split)
        n = len(data) if n is None else min(n, len(data))
        images = data.take(n).float()
        attrs = image_attributes(images)
        self.attrs = torch.stack([torch.bucketize(attrs[k].contiguous(), self.cuts[k].contiguous()) for k in ATTRIBUTES], 1)  # (n, 4)
        self.labels = data.labels[:n].long()

    def context(self, idx: torch.Tensor, *, drop: float = 0.0, g: torch.Generator | None = None) -> TextContext:
        """Captions of images ``idx``, each attribute word left out with probability ``drop``."""
        a = self.attrs[idx].clone()
        if drop > 0:
            a[torch.rand(a.shape, generator=g) < drop] = ABSENT
        return caption_table(caption_id(self.labels[idx], a))


@lru_cache(maxsize=2)
def _train_cuts(n: int) -> dict:
    from tokenworks.data import load_images
    from tokenworks.vision.captions import attribute_cuts

    return attribute_cuts(load_images("fashion-mnist", "train").take(n).float())


class CrossBlock(nn.Module):
    """Pre-norm block: self-attention over image tokens, cross-attention to text, MLP.
    ``forward(x (B, N, d), text (B, T, d), text_mask (B, T))``; the last cross-attention
    probabilities (B, H, N, T) are kept in ``self.attn`` when ``self.keep_attn``."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.keep_attn, self.attn = heads, False, None
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.q, self.kv, self.xproj = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def _attend(self, q, k, v, mask=None):
        att = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
        if mask is not None:
            att = att.masked_fill(~mask[:, None, None, :], float("-inf"))
        p = att.softmax(-1)
        return rearrange(torch.einsum("bhqk,bhkd->bhqd", p, v), "b h t d -> b t (h d)"), p

    def forward(self, x, text, text_mask):
        q, k, v = rearrange(self.qkv(self.n1(x)), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        x = x + self.proj(self._attend(q, k, v)[0])
        q = rearrange(self.q(self.n2(x)), "b t (h d) -> b h t d", h=self.heads)
        k, v = rearrange(self.kv(text), "b t (two h d) -> two b h t d", two=2, h=self.heads)
        out, p = self._attend(q, k, v, text_mask)
        self.attn = p if self.keep_attn else None
        x = x + self.xproj(out)
        return x + self.mlp(self.n3(x))


@register("text-maskgit", family="GEN", cite="Chang et al. 2022 (MaskGIT); Chang et al. 2023 (Muse: text cross-attention)")
@dataclass(kw_only=True, eq=False, repr=False)
class TextMaskGIT(ImageGenerator):
    """MaskGIT over [tokens with MASK] with cross-attention to per-token caption states."""

    kind: ClassVar[str] = "text_image_generator"
    text_dim: int = 384
    gumbel: float = 4.5

    def validate(self) -> None:
        check_int("text_dim", self.text_dim, min=1, max=8192)
        check_float("gumbel", self.gumbel, min=0.0)

    def build(self) -> None:
        d = self.d_model
        del self.label_emb  # the condition is text
        self.MASK = self.codebook_size
        self.tok_emb = nn.Embedding(self.codebook_size + 1, d)
        self.pos_emb = nn.Parameter(torch.randn(self.num_tokens, d) * 0.02)
        self.text_in = nn.Sequential(nn.LayerNorm(self.text_dim), nn.Linear(self.text_dim, d))
        self.null_text = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList(CrossBlock(d, self.heads) for _ in range(self.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.codebook_size)

    def check_text(self, text) -> TextContext:
        if not isinstance(text, TextContext):
            raise ValueError(f"text must be a TextContext (caption_context(captions)), got {type(text).__name__}")
        if text.states.shape[-1] != self.text_dim:
            raise ValueError(f"text states must have {self.text_dim} channels, got {text.states.shape[-1]}")
        return text

    def _context(self, text: TextContext, null: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (B, T, d) projected states and (B, T) mask; rows where ``null`` is True get the null caption."""
        c, m = self.text_in(text.states), text.mask
        if null is not None and bool(null.any()):
            c = torch.where(null[:, None, None], self.null_text.expand_as(c), c)
            first = torch.zeros_like(m)
            first[:, 0] = True
            m = torch.where(null[:, None], first, m)
        return c, m

    def logits(self, ids: torch.Tensor, c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """ids (B, N) with MASK, projected context (B, T, d), mask (B, T) -> logits (B, N, K)."""
        x = self.tok_emb(ids) + self.pos_emb
        for blk in self.blocks:
            x = blk(x, c, m)
        return self.head(self.norm(x))

    def loss(self, tokens, text):
        text = self.check_text(text)
        masked = random_mask(*tokens.shape, device=tokens.device)
        inp = torch.where(masked, torch.full_like(tokens, self.MASK), tokens)
        null = torch.rand(tokens.shape[0]) < self.class_dropout if self.training and self.class_dropout > 0 else None
        logits = self.logits(inp, *self._context(text, null))
        return cross_entropy(logits[masked], tokens[masked])

    def _guided_logits(self, ids, c, m, cn, mn):
        if self.cfg == 1.0:
            return self.logits(ids, c, m)
        both = self.logits(torch.cat([ids, ids]), torch.cat([c, cn]), torch.cat([m, mn]))
        cond, unc = both.chunk(2)
        return unc + self.cfg * (cond - unc)

    @torch.no_grad()
    def text_attention(self, text: TextContext) -> torch.Tensor:
        """Cross-attention mass each present text token receives at the first decoding step (all
        MASK, no guidance): mean over layers, heads and image queries, (B, T), 0 where absent."""
        text = self.check_text(text)
        was = self.training
        self.eval()
        try:
            for blk in self.blocks:
                blk.keep_attn = True
            ids = torch.full((len(text), self.num_tokens), self.MASK, dtype=torch.long)
            self.logits(ids, *self._context(text))
            return torch.stack([blk.attn.mean((1, 2)) for blk in self.blocks]).mean(0)
        finally:
            for blk in self.blocks:
                blk.keep_attn, blk.attn = False, None
            self.train(was)

    @torch.no_grad()
    def generate(self, text, *, steps: int = 8, seed: int = 0) -> GenerationResult:
        """One image's ids per caption of ``text`` (a :class:`TextContext`)."""
        import time

        steps = check_steps(steps)
        text = self.check_text(text)
        was = self.training
        self.eval()
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        try:
            B, N = len(text), self.num_tokens
            c, m = self._context(text)
            cn, mn = self._context(text, torch.ones(B, dtype=torch.bool))
            cur = torch.full((B, N), self.MASK, dtype=torch.long)
            steps = min(steps, N)
            left = torch.tensor(mask_schedule(N, steps))
            for s in range(steps):
                logits = self._guided_logits(cur, c, m, cn, mn)
                cur = self.reveal(cur, logits, s, steps, left[s].expand(B), g)
        finally:
            self.train(was)
        return GenerationResult(cur, torch.full((B,), -1), float(steps), (time.perf_counter() - t0) / B)

    reveal = MaskGIT.reveal  # MaskGIT's confidence step (sample the masked, re-mask the least confident)
