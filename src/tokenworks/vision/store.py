"""Trained tokenizers (and their token priors) by recipe: cache, committed assets, or train now.

``pretrained_tokenizer("titok-16", "titok", {"num_latents": 16}, TokenizerTrainConfig(...))``
returns the tokenizer trained with exactly that recipe (method, options, data set, training
config): from ``$TOKENWORKS_CACHE/models/vision/<name>``, else from the committed
``assets/vision/<name>``, else it trains one (progress bar, resumable) into the cache. A
directory is used only if its ``tokenworks.json`` fingerprint equals the recipe, so a changed
recipe never loads a stale model. ``tokenworks vision train`` writes the same layout, which is
how the committed assets are made.

``pretrained_prior(name, tok, recipe, data, PriorConfig(...))`` does the same for the token
prior of a tokenizer (``vision/<name>-prior``, a Hugging Face ``save_pretrained`` folder in
float16), trained on the tokenizer's ids of ``data``; its fingerprint holds the tokenizer's
recipe, the prior config and the training images, so a retrained tokenizer retrains its prior.

A saved tokenizer or prior that fails to load (damaged files) is reported with a warning and
skipped in favour of the next source (cache, assets, training). ``train_and_save`` seeds the
initialisation with ``config.seed``, so the same recipe gives the same weights.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tokenworks.checks import check_choice
from tokenworks.vision.base import ImageTokenizer
from tokenworks.vision.train import TokenizerTrainConfig, train_tokenizer

__all__ = ["loss_curve", "pretrained_prior", "pretrained_tokenizer", "prior_fingerprint", "recipe", "train_and_save", "train_prior_and_save"]

DATASETS = ("fashion-mnist", "mnist5k")


def recipe(method: str, options: dict[str, Any], config: TokenizerTrainConfig, dataset: str = "fashion-mnist") -> dict[str, Any]:
    """The fingerprint of a trained tokenizer (what must match for a saved one to be used)."""
    train = asdict(config)
    train.pop("device")
    return {"method": method, "options": dict(options), "dataset": dataset, "train": train}


def _run_dir(ckpt_dir: str | Path | None, fingerprint: dict[str, Any]) -> Path | None:
    """``ckpt_dir/<hash of fingerprint>``: a changed recipe (options, prior, tokenizer) never
    resumes another recipe's checkpoint (the training loop's own check sees only its config)."""
    import hashlib
    import json

    if ckpt_dir is None:
        return None
    return Path(ckpt_dir) / hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:12]


def loss_curve(history: list[tuple[int, float]], every: int = 10) -> list[list[float]]:
    """The training loss averaged over blocks of ``every`` steps: [[last step of block, mean loss], ...]."""
    out = []
    for i in range(0, len(history), every):
        block = history[i : i + every]
        out.append([int(block[-1][0]), round(sum(v for _, v in block) / len(block), 6)])
    return out


def train_and_save(out: str | Path, method: str, options: dict[str, Any], config: TokenizerTrainConfig, *,
                   dataset: str = "fashion-mnist", ckpt_dir: str | Path | None = None, half: bool = True) -> ImageTokenizer:  # fmt: skip
    """Train ``method(**options)`` on the training split of ``dataset`` and save it in ``out``
    (``config.json`` + ``model.safetensors``, float16 with ``half``) with its fingerprint and
    training summary in ``tokenworks.json``."""
    import tokenworks as tw
    from tokenworks.data import load_images
    from tokenworks.models.store import write_model_info

    import torch

    check_choice("dataset", dataset, DATASETS)
    torch.manual_seed(config.seed)  # the initialisation is part of the seed's recipe
    tok = tw.create(method, **options)
    if not isinstance(tok, ImageTokenizer):
        raise ValueError(f"method must name an image tokenizer, got {method!r}")
    t0 = time.perf_counter()
    run = _run_dir(ckpt_dir, recipe(method, options, config, dataset))
    result = train_tokenizer(tok, load_images(dataset, "train"), config, ckpt_dir=run, desc=f"{method} {Path(out).name}")
    tok.save_pretrained(out, half=half)
    write_model_info(out, recipe(method, options, config, dataset), final_loss=result.final_loss,
                     train_seconds=round(time.perf_counter() - t0, 1), params=sum(p.numel() for p in tok.parameters()),
                     loss_curve=loss_curve(result.history))  # fmt: skip
    return tok


def pretrained_tokenizer(name: str, method: str, options: dict[str, Any], config: TokenizerTrainConfig, *,
                         dataset: str = "fashion-mnist", train_if_missing: bool = True, device: str = "cpu") -> ImageTokenizer:  # fmt: skip
    """The tokenizer ``vision/<name>`` trained with this recipe (cache / assets / train now)."""
    def _train(out: Path, run: Path) -> None:
        train_and_save(out, method, options, config, dataset=dataset, ckpt_dir=run)

    from tokenworks.models.store import load_model

    command = f"tokenworks vision train {method} --name {name} ..."
    return load_model(f"vision/{name}", recipe(method, options, config, dataset), lambda p: load_tokenizer_dir(p, device=device),
                      _train, train_if_missing=train_if_missing, command=command)  # fmt: skip


def load_tokenizer_dir(path: str | Path, *, device: str = "cpu", arg: str = "path") -> ImageTokenizer:
    """``ImageTokenizer.from_pretrained(path)`` with its files checked first: a folder with a
    ``config.json`` object naming a registered image tokenizer and its options, and a valid
    ``model.safetensors`` whose tensors fit the model. FileFormatError says what is wrong."""
    from tokenworks.checks import FileFormatError
    from tokenworks.io import check_safetensors, load_json

    path = Path(path)
    if not path.is_dir():
        raise FileFormatError(arg, f"{path} is not a folder written by `tokenworks vision train`")
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise FileFormatError(arg, f"{path} holds no image tokenizer (expected config.json and model.safetensors)")
    cfg = load_json(cfg_file, kind=dict)
    if not isinstance(cfg.get("method"), str) or not isinstance(cfg.get("options"), dict):
        raise FileFormatError(str(cfg_file), "is not an image tokenizer config (expected 'method' and 'options')")
    check_safetensors(weights)
    try:
        return ImageTokenizer.from_pretrained(path, device=device)
    except (KeyError, RuntimeError, TypeError) as e:
        raise FileFormatError(str(path), f"does not hold a loadable image tokenizer ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def prior_fingerprint(tokenizer_recipe: dict[str, Any], data, config) -> dict[str, Any]:
    return {"prior": asdict(config), "tokenizer": tokenizer_recipe, "dataset": data.name, "split": data.split, "train_images": len(data)}


def train_prior_and_save(out: str | Path, name: str, tok: ImageTokenizer, tokenizer_recipe: dict[str, Any], data, config, *,
                         ckpt_dir: str | Path | None = None, device: str = "cpu") -> None:  # fmt: skip
    """Train the token prior of ``tok`` on its ids of ``data`` and save it (HF folder, float16) in ``out``."""
    from tokenworks.models.store import write_model_info
    from tokenworks.vision.prior import train_token_prior
    from tokenworks.vision.train import encode_dataset

    t0 = time.perf_counter()
    ids = encode_dataset(tok, data, device=device)
    run = _run_dir(ckpt_dir, prior_fingerprint(tokenizer_recipe, data, config))
    model = train_token_prior(ids, tok.codebook_size, config, ckpt_dir=run, device=device, desc=f"prior {name}")
    model.to("cpu").half().save_pretrained(out, safe_serialization=True)
    write_model_info(out, prior_fingerprint(tokenizer_recipe, data, config), train_seconds=round(time.perf_counter() - t0, 1),
                     params=sum(p.numel() for p in model.parameters()))  # fmt: skip


def pretrained_prior(name: str, tok: ImageTokenizer, tokenizer_recipe: dict[str, Any], data, config, *,
                     train_if_missing: bool = True, device: str = "cpu"):  # fmt: skip
    """The token prior ``vision/<name>-prior`` of ``tok`` (cache / assets / train now), float32, eval mode."""
    import torch
    from transformers import LlamaForCausalLM

    from tokenworks.models.store import load_model

    def _train(out: Path, run: Path) -> None:
        train_prior_and_save(out, name, tok, tokenizer_recipe, data, config, ckpt_dir=run, device=device)

    from transformers.utils import logging as hf_logging

    def _load(path: Path):
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # one bar per small prior would drown the suite's own progress
        try:
            return LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
        finally:
            if bar:
                hf_logging.enable_progress_bar()

    fp = prior_fingerprint(tokenizer_recipe, data, config)
    return load_model(f"vision/{name}-prior", fp, _load, _train, train_if_missing=train_if_missing, command="tokenworks vision presets --train")
