"""Tiny image tokenizers for the VIS tests: every registered tokenizer, made small generically.

``tiny(name)`` builds a registered tokenizer with small values for the option fields it has
(width, depth, token counts, ...), gives teacher-based methods a random-init tiny classifier
and fits DiGIT's k-means on random images, so any newly registered tokenizer is covered by
the contract tests without a hand-written list.
"""

from __future__ import annotations

from dataclasses import fields

import torch

import tokenworks as tw
from tokenworks.models import ImageClassifier

SMALL = {
    "width": 16, "depth": 1, "heads": 2, "latent_dim": 8, "num_latents": 6, "holistic_tokens": 3,
    "teacher_dim": 8, "teacher_width": 4, "kmeans_samples": 400, "kmeans_iters": 5, "text_tokens": 2,
    "fusion_depth": 1, "downsample": 4, "decoder_width": 16, "decoder_depth": 1, "decoder_patch": 4,
    "encoder_linear_rank": 2,
}  # fmt: skip

TOKENIZERS = [m.name for m in tw.methods(kind="image_tokenizer")]


def teacher() -> ImageClassifier:
    torch.manual_seed(123)
    return ImageClassifier(width=4).eval()


def tiny_options(name: str, **overrides) -> dict:
    cls = tw.get(name).obj
    names = {f.name for f in fields(cls)}
    opts = {k: v for k, v in SMALL.items() if k in names}
    if name == "digit":
        opts["quantizer_options"] = {"codebook_size": 16, "commitment_weight": 0.0}
    opts.update(overrides)
    return opts


def tiny(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    tok = tw.create(name, **tiny_options(name, **overrides))
    if hasattr(tok, "set_teacher"):
        tok.set_teacher(teacher())
    if hasattr(tok, "fit_codebook"):
        g = torch.Generator().manual_seed(7)
        tok.fit_codebook(torch.rand(64, tok.channels, tok.image_size, tok.image_size, generator=g))
    return tok


def images(b: int = 3, seed: int = 1, size: int = 28, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, channels, size, size, generator=g)


def captions_for(tok, b: int, seed: int = 2):
    """Caption embeddings (B, caption_dim) for conditional tokenizers, None otherwise."""
    if not tok.conditional:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(b, tok.caption_dim, generator=g), dim=-1)
