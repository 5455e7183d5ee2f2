"""The decoding family's tiny vision-language model: image tokens in, a caption out (P31's setting).

A Hugging Face ``LlamaForCausalLM`` reads an image as its 16 ``vq-16`` codes (the tokenizer of
:mod:`tokenworks.decode.image_ar`) and answers with a word-level caption written from the
image's pixels and class by the vision family's :func:`~tokenworks.vision.captions.attribute_captions`
("a dark, large, wide, plain pullover"). Sequence: ``[codes (16), SEP, words..., EOS]`` over a
vocabulary of the 1024 codes, SEP / EOS / PAD and the caption words; the loss is on the
caption and EOS only. Trained on the first ``train_images`` Fashion-MNIST training images
(4 layers, d=128). Being a plain HF causal LM, it runs in every ``tokenworks.decode`` decoder
with the prompt ``[codes, SEP]``.

Reproduce the committed model (fp16, ``assets/decode/caption-vlm``)::

    tokenworks train decode-caption-vlm --out assets/decode/caption-vlm

Deviation from P31's setting: FLASH drafts for LLaVA-class VLMs (a ViT + a 7B LM, free-form
answers); this is a 1 M-parameter captioner of 28x28 images with a 30-word vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch

from tokenworks.checks import check_int
from tokenworks.vision.prior import PriorConfig

__all__ = ["CaptionVLMConfig", "caption_data", "caption_vlm", "flash_head", "train_caption_vlm", "train_flash_head_and_save"]

NAME = "decode/caption-vlm"


@dataclass(kw_only=True)
class CaptionVLMConfig(PriorConfig):
    """Size and recipe of the captioner (the token-prior recipe with its own sizes)."""

    tokenizer: str = "vq-16"
    hidden_size: int = 128
    layers: int = 4
    intermediate_size: int = 384
    steps: int = 500
    lr: float = 2e-3
    warmup: int = 30
    train_images: int = 20_000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("train_images", self.train_images, min=10)


@dataclass
class CaptionData:
    """Token sequences (N, 16 + 1 + L) right-padded with ``pad``; ``prompt_len`` = 17."""

    seqs: torch.Tensor
    labels: torch.Tensor
    words: list[str]
    codebook_size: int

    @property
    def sep(self) -> int:
        return self.codebook_size

    @property
    def eos(self) -> int:
        return self.codebook_size + 1

    @property
    def pad(self) -> int:
        return self.codebook_size + 2

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + 3 + len(self.words)

    @property
    def prompt_len(self) -> int:
        return int((self.seqs[0] == self.sep).nonzero()[0]) + 1

    def text(self, ids: list[int]) -> str:
        off = self.codebook_size + 3
        return " ".join(self.words[i - off] for i in ids if i >= off)


def caption_data(split: str, n: int, tokenizer: str = "vq-16") -> CaptionData:
    """The first ``n`` images of ``split`` as ``[codes, SEP, caption words, EOS]`` sequences
    (attribute tertiles fitted on the training images; word list fixed by the caption grammar)."""
    from tokenworks.data import load_fashion_mnist
    from tokenworks.decode.image_ar import image_tokenizer
    from tokenworks.vision import encode_dataset
    from tokenworks.vision.captions import BRIGHTNESS, SHAPE, SIZE, TEXTURE, attribute_captions, attribute_cuts

    train = load_fashion_mnist("train")
    data = load_fashion_mnist(split).take(n)
    cuts = attribute_cuts(train.take(20_000).float())
    caps = attribute_captions(data.float(), data.labels, data.classes, cuts)
    phrases = [*BRIGHTNESS, *SIZE, *SHAPE, *TEXTURE, *(c.lower() for c in data.classes)]
    words = ["a", ","] + sorted({w for ph in phrases for w in ph.split()})
    tok = image_tokenizer(tokenizer)
    K = tok.codebook_size
    codes = encode_dataset(tok, data).reshape(len(data), -1)
    index = {w: K + 3 + i for i, w in enumerate(words)}
    rows = [[index[w] for w in c.replace(",", " ,").split()] + [K + 1] for c in caps]
    L = max(len(r) for r in rows)
    text = torch.full((len(rows), L), K + 2, dtype=torch.long)
    for i, r in enumerate(rows):
        text[i, : len(r)] = torch.tensor(r)
    seqs = torch.cat([codes, torch.full((len(rows), 1), K), text], 1)
    return CaptionData(seqs, data.labels, words, K)


def _fingerprint(config: CaptionVLMConfig, words: list[str]) -> dict:
    """The recipe, the word list and the image tokenizer's identity (a retrained tokenizer retrains the VLM)."""
    from tokenworks.decode.image_ar import _tokenizer_dir, _tokenizer_identity

    return {**asdict(config), "words": words, "tokenizer_identity": _tokenizer_identity(str(_tokenizer_dir(config.tokenizer)))}


def train_caption_vlm(out: str | Path, config: CaptionVLMConfig | None = None, *, ckpt_dir=None, device: str = "cpu", fp16: bool = True) -> dict:
    """Train the captioner and save it (HF folder + ``tokenworks.json`` with the word list)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or CaptionVLMConfig()
    data = caption_data("train", config.train_images, config.tokenizer)
    test = caption_data("test", 1000, config.tokenizer)
    P = data.prompt_len
    cfg = LlamaConfig(
        vocab_size=data.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=data.seqs.shape[1] + 8, tie_word_embeddings=False, bos_token_id=None, eos_token_id=data.eos,
        pad_token_id=data.pad,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(cfg)

    def loss_fn(m, batch):
        logits = m(input_ids=batch[:, :-1]).logits[:, P - 1 :]  # predictions of the caption tokens
        y = batch[:, P:].masked_fill(batch[:, P:] == data.pad, -100)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)

    def batch_fn(step, g):
        return data.seqs[torch.randint(0, len(data.seqs), (config.batch_size,), generator=g)]

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=config.weight_decay, seed=config.seed,
                     device=device, desc="caption VLM", checkpoint_every=100)  # fmt: skip
    result = train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    model.to("cpu").eval()
    with torch.no_grad():
        nll = float(loss_fn(model, test.seqs))
        gen = model.generate(test.seqs[:, :P], attention_mask=torch.ones_like(test.seqs[:, :P]), max_new_tokens=test.seqs.shape[1] - P,
                             do_sample=False, pad_token_id=data.pad, eos_token_id=data.eos)[:, P:]  # fmt: skip
    exact = float(sum(test.text(g.tolist()) == test.text(t.tolist()) for g, t in zip(gen, test.seqs[:, P:])) / len(gen))
    out = Path(out)
    (model.half() if fp16 else model).save_pretrained(out, safe_serialization=True)
    write_model_info(out, _fingerprint(config, data.words), held_out_nll=nll, held_out_exact_caption=exact,
                     train_loss=result.final_loss, train_seconds=round(result.seconds, 1), params=sum(p.numel() for p in model.parameters()),
                     history=[list(h) for h in result.history[:: max(1, len(result.history) // 100)]])  # fmt: skip
    return {"held_out_nll": nll, "held_out_exact_caption": exact}


@lru_cache(maxsize=2)
def _load(path: str):
    from transformers import LlamaForCausalLM

    from tokenworks.models.lm import quiet_loading

    with quiet_loading():
        return LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def caption_vlm(*, config: CaptionVLMConfig | None = None, train_if_missing: bool = True):
    """The captioner (float32, eval mode): cache / committed assets / trained now (minutes)."""
    import copy

    from tokenworks.io import load_json
    from tokenworks.models.store import load_or_train

    config = config or CaptionVLMConfig()
    words = caption_data("test", 10, config.tokenizer).words

    def _train(out: Path, run: Path) -> None:
        train_caption_vlm(out, config, ckpt_dir=run)

    path = load_or_train(NAME, _fingerprint(config, words), _train, train_if_missing=train_if_missing, command="tokenworks train decode-caption-vlm")
    load_json(path / "tokenworks.json")
    return copy.deepcopy(_load(str(path)))


def tiny_config() -> CaptionVLMConfig:
    return replace(CaptionVLMConfig(), steps=2, warmup=0, batch_size=8, train_images=200)


HEAD_RECIPE = {"k": 4, "d": 64, "layers": 2, "steps": 800, "batch_size": 64, "lr": 2e-3, "seed": 0, "train_images": 5000}


def _vlm_identity() -> dict:
    import hashlib

    from tokenworks.models.store import find_model

    config = CaptionVLMConfig()
    words = caption_data("test", 10, config.tokenizer).words
    path = find_model(NAME, _fingerprint(config, words))
    if path is None:
        raise FileNotFoundError("the caption VLM is not trained (`tokenworks train decode-caption-vlm`)")
    return {"vlm_sha256": hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:16]}


def train_flash_head_and_save(out: str | Path, queries: int, recipe: dict | None = None, *, ckpt_dir=None) -> dict:
    """Self-distil a FLASH head with ``queries`` compressed visual tokens on the captioner's
    greedy answers to the first training images; save ``model.safetensors`` + ``tokenworks.json``."""
    from tokenworks.decode.flash import FlashHead, train_flash_head
    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info

    r = {**HEAD_RECIPE, **(recipe or {})}
    vlm = caption_vlm(train_if_missing=False)
    data = caption_data("train", r["train_images"])
    P = data.prompt_len
    with torch.no_grad():
        gen = torch.cat([vlm.generate(b[:, :P], attention_mask=torch.ones_like(b[:, :P]), max_new_tokens=data.seqs.shape[1] - P, do_sample=False,
                                      pad_token_id=data.pad, eos_token_id=data.eos)[:, P:] for b in data.seqs.split(500)])  # fmt: skip
    answer = torch.cat([data.seqs[:, P - 1 : P], gen], 1)  # [SEP, greedy answer (padded)]
    torch.manual_seed(r["seed"])
    emb = vlm.get_input_embeddings().weight
    arch = {"vocab_size": data.vocab_size, "image_tokens": P - 1, "k": r["k"], "queries": queries, "d": r["d"], "layers": r["layers"],
            "max_len": answer.shape[1] + 2, "embed_dim": emb.shape[1]}  # fmt: skip
    head = FlashHead(**arch)
    with torch.no_grad():
        head.embed.weight.copy_(emb)  # start from the target's input embeddings
    train_flash_head(head, data.seqs[:, : P - 1], answer, data.pad, steps=r["steps"], batch_size=r["batch_size"], lr=r["lr"], seed=r["seed"],
                     ckpt_dir=ckpt_dir, desc=f"FLASH head ({queries} queries)")  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "model.safetensors", {k: v.half() for k, v in head.state_dict().items()})
    write_model_info(out, {**r, "queries": queries, **_vlm_identity()}, arch=arch, params=sum(p.numel() for p in head.parameters()))
    return arch


def flash_head(queries: int = 4, *, train_if_missing: bool = True):
    """The FLASH head with ``queries`` compressed visual tokens (float32, eval mode)."""
    from tokenworks.decode.flash import FlashHead
    from tokenworks.io import load_json, load_tensors
    from tokenworks.models.store import load_or_train

    def _train(out: Path, run: Path) -> None:
        train_flash_head_and_save(out, queries, ckpt_dir=run)

    path = load_or_train(f"decode/flash-head-q{queries}", {**HEAD_RECIPE, "queries": queries, **_vlm_identity()}, _train,
                         train_if_missing=train_if_missing, command=f"tokenworks train decode-flash-head --queries {queries}")  # fmt: skip
    head = FlashHead(**load_json(path / "tokenworks.json")["arch"])
    head.load_state_dict({k: v.float() for k, v in load_tensors(path / "model.safetensors").items()})
    return head.eval().requires_grad_(False)
