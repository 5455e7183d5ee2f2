"""The motion generator interface (GEN over motion tokens) and the mechanics every generator shares.

    gen = tokenworks.create("mmm", codebook_size=240)
    out = gen.generate(["walk", "kick"], lengths=None, steps=8, seed=0)  # GenerationResult
    out.tokens   # (B, max_tokens) code ids, PAD past each motion's length
    out.lengths  # (B,) lengths in tokens (predicted by AR / BAMM, given to MMM / M2DM)
    out.nfe      # network evaluations per motion

A generator is a small transformer over ``[condition, token_1 .. token_N, END]``: the condition is
the MiniLM embedding of the label's text description (``tokenworks.data.motion.LABELS``), the
tokens are motion-tokenizer codes (4 frames each), ``END`` closes a motion of unknown length,
``MASK`` is the absorbing / masked state, ``PAD`` fills the rest. The base class holds the
embeddings, the transformer (``nn.TransformerEncoder`` driven by a per-sample boolean attention
matrix, so each paper only says who may see whom), the output head over codes + END, sampling,
saving and loading; each module (``ar``, ``mmm``, ``bamm``, ``m2dm``) writes its training loss
and its decoding loop.

The image generators of :mod:`tokenworks.generate` follow this interface (issue 12). This one is
written so that an image generator over tokenizer codes can follow it: a condition in, a
``GenerationResult`` of token ids with lengths and network evaluations out; issue 12 should align
with (or generalise) it rather than add a second shape.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.data.motion import LABELS, MAX_FRAMES, label_index

__all__ = ["GenerationResult", "MotionGenerator"]

TEXT_DIM = 384  # MiniLM-L6


@dataclass
class GenerationResult:
    tokens: torch.Tensor  # (B, max_tokens) long, PAD past lengths
    lengths: torch.Tensor  # (B,) long, in tokens
    nfe: float  # network evaluations per motion
    seconds: float  # wall time per motion


def check_steps(steps) -> int:
    """``steps``: a positive integer (one-line error naming it otherwise)."""
    return check_int("steps", steps, min=1)


@dataclass(kw_only=True, eq=False, repr=False)
class MotionGenerator(nn.Module):
    """Base of the motion generators; options are dataclass fields, validated on creation."""

    kind: ClassVar[str] = "motion_generator"
    bidirectional: ClassVar[bool] = False

    codebook_size: int = 240
    max_tokens: int = MAX_FRAMES // 4
    d_model: int = 64
    layers: int = 3
    heads: int = 4
    dropout: float = 0.1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        nn.Module.__init__(self)
        check_int("codebook_size", self.codebook_size, min=2, max=1 << 20)
        check_int("max_tokens", self.max_tokens, min=1, max=4096)
        check_int("d_model", self.d_model, min=8, max=4096)
        check_int("layers", self.layers, min=1, max=64)
        check_int("heads", self.heads, min=1, max=64)
        if self.d_model % self.heads:
            raise ValueError(f"d_model must be divisible by heads={self.heads}, got {self.d_model}")
        check_float("dropout", self.dropout, min=0.0, max=1.0, max_open=True)
        check_float("temperature", self.temperature, min=0.0, min_open=True)
        self.validate()
        K = self.codebook_size
        self.END, self.PAD, self.MASK = K, K + 1, K + 2
        self.tok_emb = nn.Embedding(K + 3, self.d_model)
        self.pos_emb = nn.Parameter(torch.randn(self.max_tokens + 2, self.d_model) * 0.02)
        self.cond_proj = nn.Linear(TEXT_DIM, self.d_model)
        layer = nn.TransformerEncoderLayer(self.d_model, self.heads, 2 * self.d_model, self.dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, self.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(self.d_model)
        self.head = nn.Linear(self.d_model, K + 1)  # codes + END
        self.register_buffer("label_embeddings", torch.zeros(len(LABELS), TEXT_DIM))

    def validate(self) -> None:
        """Check the subclass's own option fields."""

    # ------------------------------------------------------------------ core
    @property
    def seq_len(self) -> int:
        return self.max_tokens + 1  # tokens + END slot

    def logits(self, ids: torch.Tensor, cond: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """ids (B, S) token ids of positions 1..S, cond (B, 384), allowed (B, S+1, S+1) bool
        (query, key) -> logits (B, S+1, K+1) at positions 0..S (0 is the condition)."""
        B, S = ids.shape
        x = torch.cat([self.cond_proj(cond)[:, None], self.tok_emb(ids)], 1) + self.pos_emb[: S + 1]
        allowed = allowed | torch.eye(S + 1, dtype=torch.bool, device=ids.device)  # every row sees itself
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, float("-inf"))
        mask = mask.repeat_interleave(self.heads, 0)
        return self.head(self.norm(self.blocks(x, mask=mask)))

    @staticmethod
    def causal(B: int, S: int, device=None) -> torch.Tensor:
        return torch.ones(S + 1, S + 1, dtype=torch.bool, device=device).tril().expand(B, S + 1, S + 1).clone()

    @staticmethod
    def full(lengths: torch.Tensor, S: int) -> torch.Tensor:
        """Bidirectional attention over the condition and the first ``lengths`` tokens."""
        keys = torch.arange(S + 1)[None] <= lengths[:, None]  # position 0 + tokens 1..L
        return keys[:, None, :].expand(-1, S + 1, -1).clone()

    # ------------------------------------------------------------------ conditions
    def set_label_embeddings(self, emb: torch.Tensor) -> None:
        self.label_embeddings.copy_(emb)

    def conditions(self, labels) -> torch.Tensor:
        """Labels (names or indices) -> their text embeddings (B, 384)."""
        if isinstance(labels, torch.Tensor):
            idx = labels.long()
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(LABELS)):
                raise ValueError(f"labels must be indices in [0, {len(LABELS)}), got {idx.tolist()}")
        else:
            idx = torch.tensor([label_index(x) if isinstance(x, str) else int(x) for x in labels], dtype=torch.long)
        return self.label_embeddings[idx]

    def check_lengths(self, lengths, B: int) -> torch.Tensor:
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
        if lengths.numel() == 1 and B > 1:
            lengths = lengths.expand(B).clone()
        if lengths.numel() != B or int(lengths.min()) < 1 or int(lengths.max()) > self.max_tokens:
            raise ValueError(f"lengths must be {B} token counts in [1, {self.max_tokens}], got {lengths.tolist()}")
        return lengths

    def sample(self, logits: torch.Tensor, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample from logits (..., V) at the temperature; returns ids and their probabilities."""
        probs = torch.softmax(logits.float() / self.temperature, -1)
        flat = probs.reshape(-1, probs.shape[-1])
        ids = torch.multinomial(flat, 1, generator=g).reshape(probs.shape[:-1])
        return ids, probs.gather(-1, ids[..., None])[..., 0]

    # ------------------------------------------------------------------ family hooks
    def loss(self, tokens: torch.Tensor, lengths: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Training loss on tokens (B, max_tokens) with PAD past ``lengths``."""
        raise NotImplementedError

    def _generate(self, cond: torch.Tensor, lengths: torch.Tensor | None, steps: int, g: torch.Generator | None):
        """-> (tokens, lengths, network evaluations per motion)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, labels, *, lengths=None, steps: int = 8, seed: int = 0) -> GenerationResult:
        """Generate one motion per label (names or indices). ``lengths`` (tokens) is required by
        the generators that do not predict the end (MMM, M2DM) and optional for AR / BAMM."""
        check_steps(steps)
        was = self.training
        self.eval()
        cond = self.conditions(labels)
        if lengths is not None:
            lengths = self.check_lengths(lengths, cond.shape[0])
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        tokens, out_len, nfe = self._generate(cond, lengths, steps, g)
        secs = (time.perf_counter() - t0) / max(1, cond.shape[0])
        self.train(was)
        return GenerationResult(tokens, out_len, float(nfe), secs)

    # ------------------------------------------------------------------ persistence
    def options(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def save(self, out: str | Path) -> None:
        from tokenworks.io import atomic_write_json, save_tensors

        save_tensors(Path(out) / "model.safetensors", {k: v.half() if v.is_floating_point() else v for k, v in self.state_dict().items()})
        atomic_write_json(Path(out) / "config.json", {"method": self.registry_name, "options": self.options()})

    @staticmethod
    def load(path: str | Path) -> MotionGenerator:
        from tokenworks.io import load_json, load_tensors
        from tokenworks.registry import create, get

        cfg = load_json(Path(path) / "config.json", kind=dict)
        known = {f.name for f in fields(get(cfg["method"]).obj)}
        gen = create(cfg["method"], **{k: v for k, v in cfg["options"].items() if k in known})
        gen.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_tensors(Path(path) / "model.safetensors").items()})
        return gen.eval()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items())


def cosine_ratio(step: int, steps: int) -> float:
    """MaskGIT's cosine schedule: fraction of tokens still masked after ``step`` of ``steps``."""
    return math.cos(math.pi / 2 * step / steps)


def pad_after(tokens: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    keep = torch.arange(tokens.shape[1])[None] < lengths[:, None]
    return torch.where(keep, tokens, torch.full_like(tokens, pad))

