"""P10 TexTok: Language-Guided Image Tokenization for Generation (text-conditioned tokenizer).

Mechanism: the caption is embedded by a frozen text encoder and projected to a few text
tokens that are appended to the sequences of both the encoder ([patches; latents; text]) and
the decoder ([mask tokens; quantized latents; text]). The decoder gets the caption for free,
so the K image tokens only have to carry what the caption does not say: better
reconstruction at an equal token count. Without a caption (``captions=None``) the text tokens
are simply left out, and the network is exactly a TiTok with the same weights.

Captions: a list of strings (embedded with the bundled MiniLM-L6 sentence encoder, see
:mod:`tokenworks.vision.captions`) or a float tensor (B, caption_dim) of precomputed
embeddings. ``train_tokenizer`` and the evaluation give each image the caption
``captions_for`` writes: with ``caption_source="attributes"`` (default) the class name with
four attribute words derived from the image (brightness, size, shape, texture tertiles fitted
on the training images, e.g. "a dark, large, wide, plain pullover": up to 9.7 bits, where
the class name alone carries 3.3); ``"class"`` gives the class name only.

Deviations from the paper:
- one pooled MiniLM sentence embedding (384-d) projected to ``text_tokens`` tokens instead of
  the per-word T5-XL embeddings of a VLM-written caption; the captions are templated from
  the class name and four pixel-statistics words, not written by a VLM (none offline);
- TiTok-style ViT encoder/decoder at CPU size with MSE only (see :mod:`titok`); the paper
  also evaluates generation with DiT on continuous tokens, here tokens are FSQ-quantized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import check_choice, check_int, check_tensor
from tokenworks.registry import register
from tokenworks.vision.captions import ATTRIBUTES, CAPTION_DIM, attribute_captions, attribute_cuts, embed_captions
from tokenworks.vision.titok import TiTok

__all__ = ["TexTok"]


@register("textok", paper="P10")
@dataclass(kw_only=True, eq=False, repr=False)
class TexTok(TiTok):
    """P10 TiTok whose encoder and decoder both read projected caption tokens."""

    conditional = True

    text_tokens: int = 4
    caption_dim: int = CAPTION_DIM
    caption_source: str = "attributes"

    def validate(self) -> None:
        super().validate()
        check_int("text_tokens", self.text_tokens, min=1, max=64)
        check_int("caption_dim", self.caption_dim, min=1)
        check_choice("caption_source", self.caption_source, ("attributes", "class"))

    def build(self) -> None:
        super().build()
        self.text_enc = nn.Linear(self.caption_dim, self.text_tokens * self.width)
        self.text_dec = nn.Linear(self.caption_dim, self.text_tokens * self.decoder_width)
        # tertile boundaries of the caption attributes over the training images (fitted by prepare)
        self.register_buffer("caption_cuts", torch.zeros(len(ATTRIBUTES), 2))
        self.register_buffer("cuts_fitted", torch.zeros((), dtype=torch.bool))

    def prepare(self, data) -> None:
        """Fit the attribute tertiles on the training images (once; saved with the tokenizer)."""
        if self.caption_source == "attributes" and not bool(self.cuts_fitted):
            cuts = attribute_cuts(data.float())
            self.caption_cuts.copy_(torch.stack([cuts[k] for k in ATTRIBUTES]))
            self.cuts_fitted.fill_(True)

    def captions_for(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> list[str]:
        """Class name only (``caption_source="class"``) or "a <brightness>, <size>, <shape>, <texture> <class>"."""
        if self.caption_source == "class":
            return super().captions_for(images, labels, classes)
        if not bool(self.cuts_fitted):
            raise RuntimeError("textok: attribute captions need prepare(training data) first (train_tokenizer calls it)")
        return attribute_captions(images, labels, classes, dict(zip(ATTRIBUTES, self.caption_cuts)))

    def condition(self, captions: Any, batch: int) -> torch.Tensor | None:
        if captions is None:
            return None
        if isinstance(captions, torch.Tensor):
            emb = check_tensor("captions", captions, ndim=2, floating=True)
            if emb.shape[1] != self.caption_dim:
                raise ValueError(f"captions must be (B, caption_dim={self.caption_dim}) embeddings, got {tuple(emb.shape)}")
        elif isinstance(captions, (list, tuple)):
            emb = embed_captions(list(captions))
        else:
            raise TypeError(f"captions must be a list of strings, a (B, {self.caption_dim}) tensor or None, got {type(captions).__name__}")
        if emb.shape[0] != batch:
            raise ValueError(f"captions must hold one caption per image ({batch}), got {emb.shape[0]}")
        return emb.to(self.text_enc.weight)

    def text(self, proj: nn.Linear, cond: torch.Tensor | None) -> torch.Tensor | None:
        return None if cond is None else rearrange(proj(cond), "b (t w) -> b t w", t=self.text_tokens)

    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(images, extra=self.text(self.text_enc, cond))

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(tokens, extra=self.text(self.text_dec, cond))
