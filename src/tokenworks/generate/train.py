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
# generators of the ``generator-compression`` suite (issue 13): raster AR and P58 Token-Shuffle over
# the 14x14 grid of 2x2 same-class scenes (``<tokenizer>-2x2``, :mod:`tokenworks.generate.scenes`),
# and the caption-conditioned MaskGIT behind P27 (:mod:`tokenworks.generate.text_cond`)
COMPRESSION_GENERATORS = {
    "ar-patch2d-2x2": ("raster-ar", "patch2d-7x7-2x2", {}),
    "shuffle2-patch2d-2x2": ("token-shuffle", "patch2d-7x7-2x2", {"shuffle": 2}),
    "maskgit-text": ("text-maskgit", "patch2d-7x7", {}),
}
RECIPES = GENERATORS | COMPRESSION_GENERATORS
SCENE = "-2x2"  # a tokenizer name ending so: 2x2 same-class scenes of its items
CAPTION_DROP = 0.5  # text generators: each attribute word of a training caption is left out with this probability
# recipes that differ from the default 700 steps (xAR and its control: 500, the same for both,
# to fit this session's CPU budget; each of its steps sees two streams of 49 tokens)
TRAIN_STEPS = {"xar-patch2d": 500, "xar-tf-patch2d": 500}
# the DiTs: 400 steps of 32 images (a 196-token full-attention step costs ~1 s on one CPU core)
TRAIN_STEPS |= {n: 400 for n in GENERATORS if n.startswith("dit-")}
BATCH = {n: 32 for n in GENERATORS if n.startswith("dit-")}
TRAIN_IMAGES = {"ar-patch2d-2x2": 15000, "shuffle2-patch2d-2x2": 15000}  # scenes (4 images each)
# the scene models see 196 tokens per sequence: batches of 32 scenes (128 images), 400 steps, to fit
# the shared 2-core CPU budget of issue 13 (the same recipe for s = 1 and s = 2)
TRAIN_STEPS |= {"ar-patch2d-2x2": 400, "shuffle2-patch2d-2x2": 400, "maskgit-text": 500}
BATCH |= {"ar-patch2d-2x2": 32, "shuffle2-patch2d-2x2": 32}


def default_config(name: str) -> GenTrainConfig:
    """The recipe of generator ``name``."""
    check_generator(name)
    return GenTrainConfig(steps=TRAIN_STEPS.get(name, 700), train_images=TRAIN_IMAGES.get(name, 20000), batch_size=BATCH.get(name, 64))


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
    if name not in RECIPES:
        raise ValueError(f"generator must be one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[name]


def _tokenizer_dir(tok_name: str) -> Path:
    from tokenworks.io import assets_dir

    root = assets_dir()
    path = None if root is None else root / "vision" / tok_name
    if path is None or not (path / "config.json").is_file():
        raise FileNotFoundError(f"tokenizer {tok_name!r} not found under the committed assets (assets/vision/{tok_name})")
    return path


def _item_tokenizer(tok_name: str) -> str:
    return tok_name[: -len(SCENE)] if tok_name.endswith(SCENE) else tok_name


@lru_cache(maxsize=4)
def load_tokenizer(tok_name: str):
    """A committed tokenizer by name; ``<name>-2x2``: it tiled over 2x2 scenes (a 14x14 grid for 7x7)."""
    from tokenworks.vision import ImageTokenizer

    if tok_name.endswith(SCENE):
        from tokenworks.generate.scenes import TiledTokenizer

        return TiledTokenizer(load_tokenizer(_item_tokenizer(tok_name)), 2)
    return ImageTokenizer.from_pretrained(_tokenizer_dir(tok_name))


def _tok_sha(tok_name: str) -> str:
    return hashlib.sha256((_tokenizer_dir(_item_tokenizer(tok_name)) / "model.safetensors").read_bytes()).hexdigest()[:16]


def token_data(tok_name: str, continuous: bool, split: str = "train", n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, labels) of the first ``n`` Fashion-MNIST images of ``split`` through the
    tokenizer: ids (n, N) or continuous latents (n, N, D); cached in the cache folder.
    ``<tokenizer>-2x2``: ~``n`` same-class 2x2 scenes of the first 4n images (ids only)."""
    if tok_name.endswith(SCENE):
        from tokenworks.generate.scenes import same_class_scenes

        if continuous:
            raise ValueError(f"tokenizer {tok_name!r} gives ids only (a continuous generator cannot use scenes)")
        ids, labels = token_data(_item_tokenizer(tok_name), False, split, None if n is None else 4 * n)
        return same_class_scenes(ids, labels, 2)
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

    captions = None
    if cls.kind == "text_image_generator":  # captions of the same images, attribute words dropped at random
        from tokenworks.generate.text_cond import CaptionData

        captions = CaptionData("train", config.train_images)

    def batch_fn(step, g):
        i = torch.randint(0, len(labels), (config.batch_size,), generator=g)
        return tokens[i], (labels[i] if captions is None else captions.context(i, drop=CAPTION_DROP, g=g))

    def loss_fn(m, b):
        return m.loss(b[0], b[1])

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(100, config.steps), seed=config.seed, device=device, weight_decay=0.01,
                     desc=f"generator {name}", checkpoint_every=max(100, config.steps // 5))  # fmt: skip
    result = train(gen, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    gen.to("cpu").eval()
    t_tok, t_lab = token_data(tok_name, cls.continuous, "test", 1000 if config.train_images > 100 else 16)
    t_tok = cls.prepare_tokens(t_tok, opts)
    if captions is not None:
        from tokenworks.generate.text_cond import CaptionData

        t_lab = CaptionData("test", len(t_tok)).context(torch.arange(len(t_tok)))
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
