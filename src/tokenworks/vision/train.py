"""Training and evaluation entry points shared by every image tokenizer.

``train_tokenizer(tok, data, TokenizerTrainConfig(...), ckpt_dir=...)`` runs the project's
training loop (progress bar, atomic checkpoints, resume, seed-reproducible) on random batches
of an :class:`~tokenworks.data.ImageSet`. It first calls ``tok.prepare(data)`` (k-means
codebooks, teachers) and, for caption-conditioned tokenizers, gives every image the caption
the tokenizer writes for it (``captions_for``; TexTok: class name + image attributes),
embedded once per distinct caption with MiniLM.

``evaluate_tokenizer(tok, data)`` returns reconstruction metrics; ``encode_dataset`` the ids of
a whole image set (for the token prior); ``perturbed_fd_local`` the P21 perturbed-decode
metric.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.data import ImageSet
from tokenworks.train import TrainConfig, TrainResult, train
from tokenworks.vision.base import ImageTokenizer

__all__ = ["TokenizerTrainConfig", "encode_dataset", "evaluate_tokenizer", "perturbed_fd_local", "train_tokenizer"]


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
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_int("seed", self.seed, min=0)


def _check_data(tok: ImageTokenizer, data: ImageSet) -> torch.Tensor:
    if not isinstance(data, ImageSet):
        raise TypeError(f"data must be a tokenworks.data.ImageSet, got {type(data).__name__}")
    if tuple(data.image_shape) != (tok.channels, tok.image_size, tok.image_size):
        raise ValueError(f"data images {tuple(data.image_shape)} do not fit the tokenizer ({tok.channels}, {tok.image_size}, {tok.image_size})")
    return data.float()


def dataset_captions(tok: ImageTokenizer, data: ImageSet) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Caption embeddings of every image of ``data`` for a conditional tokenizer, else None:
    ``(table (U, E), index (N,))`` with image i's caption embedding ``table[index[i]]``.
    The captions are the tokenizer's ``captions_for(images, labels, classes)`` (TexTok: the class
    name with image attributes), embedded once per distinct string."""
    if not tok.conditional:
        return None
    from tokenworks.vision.captions import embed_captions

    x = data.float()
    texts = [c for i in range(0, x.shape[0], 5000) for c in tok.captions_for(x[i : i + 5000], data.labels[i : i + 5000], list(data.classes))]
    uniq = sorted(set(texts))
    pos = {t: i for i, t in enumerate(uniq)}
    return embed_captions(uniq), torch.tensor([pos[t] for t in texts])


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
    images = _check_data(tok, data)
    torch.manual_seed(config.seed)
    tok.prepare(data)
    caps = dataset_captions(tok, data)
    labels = caps[1] if caps is not None else data.labels

    def batch_fn(step: int, g: torch.Generator):
        i = torch.randint(0, images.shape[0], (config.batch_size,), generator=g)
        return images[i], labels[i]

    def loss_fn(model, batch):
        x, y = batch
        if caps is None:
            return model.loss(x)
        return model.loss(x, caps[0].to(x.device)[y])

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, seed=config.seed, device=config.device,
                     desc=desc or f"{tok.registry_name} tokenizer", checkpoint_every=max(50, config.steps // 10))  # fmt: skip
    return train(tok, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)


@torch.no_grad()
def _batches(tok: ImageTokenizer, data: ImageSet, batch_size: int, device: str):
    x = _check_data(tok, data)
    table = dataset_captions(tok, data)
    for i in range(0, x.shape[0], batch_size):
        caps = table[0][table[1][i : i + batch_size]].to(device) if table is not None else None
        yield x[i : i + batch_size].to(device), caps


@torch.no_grad()
def encode_dataset(tok: ImageTokenizer, data: ImageSet, *, batch_size: int = 500, device: str = "cpu") -> torch.Tensor:
    """Token ids of every image of ``data`` (conditional tokenizers get the class captions)."""
    tok = tok.to(device).eval()
    return torch.cat([tok.encode(x, caps).cpu() for x, caps in _batches(tok, data, batch_size, device)])


_REAL_FEATURES: dict = {}


@torch.no_grad()
def _fd_local(real: torch.Tensor, generated: torch.Tensor, dataset: str) -> float:
    """``tokenworks.models.fd_local`` with the real images' classifier features computed once
    per image set (the suites score many tokenizers against the same test images)."""
    from tokenworks.metrics.image import frechet_distance
    from tokenworks.models import classifier

    model = classifier.image_classifier(dataset)  # looked up in its module, as fd_local does
    dev = next(model.parameters()).device
    flat = real.reshape(-1).double()
    key = (dataset, tuple(real.shape), float(flat.sum()), float((flat * torch.arange(flat.numel(), dtype=torch.float64).remainder(977)).sum()))
    if key not in _REAL_FEATURES:
        _REAL_FEATURES.clear()
        _REAL_FEATURES[key] = torch.cat([model.features(b.to(dev)).cpu() for b in real.split(1000)])
    fake = torch.cat([model.features(b.to(dev)).cpu() for b in generated.split(1000)])
    return frechet_distance(_REAL_FEATURES[key], fake)


@torch.no_grad()
def evaluate_tokenizer(tok: ImageTokenizer, data: ImageSet, *, batch_size: int = 500, device: str = "cpu", return_outputs: bool = False) -> dict:
    """Reconstruction metrics on ``data``: PSNR, SSIM, fd_local, codebook usage/perplexity, bits, and the collapse statistics
    ``distinct_codes_per_image``, ``position_entropy`` (bits) and ``top_code_share``.

    With ``return_outputs=True`` the dict also holds ``"ids"`` and ``"recon"`` tensors.
    """
    from tokenworks.metrics import codebook_perplexity, codebook_usage, psnr, ssim
    from tokenworks.metrics.codes import distinct_codes_per_image, position_entropy, top_code_share

    tok = tok.to(device).eval()
    recons, ids = [], []
    for xb, caps in _batches(tok, data, batch_size, device):
        idx = tok.encode(xb, caps)
        recons.append(tok.decode(idx, caps).cpu())
        ids.append(idx.cpu())
    x = data.float()
    recon = torch.cat(recons)
    idx = torch.cat(ids)
    k = tok.codebook_size
    out = {
        "psnr": float(psnr(recon, x).mean()),
        "ssim": float(ssim(recon, x).mean()),
        "fd_local": _fd_local(x, recon, data.name) if data.name in ("fashion-mnist", "mnist5k") else float("nan"),
        "codebook_usage": codebook_usage(idx, k),
        "codebook_perplexity": codebook_perplexity(idx, k),
        "distinct_codes_per_image": distinct_codes_per_image(idx),
        "position_entropy": position_entropy(idx),
        "top_code_share": top_code_share(idx),
        "bits_per_image": tok.bits_per_image,
        "tokens": tok.num_tokens,
    }
    if return_outputs:
        out.update(ids=idx, recon=recon)
    return out


@torch.no_grad()
def perturbed_fd_local(tok: ImageTokenizer, data: ImageSet, *, rate: float = 0.1, seed: int = 0, ids: torch.Tensor | None = None,
                       delta: int | None = None, batch_size: int = 500, device: str = "cpu") -> float:  # fmt: skip
    """P21's perturbed-decode metric: ``fd_local`` between ``data`` and images decoded from its
    tokens after each token, with probability ``rate``, was swapped for one of the codes
    nearest to its *encoder output* (the quantizer's ``perturb(..., latents=...)``, e.g. the
    ``robustok`` quantizer's; the true code is among the candidates), ``delta`` of them (default:
    the quantizer's own neighbourhood; give the same ``delta`` to a method and its control).
    ``ids`` is accepted for compatibility and checked against the ids encoded here."""
    import inspect

    check_float("rate", rate, min=0.0, max=1.0)
    if not hasattr(tok.quant, "perturb"):
        raise ValueError(f"perturbed_fd_local needs a quantizer with perturb(indices, rate) (e.g. 'robustok'), got {tok.quantizer!r}")
    with_latents = "latents" in inspect.signature(tok.quant.perturb).parameters
    tok = tok.to(device).eval()
    g = torch.Generator().manual_seed(seed)
    recon, start = [], 0
    for xb, caps in _batches(tok, data, batch_size, device):
        cond = tok.condition(caps, xb.shape[0])
        latents = tok.encode_latents(xb, cond)
        _, idx, _ = tok.quant(latents)
        if ids is not None and not torch.equal(idx.cpu(), ids[start : start + xb.shape[0]].cpu()):
            raise ValueError("ids must be the tokenizer's ids of data (encode_dataset(tok, data))")
        start += xb.shape[0]
        kw = {} if delta is None else {"delta": delta}
        noisy = tok.quant.perturb(idx, rate, latents=latents, generator=g, **kw) if with_latents else tok.quant.perturb(idx, rate, generator=g, **kw)
        recon.append(tok.decode(noisy, caps).cpu())
    return _fd_local(data.float(), torch.cat(recon), data.name)
