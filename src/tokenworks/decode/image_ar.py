"""The image-token model pair of the decoding family: two class-conditional AR models (P17's setting).

LANTERN (P17) accelerates autoregressive image generators. Here the generator is a Hugging
Face ``LlamaForCausalLM`` over the ids of one of the project's image tokenizers (default
``vq-16``: TiTok with 16 tokens of a 1024-code VQ codebook, whose codes do not collapse:
~16 distinct codes per image, 98% codebook usage in the image-tokenizers suite). A sequence is
``[class token, id_1 .. id_N]`` with class token ``codebook_size + label``; the vocabulary is
``codebook_size + num_classes``. Two sizes are trained with one recipe on the tokenizer's ids
of the Fashion-MNIST training split: the **target** (:data:`TARGET`, 4 layers, d=128) and the
**draft** (:data:`DRAFT`, 2 layers, d=64). Being plain HF causal LMs sharing one vocabulary,
they run in every ``tokenworks.decode`` decoder: ``prompt = [[class token]]``,
``max_new_tokens = num_tokens``, no EOS.

The tokenizer is loaded through the vision family's public loader
(:func:`tokenworks.vision.store.load_tokenizer_dir`) from the cache or the committed
``assets/vision/<tokenizer>``; the models' fingerprint holds the tokenizer's own fingerprint
and a hash of its weights, so a retrained tokenizer is noticed and the pair retrained (into
the cache) rather than used with codes it never saw.

Reproduce the committed models (fp16, ``assets/decode/image-ar-target`` and ``-draft``)::

    tokenworks train decode-image-ar --size target --out assets/decode/image-ar-target
    tokenworks train decode-image-ar --size draft --out assets/decode/image-ar-draft

Deviation from P17's setting: LlamaGen/Anole/Lumina-mGPT are text- or class-conditional
models of 256-1024 tokens over 16k-codebooks with classifier-free guidance; these are
1-3 M-parameter models over 16 tokens of a 1024-code book, sampled without guidance.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.checks import check_choice, check_int
from tokenworks.vision.prior import PriorConfig

__all__ = ["DRAFT", "TARGET", "ImageARConfig", "class_prompts", "image_ar", "image_tokenizer", "train_image_ar"]


@dataclass(kw_only=True)
class ImageARConfig(PriorConfig):
    """Size and training recipe of one class-conditional image-token model (the vision
    family's token-prior recipe, with its own sizes, tokenizer and training images)."""

    tokenizer: str = "vq-16"
    hidden_size: int = 128
    layers: int = 4
    intermediate_size: int = 384
    steps: int = 800
    lr: float = 2e-3
    warmup: int = 50
    train_images: int | None = 20_000  # the first training images (None: all 60,000)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_images is not None:
            check_int("train_images", self.train_images, min=1)


TARGET = ImageARConfig()
DRAFT = ImageARConfig(hidden_size=64, layers=2, intermediate_size=192, steps=600)
SIZES = {"target": TARGET, "draft": DRAFT}


def _tokenizer_dir(name: str) -> Path:
    from tokenworks.io import assets_dir, cache_dir

    for c in (cache_dir("models", "vision", name), (assets_dir() or Path("/nonexistent")) / "vision" / name):
        if (c / "model.safetensors").is_file():
            return c
    raise FileNotFoundError(f"tokenizer: no image tokenizer {name!r} in the cache or assets/vision (train it with `tokenworks vision presets --train`)")


@lru_cache(maxsize=2)
def _tokenizer_identity(path: str) -> dict:
    from tokenworks.io import load_json

    info = Path(path) / "tokenworks.json"
    fp = load_json(info, kind=dict).get("fingerprint") if info.is_file() else None
    sha = hashlib.sha256((Path(path) / "model.safetensors").read_bytes()).hexdigest()[:16]
    return {"fingerprint": fp, "weights_sha256": sha}


def image_tokenizer(name: str = "vq-16"):
    """The image tokenizer ``name`` (cache or committed assets), eval mode."""
    from tokenworks.vision.store import load_tokenizer_dir

    return load_tokenizer_dir(_tokenizer_dir(name)).eval()


def _fingerprint(config: ImageARConfig) -> dict:
    return {"model": asdict(config), "tokenizer": _tokenizer_identity(str(_tokenizer_dir(config.tokenizer))), "dataset": "fashion-mnist"}


def build_image_ar(codebook_size: int, num_classes: int, length: int, config: ImageARConfig):
    """A random-init ``LlamaForCausalLM`` over ``codebook_size`` codes + ``num_classes`` class tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=codebook_size + num_classes, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=length + 1, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = None
    return model


def class_prompts(labels: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """(B,) class labels -> (B, 1) prompts holding the class token."""
    return (labels.long() + codebook_size)[:, None]


def train_image_ar(out: str | Path, config: ImageARConfig, *, ckpt_dir=None, device: str = "cpu", fp16: bool = True) -> dict:
    """Encode the training images with the tokenizer, train the model on ``[class, ids]`` and
    save it (HF folder + ``tokenworks.json`` with the loss history and held-out NLL)."""
    from tokenworks.data import load_fashion_mnist
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train
    from tokenworks.vision import encode_dataset

    tok = image_tokenizer(config.tokenizer)
    K = tok.codebook_size
    data = load_fashion_mnist("train")
    if config.train_images is not None:
        data = data.take(min(config.train_images, len(data)))
    test = load_fashion_mnist("test").take(2000)
    seqs = torch.cat([class_prompts(data.labels, K), encode_dataset(tok, data).reshape(len(data), -1)], 1)  # (N, 1 + T)
    held = torch.cat([class_prompts(test.labels, K), encode_dataset(tok, test).reshape(len(test), -1)], 1)
    model = build_image_ar(K, len(data.classes), seqs.shape[1] - 1, config)

    def batch_fn(step: int, g: torch.Generator) -> torch.Tensor:
        return seqs[torch.randint(0, seqs.shape[0], (config.batch_size,), generator=g)]

    def loss_fn(m, batch: torch.Tensor) -> torch.Tensor:
        logits = m(input_ids=batch[:, :-1]).logits  # position t predicts token t + 1 (image tokens only)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=config.weight_decay, seed=config.seed, device=device,
                     desc=f"image AR d={config.hidden_size} x{config.layers}", checkpoint_every=max(50, config.steps // 5))  # fmt: skip
    result = train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    model.to("cpu").eval()
    with torch.no_grad():
        nll = float(torch.cat([loss_fn(model, b)[None] for b in held.split(500)]).mean())
    out = Path(out)
    (model.half() if fp16 else model).save_pretrained(out, safe_serialization=True)
    info = {"held_out_nll_per_token": nll, "held_out_images": len(test), "train_loss": result.final_loss, "train_seconds": round(result.seconds, 1),
            "params": sum(p.numel() for p in model.parameters()), "codebook_size": K, "classes": list(data.classes),
            "history": [list(h) for h in result.history[:: max(1, len(result.history) // 200)]]}  # fmt: skip
    write_model_info(out, _fingerprint(config), **info)
    return info


@lru_cache(maxsize=4)
def _load(path: str):
    from transformers import LlamaForCausalLM

    from tokenworks.models.lm import quiet_loading

    with quiet_loading():
        return LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def image_ar(size: str = "target", *, config: ImageARConfig | None = None, train_if_missing: bool = True, device: str = "cpu"):
    """The class-conditional image-token model ``size`` ("target" or "draft"), float32, eval
    mode: from the cache or the committed assets, trained (minutes) if none matches."""
    from tokenworks.models.store import load_or_train

    check_choice("size", size, tuple(SIZES))
    config = config or SIZES[size]

    def _train(out: Path, run: Path) -> None:
        train_image_ar(out, config, ckpt_dir=run, device=device)

    path = load_or_train(f"decode/image-ar-{size}", _fingerprint(config), _train, train_if_missing=train_if_missing,
                         command=f"tokenworks train decode-image-ar --size {size}")  # fmt: skip
    import copy

    return copy.deepcopy(_load(str(path))).to(device)


def tiny(size: str) -> ImageARConfig:
    """A seconds-long configuration of the same recipe (tests)."""
    return replace(SIZES[size], steps=2, warmup=0, batch_size=8, train_images=200)
