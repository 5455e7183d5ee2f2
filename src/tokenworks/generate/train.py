"""Training and loading of the image generators behind the ``image-generation`` suite.

Each generator is trained once by ``tokenworks train gen-<name>`` on the tokens of a committed
tokenizer (``assets/vision/<tokenizer>``) of Fashion-MNIST training images (ids for discrete
generators, pre-rounding FSQ latents for continuous ones, encoded once and cached), kept in the
cache or the committed ``assets/generate/<name>``, and found by its recipe's fingerprint
(:mod:`tokenworks.models.store`), like the motion generators.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.checks import check_int

__all__ = ["GENERATORS", "GenTrainConfig", "image_generator", "load_tokenizer", "token_data", "train_image_generator"]

VERSION = 1
WIDTH = {"d_model": 96, "layers": 2, "heads": 4}
# name -> (registered method, tokenizer asset, options)
GENERATORS = {
    "ar-patch2d": ("raster-ar", "patch2d-7x7", {}),
    "maskgit-patch2d": ("maskgit", "patch2d-7x7", {}),
    "enat-patch2d": ("enat", "patch2d-7x7", {}),
    "maskgit-titok32": ("maskgit", "titok-32", {}),
    "maskgit-titok49": ("maskgit", "titok-49", {}),  # 1D at the bits and latent scalars of patch2d-7x7
    "mar-patch2d": ("mar", "patch2d-7x7", {}),
    "himar-patch2d": ("himar", "patch2d-7x7", {}),
    "xar-patch2d": ("xar", "patch2d-7x7", {}),
    "xar-tf-patch2d": ("xar", "patch2d-7x7", {"noisy_context": False}),
    # the generator-compression suite: flow-matching DiTs over the patch2d-7x7 latents, one per
    # attention variant at about the same parameters (5 full / window layers, 3 PT-DiT layers of
    # three attentions, 2 FIT layers of local + read + global + write); "-196": the 7x7 latent
    # grid 2x upsampled to 14x14 = 196 tokens; d = 56 so that the six fit in ~2.7 MB of assets
    "dit-full-49": ("dit", "patch2d-7x7", {"d_model": 56, "layers": 5}),
    "dit-fit-49": ("dit", "patch2d-7x7", {"d_model": 56, "layers": 2, "attention": "fit", "attention_options": {"group": 1, "group_w": 7, "latents": 4}}),
    "dit-full-196": ("dit", "patch2d-7x7", {"d_model": 56, "layers": 5, "upsample": 2}),
    "dit-window-196": ("dit", "patch2d-7x7", {"d_model": 56, "layers": 5, "upsample": 2, "attention": "window-attention", "attention_options": {"window": 7}}),
    "dit-ptdit-196": ("dit", "patch2d-7x7", {"d_model": 56, "layers": 3, "upsample": 2, "attention": "pt-dit", "attention_options": {"proxy_window": 2, "window": 7}}),
    "dit-fit-196": ("dit", "patch2d-7x7", {"d_model": 56, "layers": 2, "upsample": 2, "attention": "fit", "attention_options": {"group": 7, "latents": 8}}),
}
# recipes that differ from the default 700 steps (xAR and its control: 500, the same for both,
# to fit this session's CPU budget; each of its steps sees two streams of 49 tokens)
TRAIN_STEPS = {"xar-patch2d": 500, "xar-tf-patch2d": 500}
# the DiTs: 400 steps of 32 images (a 196-token full-attention step costs ~1 s on one CPU core)
TRAIN_STEPS |= {n: 400 for n in GENERATORS if n.startswith("dit-")}
BATCH_SIZE = {n: 32 for n in GENERATORS if n.startswith("dit-")}


def default_config(name: str) -> GenTrainConfig:
    """The recipe of generator ``name``."""
    check_generator(name)
    return GenTrainConfig(steps=TRAIN_STEPS.get(name, 700), batch_size=BATCH_SIZE.get(name, 64))


@dataclass(kw_only=True)
class GenTrainConfig:
    steps: int = 700
    batch_size: int = 64
    lr: float = 2e-3
    train_images: int = 20000
    seed: int = 0
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)
        check_int("train_images", self.train_images, min=2, max=60000)


def tiny_config() -> GenTrainConfig:
    """A seconds-long version of the recipe (tests)."""
    return replace(GenTrainConfig(), steps=2, batch_size=4, train_images=16, options={"d_model": 16, "layers": 1, "heads": 2})


def check_generator(name: str) -> tuple[str, str, dict]:
    if name not in GENERATORS:
        raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, got {name!r}")
    return GENERATORS[name]


def _tokenizer_dir(tok_name: str) -> Path:
    from tokenworks.io import assets_dir

    root = assets_dir()
    path = None if root is None else root / "vision" / tok_name
    if path is None or not (path / "config.json").is_file():
        raise FileNotFoundError(f"tokenizer {tok_name!r} not found under the committed assets (assets/vision/{tok_name})")
    return path


@lru_cache(maxsize=4)
def load_tokenizer(tok_name: str):
    from tokenworks.vision import ImageTokenizer

    return ImageTokenizer.from_pretrained(_tokenizer_dir(tok_name))


def _tok_sha(tok_name: str) -> str:
    return hashlib.sha256((_tokenizer_dir(tok_name) / "model.safetensors").read_bytes()).hexdigest()[:16]


def token_data(tok_name: str, continuous: bool, split: str = "train", n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, labels) of the first ``n`` Fashion-MNIST images of ``split`` through the
    tokenizer: ids (n, N) or continuous latents (n, N, D); cached in the cache folder."""
    from tokenworks.data import load_images
    from tokenworks.generate.latents import encode_latents
    from tokenworks.io import cache_dir, load_tensors, save_tensors

    data = load_images("fashion-mnist", split)
    n = len(data) if n is None else min(n, len(data))
    path = cache_dir("generate", "tokens") / f"{tok_name}-{_tok_sha(tok_name)}-{split}-{n}-{'lat' if continuous else 'ids'}.safetensors"
    if path.is_file():
        t = load_tensors(path)
        return t["tokens"], t["labels"].long()
    tok = load_tokenizer(tok_name)
    x = data.take(n).float()
    with torch.no_grad():
        parts = [encode_latents(tok, b) if continuous else tok.encode(b) for b in x.split(1000)]
    tokens, labels = torch.cat(parts), data.labels[:n].clone()
    tokens = tokens.float() if continuous else tokens.long()
    save_tensors(path, {"tokens": tokens.contiguous(), "labels": labels})
    return tokens, labels


def _fingerprint(name: str, config: GenTrainConfig) -> dict:
    method, tok_name, options = check_generator(name)
    return {"kind": "image-generator", "version": VERSION, "method": method, "tokenizer": tok_name, "tokenizer_sha256": _tok_sha(tok_name),
            "options": WIDTH | options | config.options, "config": asdict(config)}  # fmt: skip


def train_image_generator(name: str, out: str | Path, config: GenTrainConfig, *, ckpt_dir=None, device: str = "cpu") -> dict:
    """Train generator ``name`` on its tokenizer's train tokens and save it (fp16) into ``out``."""
    from tokenworks.models.store import write_model_info
    from tokenworks.registry import create, get
    from tokenworks.train import TrainConfig, train

    method, tok_name, options = check_generator(name)
    cls = get(method).obj
    tokens, labels = token_data(tok_name, cls.continuous, "train", config.train_images)
    tok = load_tokenizer(tok_name)
    torch.manual_seed(config.seed)
    extra = {"token_dim": tokens.shape[-1]} if cls.continuous else {"codebook_size": tok.codebook_size}
    opts = WIDTH | options | config.options
    tokens = cls.prepare_tokens(tokens, opts)
    gen = create(method, num_tokens=tokens.shape[1], tokenizer=tok_name, **extra, **opts)

    def batch_fn(step, g):
        i = torch.randint(0, len(labels), (config.batch_size,), generator=g)
        return tokens[i], labels[i]

    def loss_fn(m, b):
        return m.loss(b[0], b[1])

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(100, config.steps), seed=config.seed, device=device, weight_decay=0.01,
                     desc=f"generator {name}", checkpoint_every=max(100, config.steps // 5))  # fmt: skip
    result = train(gen, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    gen.to("cpu").eval()
    t_tok, t_lab = token_data(tok_name, cls.continuous, "test", 1000 if config.train_images > 100 else 16)
    t_tok = cls.prepare_tokens(t_tok, opts)
    torch.manual_seed(1)
    with torch.no_grad():
        held = float(loss_fn(gen, (t_tok, t_lab)))
    info = {"held_out_loss": held, "train_seconds": round(result.seconds, 1), "params": sum(p.numel() for p in gen.parameters()),
            "history": [list(h) for h in result.history[:: max(1, len(result.history) // 100)]]}  # fmt: skip
    gen.save(out)
    write_model_info(out, _fingerprint(name, config), **info)
    return info


def image_generator(name: str, config: GenTrainConfig | None = None, *, train_if_missing: bool = True, device: str = "cpu"):
    """The trained generator ``name`` (cache, then ``assets/generate/<name>``, else trained now)."""
    from tokenworks.generate.base import ImageGenerator
    from tokenworks.models.store import load_model

    config = config or default_config(name)
    fp = _fingerprint(name, config)
    run = hashlib.sha256(repr(fp).encode()).hexdigest()[:12]
    return load_model(f"generate/{name}", fp, ImageGenerator.load,
                      lambda out, runs: train_image_generator(name, out, config, ckpt_dir=Path(runs) / run, device=device),
                      train_if_missing=train_if_missing, command=f"tokenworks train gen-{name}")  # fmt: skip
