"""Training and evaluation entry points shared by every image tokenizer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenworks.checks import check_int
from tokenworks.data import ImageSet
from tokenworks.train import TrainConfig, TrainResult, train
from tokenworks.vision.base import ImageTokenizer

__all__ = ["TokenizerTrainConfig", "evaluate_tokenizer", "train_tokenizer"]


@dataclass(kw_only=True)
class TokenizerTrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)


def train_tokenizer(
    tok: ImageTokenizer,
    data: ImageSet,
    config: TokenizerTrainConfig | None = None,
    *,
    ckpt_dir: str | os.PathLike | None = None,
    desc: str | None = None,
) -> TrainResult:
    """Train ``tok`` on random batches of ``data`` (resumable with ``ckpt_dir``)."""
    config = config or TokenizerTrainConfig()
    images = data.float()
    if tuple(images.shape[1:]) != (tok.channels, tok.image_size, tok.image_size):
        raise ValueError(f"data images {tuple(images.shape[1:])} do not fit the tokenizer ({tok.channels}, {tok.image_size}, {tok.image_size})")
    captions = getattr(data, "labels", None)

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, images.shape[0], (config.batch_size,), generator=g)
        return images[i], captions[i] if captions is not None else None

    def loss_fn(model, batch):
        x, y = batch
        if hasattr(model, "set_condition"):
            model.set_condition(y)
        return model.loss(x)

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, seed=config.seed, device=config.device,
                     desc=desc or f"{tok.registry_name} tokenizer", checkpoint_every=max(50, config.steps // 10))  # fmt: skip
    return train(tok, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)


@torch.no_grad()
def evaluate_tokenizer(tok: ImageTokenizer, data: ImageSet, *, batch_size: int = 500, device: str = "cpu") -> dict:
    """Reconstruction metrics on ``data``: PSNR, SSIM, fd_local, codebook usage/perplexity, bits."""
    from tokenworks.metrics import codebook_perplexity, codebook_usage, psnr, ssim
    from tokenworks.models import fd_local

    tok = tok.to(device).eval()
    x = data.float()
    recons, ids = [], []
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(device)
        if hasattr(tok, "set_condition"):
            tok.set_condition(data.labels[i : i + batch_size].to(device))
        idx = tok.encode(xb)
        recons.append(tok.decode(idx).cpu())
        ids.append(idx.cpu())
    recon = torch.cat(recons)
    idx = torch.cat(ids)
    k = tok.quant.codebook_size
    return {
        "psnr": float(psnr(recon, x).mean()),
        "ssim": float(ssim(recon, x).mean()),
        "fd_local": fd_local(x, recon, dataset=data.name) if data.name in ("fashion-mnist", "mnist5k") else float("nan"),
        "codebook_usage": codebook_usage(idx, k),
        "codebook_perplexity": codebook_perplexity(idx, k),
        "bits_per_image": tok.bits_per_image,
        "tokens": tok.num_tokens,
    }
