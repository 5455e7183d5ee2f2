"""Continuous tokens of an FSQ tokenizer: the latents just before FSQ rounds them.

MAR (Li et al. 2024), Hi-MAR (P25) and xAR (P32) model continuous tokens. The project's
tokenizers end in a quantizer; the encoder's raw output (``encode_latents``, before FSQ's input
projection) does not decode (the decoder was trained on projected codes: MSE 0.17 against 0.005
for the ids on patch2d-7x7). So the continuous token here is FSQ's bounded, *unrounded* value in
its own ``len(levels)``-channel space, ``tanh(project_in(z) + shift) * half_l - offset``, divided
by the half width like a code (in [-1, 1]); decoding applies FSQ's ``project_out`` and the
tokenizer's decoder. Rounding these latents gives exactly the tokenizer's codes, so continuous and
discrete generators share one decoder and one data set.
"""

from __future__ import annotations

import torch

__all__ = ["continuous_dim", "decode_latents", "encode_latents"]


def _fsq(tok):
    q = getattr(tok, "quant", None)
    inner = getattr(q, "fsq", None)
    if inner is None or not hasattr(inner, "_levels"):
        raise ValueError(f"tokenizer must use the fsq quantizer for continuous latents (MAR/xAR), got quantizer {getattr(tok, 'quantizer', None)!r}")
    if getattr(inner, "num_codebooks", 1) != 1:
        raise ValueError("tokenizer must use a single-codebook fsq quantizer for continuous latents")
    return inner


def continuous_dim(tok) -> int:
    """Channels of one continuous token (FSQ's number of levels)."""
    return len(_fsq(tok)._levels)


@torch.no_grad()
def encode_latents(tok, images: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] -> continuous tokens (B, N, len(levels)) in [-1, 1]."""
    fsq = _fsq(tok)
    was = tok.training
    tok.eval()
    try:
        z = fsq.project_in(tok.encode_latents(tok.check_images(images)))
        eps = 1e-3
        half_l = (fsq._levels - 1) * (1 + eps) / 2
        offset = torch.where(fsq._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return (torch.tanh(z + shift) * half_l - offset) / (fsq._levels // 2)
    finally:
        tok.train(was)


@torch.no_grad()
def decode_latents(tok, latents: torch.Tensor) -> torch.Tensor:
    """Continuous tokens (B, N, len(levels)) -> images (B, C, H, W) in [0, 1]."""
    fsq = _fsq(tok)
    if latents.ndim != 3 or latents.shape[-1] != len(fsq._levels) or latents.shape[1] != tok.num_tokens:
        raise ValueError(f"latents must have shape (B, {tok.num_tokens}, {len(fsq._levels)}), got {tuple(latents.shape)}")
    was = tok.training
    tok.eval()
    try:
        return tok.decode_latents(fsq.project_out(latents.float().clamp(-1, 1))).clamp(0, 1)
    finally:
        tok.train(was)
