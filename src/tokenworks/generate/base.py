"""The image generator interface (GEN over image tokens) and the mechanics every generator shares.

    gen = tokenworks.create("maskgit", num_tokens=49, codebook_size=1000, tokenizer="patch2d-7x7")
    out = gen.generate([0, 3, 7], steps=8, seed=0)   # GenerationResult
    out.tokens      # (B, N) code ids, or (B, N, D) continuous latents (``gen.continuous``)
    out.nfe         # network evaluations per image (a classifier-free-guided pass counts once)
    images = gen.decode(out.tokens, tok)              # (B, C, H, W) in [0, 1] through the tokenizer

This is the shape of :class:`tokenworks.motion.base.MotionGenerator` (a condition in, a
``GenerationResult`` with network evaluations and seconds out, ``steps`` and ``seed`` keywords,
``loss`` + ``_generate`` hooks, safetensors + JSON persistence), with an image class label as the
condition and classifier-free guidance (``cfg``: the scale; 1 = no guidance, no extra pass; the
null label is dropped in at ``class_dropout`` during training).

Tokens come from :mod:`tokenworks.vision` tokenizers: discrete generators model ``tok.encode``
ids (one code per token); continuous ones (MAR, Hi-MAR, xAR) model the tokenizer's
pre-rounding FSQ latents (:mod:`tokenworks.generate.latents`). The base class holds the label
embedding, a small pre-norm transformer (:class:`Transformer`, attention written out so that a
boolean (query, key) mask says who sees whom, per-layer inputs can be cached, and
``torch.utils.flop_counter`` counts every matmul), label checks, guidance, timing and saving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenworks.checks import check_float, check_int

__all__ = ["Block", "GenerationResult", "ImageGenerator", "Transformer", "check_labels", "check_steps"]


@dataclass
class GenerationResult:
    tokens: torch.Tensor  # (B, N) long ids, or (B, N, D) float latents
    labels: torch.Tensor  # (B,) the conditioning labels
    nfe: float  # network evaluations per image
    seconds: float  # wall time per image


def check_steps(steps) -> int:
    """``steps``: a positive integer (one-line error naming it otherwise)."""
    return check_int("steps", steps, min=1)


def check_labels(labels, num_classes: int) -> torch.Tensor:
    """Labels (a sequence of ints or a 1-D integer tensor) -> (B,) long, each in [0, num_classes)."""
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() or labels.ndim != 1:
            raise ValueError(f"labels must be a 1-D integer tensor, got dtype {labels.dtype} shape {tuple(labels.shape)}")
        idx = labels.long()
    else:
        try:
            vals = list(labels)
        except TypeError:
            raise ValueError(f"labels must be a sequence of class indices, got {labels!r}") from None
        if any(isinstance(v, bool) or not isinstance(v, int) for v in vals):
            raise ValueError(f"labels must be integers in [0, {num_classes}), got {vals!r}")
        idx = torch.tensor(vals, dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("labels must hold at least one label")
    if int(idx.min()) < 0 or int(idx.max()) >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{int(idx.min())}, {int(idx.max())}]")
    return idx


class Block(nn.Module):
    """Pre-norm transformer block. ``forward(x, allowed, prefix)``: x (B, T, C); allowed
    (B, T, P+T) bool (query, key) over [prefix, x]; prefix (B, P, C) this layer's inputs of
    tokens computed earlier (their keys/values are recomputed from them), or None."""

    def __init__(self, d: int, heads: int, mlp: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp * d), nn.GELU(), nn.Linear(mlp * d, d))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        h = self.n1(x)
        q, k, v = rearrange(self.qkv(h), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        if prefix is not None and prefix.shape[1]:
            _, pk, pv = rearrange(self.qkv(self.n1(prefix)), "b t (three h d) -> three b h t d", three=3, h=self.heads)
            k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        att = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])  # (B, H, T, P+T)
        if allowed is not None:
            att = att.masked_fill(~allowed[:, None], float("-inf"))
        out = torch.einsum("bhqk,bhkd->bhqd", att.softmax(-1), v)
        x = x + self.proj(rearrange(out, "b h t d -> b t (h d)"))
        return x + self.mlp(self.n2(x))


class Transformer(nn.Module):
    """A stack of :class:`Block`; ``forward(x, allowed, prefixes)`` -> (output (B, T, C), the
    per-layer inputs of x, a list of ``layers`` tensors (B, T, C): what a cache keeps)."""

    def __init__(self, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, x, allowed=None, prefixes=None):
        inputs = []
        for i, blk in enumerate(self.blocks):
            inputs.append(x)
            x = blk(x, allowed, None if prefixes is None else prefixes[i])
        return self.norm(x), inputs


@dataclass(kw_only=True, eq=False, repr=False)
class ImageGenerator(nn.Module):
    """Base of the image generators; options are dataclass fields, validated on creation."""

    kind: ClassVar[str] = "image_generator"
    continuous: ClassVar[bool] = False

    num_tokens: int = 49
    codebook_size: int = 1000  # discrete generators: ids in [0, codebook_size)
    token_dim: int = 4  # continuous generators: latent channels per token
    num_classes: int = 10
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    cfg: float = 1.0  # classifier-free guidance scale (1 = off)
    temperature: float = 1.0
    class_dropout: float = 0.1
    tokenizer: str = ""  # the tokenizer asset the tokens come from (name under assets/vision)

    def __post_init__(self) -> None:
        nn.Module.__init__(self)
        check_int("num_tokens", self.num_tokens, min=1, max=4096)
        check_int("codebook_size", self.codebook_size, min=2, max=1 << 20)
        check_int("token_dim", self.token_dim, min=1, max=4096)
        check_int("num_classes", self.num_classes, min=1, max=100_000)
        check_int("d_model", self.d_model, min=8, max=4096)
        check_int("layers", self.layers, min=1, max=64)
        check_int("heads", self.heads, min=1, max=64)
        if self.d_model % self.heads:
            raise ValueError(f"d_model must be divisible by heads={self.heads}, got {self.d_model}")
        check_float("cfg", self.cfg, min=0.0)
        check_float("temperature", self.temperature, min=0.0, min_open=True)
        check_float("class_dropout", self.class_dropout, min=0.0, max=1.0, max_open=True)
        if not isinstance(self.tokenizer, str):
            raise ValueError(f"tokenizer must be a tokenizer asset name (str), got {self.tokenizer!r}")
        self.validate()
        self.NULL = self.num_classes  # the unconditional label
        self.label_emb = nn.Embedding(self.num_classes + 1, self.d_model)
        self.build()

    def validate(self) -> None:
        """Check the subclass's own option fields."""

    def build(self) -> None:
        """Create the subclass's layers (the base made ``label_emb``)."""

    # ------------------------------------------------------------------ conditions
    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Training: replace labels by the null label with probability ``class_dropout``."""
        if not self.training or self.class_dropout == 0:
            return labels
        return torch.where(torch.rand(labels.shape, device=labels.device) < self.class_dropout, torch.full_like(labels, self.NULL), labels)

    def guided(self, fn, labels: torch.Tensor, *args):
        """Classifier-free guidance: ``fn(labels, *args)`` on the labels and on the null label
        in one doubled batch, ``uncond + cfg * (cond - uncond)``; a single pass when cfg == 1."""
        if self.cfg == 1.0:
            return fn(labels, *args)
        B = labels.shape[0]
        both = fn(torch.cat([labels, torch.full_like(labels, self.NULL)]), *[torch.cat([a, a]) for a in args])
        c, u = both[:B], both[B:]
        return u + self.cfg * (c - u)

    def sample_ids(self, logits: torch.Tensor, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ids from logits (..., V) at the temperature; returns ids and their probabilities."""
        probs = torch.softmax(logits.float() / self.temperature, -1)
        ids = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=g).reshape(probs.shape[:-1])
        return ids, probs.gather(-1, ids[..., None])[..., 0]

    @classmethod
    def prepare_tokens(cls, tokens: torch.Tensor, options: dict) -> torch.Tensor:
        """The tokenizer's tokens -> the generator's training tokens (identity; the DiT upsamples)."""
        return tokens

    # ------------------------------------------------------------------ family hooks
    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training loss on tokens (B, N) ids or (B, N, D) latents with labels (B,)."""
        raise NotImplementedError

    def _generate(self, labels: torch.Tensor, steps: int, g: torch.Generator) -> tuple[torch.Tensor, float]:
        """-> (tokens, network evaluations per image)."""
        raise NotImplementedError

    def check_tokens(self, tokens) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise ValueError(f"tokens must be a tensor, got {type(tokens).__name__}")
        if self.continuous:
            if tokens.ndim != 3 or tokens.shape[1:] != (self.num_tokens, self.token_dim) or not tokens.is_floating_point():
                raise ValueError(f"tokens must be float latents of shape (B, {self.num_tokens}, {self.token_dim}), got {tokens.dtype} {tuple(tokens.shape)}")
        else:
            if tokens.ndim != 2 or tokens.shape[1] != self.num_tokens or tokens.is_floating_point():
                raise ValueError(f"tokens must be integer ids of shape (B, {self.num_tokens}), got {tokens.dtype} {tuple(tokens.shape)}")
            if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.codebook_size):
                raise ValueError(f"tokens must be in [0, {self.codebook_size}), got values in [{int(tokens.min())}, {int(tokens.max())}]")
        return tokens

    @torch.no_grad()
    def generate(self, labels, *, steps: int = 8, seed: int = 0) -> GenerationResult:
        """Generate one image's tokens per label (class indices)."""
        check_steps(steps)
        labels = check_labels(labels, self.num_classes)
        was = self.training
        self.eval()
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        try:
            tokens, nfe = self._generate(labels, steps, g)
        finally:
            self.train(was)
        return GenerationResult(tokens, labels, float(nfe), (time.perf_counter() - t0) / labels.shape[0])

    def _complete(self, tokens, keep, labels, steps, g) -> torch.Tensor:
        raise NotImplementedError(f"{self.registry_name} cannot complete partial tokens")

    @torch.no_grad()
    def complete(self, tokens, keep, labels, *, steps: int = 8, seed: int = 0) -> torch.Tensor:
        """Regenerate the tokens where ``keep`` (B, N) is False given the kept ones (masked
        generators); kept entries come back unchanged, exactly."""
        check_steps(steps)
        labels = check_labels(labels, self.num_classes)
        tokens = self.check_tokens(tokens)
        if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or tuple(keep.shape) != tuple(tokens.shape[:2]) or tokens.shape[0] != labels.shape[0]:
            raise ValueError(f"keep must be a bool tensor of shape {tuple(tokens.shape[:2])} and labels {tokens.shape[0]} long")
        was = self.training
        self.eval()
        try:
            return self._complete(tokens, keep, labels, steps, torch.Generator().manual_seed(seed))
        finally:
            self.train(was)

    def decode(self, tokens: torch.Tensor, tokenizer) -> torch.Tensor:
        """Tokens of this generator -> images through ``tokenizer`` (ids, or continuous latents)."""
        if self.continuous:
            from tokenworks.generate.latents import decode_latents

            return decode_latents(tokenizer, tokens)
        return tokenizer.decode(tokens)

    # ------------------------------------------------------------------ persistence
    def options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def save(self, out: str | Path, **info) -> Path:
        """Write fp16 ``model.safetensors`` + ``config.json`` into the folder ``out`` (each file
        atomically; the training commands build ``out`` as a temporary folder moved into place)."""
        from tokenworks.io import atomic_write_json, save_tensors

        Path(out).mkdir(parents=True, exist_ok=True)
        save_tensors(Path(out) / "model.safetensors", {k: v.half() if v.is_floating_point() else v for k, v in self.state_dict().items()})
        atomic_write_json(Path(out) / "config.json", {"method": self.registry_name, "options": self.options(), **info})
        return Path(out)

    @staticmethod
    def load(path: str | Path) -> ImageGenerator:
        from tokenworks.io import load_json, load_tensors
        from tokenworks.registry import get

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no generator at {path} (config.json missing)")
        cfg = load_json(path / "config.json", kind=dict)
        info = get(cfg["method"])
        if not (isinstance(info.obj, type) and issubclass(info.obj, ImageGenerator)):
            raise ValueError(f"{path} holds {cfg['method']!r}, which is not an image generator")
        known = {f.name for f in fields(info.obj)}
        gen = info.obj(**{k: v for k, v in cfg["options"].items() if k in known})
        state = load_tensors(path / "model.safetensors")
        gen.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return gen.eval()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items())


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1))
