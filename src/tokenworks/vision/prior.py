"""A token prior: how easy a tokenizer's tokens are to model autoregressively.

A small Hugging Face ``LlamaForCausalLM`` is trained on the token ids of the training images
(each image one sequence: a BOS token, then its ids in the tokenizer's order; grouped ids
(B, N, G) are read row-major as N*G tokens) and evaluated on held-out images: its negative
log-likelihood in **bits per image** is the cost of describing an image's tokens to a
generator that learned them. Lower means the token space is easier to generate, which is
what GigaTok (P04), VA-VAE (P46), DiGIT (P22) and Hita (P05) claim to improve; comparing it
with reconstruction quality measures the reconstruction vs generation trade-off.

The model is plain ``transformers`` (no code of ours in the forward): any causal LM with
``vocab_size >= codebook_size + 1`` and enough positions can be passed to ``prior_nll_bits``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.checks import check_float, check_int, check_tensor

__all__ = ["PriorConfig", "build_prior", "flatten_ids", "prior_nll_bits", "train_token_prior"]


@dataclass(kw_only=True)
class PriorConfig:
    """Size and training recipe of the token prior."""

    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 192
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("hidden_size", self.hidden_size, min=8)
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        if self.hidden_size % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden_size ({self.hidden_size})")
        check_int("intermediate_size", self.intermediate_size, min=1)
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("warmup", self.warmup, min=0, max=self.steps)
        check_float("weight_decay", self.weight_decay, min=0.0)
        check_int("seed", self.seed, min=0)


def flatten_ids(ids: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Token ids (N, T) or (N, T, G) -> (N, T*G) int64, checked to lie in [0, codebook_size)."""
    check_tensor("ids", ids, ndim=(2, 3), floating=False)
    check_int("codebook_size", codebook_size, min=1)
    flat = ids.reshape(ids.shape[0], -1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(f"ids must be in [0, {codebook_size}), got values in [{int(flat.min())}, {int(flat.max())}]")
    return flat


def build_prior(codebook_size: int, length: int, config: PriorConfig | None = None):
    """A random-init ``LlamaForCausalLM`` over ``codebook_size`` ids + one BOS id (= codebook_size)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = config or PriorConfig()
    check_int("codebook_size", codebook_size, min=1)
    check_int("length", length, min=1)
    cfg = LlamaConfig(
        vocab_size=codebook_size + 1, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=length + 1, tie_word_embeddings=True, bos_token_id=codebook_size,
        eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(cfg)


def _with_bos(flat: torch.Tensor, bos: int) -> torch.Tensor:
    return torch.cat([flat.new_full((flat.shape[0], 1), bos), flat], dim=1)  # (N, 1+L)


def train_token_prior(ids: torch.Tensor, codebook_size: int, config: PriorConfig | None = None, *,
                      ckpt_dir: str | os.PathLike | None = None, device: str = "cpu", desc: str = "token prior"):  # fmt: skip
    """Train a prior on training-set ids (N, T) / (N, T, G); returns the model (eval mode)."""
    from tokenworks.train import TrainConfig, train

    config = config or PriorConfig()
    flat = flatten_ids(ids, codebook_size)
    seqs = _with_bos(flat, codebook_size)  # (N, 1+L)
    model = build_prior(codebook_size, flat.shape[1], config)

    def batch_fn(step: int, g: torch.Generator) -> torch.Tensor:
        return seqs[torch.randint(0, seqs.shape[0], (config.batch_size,), generator=g)]

    def loss_fn(m, batch: torch.Tensor) -> torch.Tensor:
        logits = m(input_ids=batch[:, :-1]).logits  # (B, L, V): position t predicts token t+1
        return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=config.warmup, weight_decay=config.weight_decay,
                     seed=config.seed, device=device, desc=desc, checkpoint_every=max(100, config.steps // 4))  # fmt: skip
    train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    return model.eval()


@torch.no_grad()
def prior_nll_bits(model, ids: torch.Tensor, codebook_size: int, *, batch_size: int = 500) -> torch.Tensor:
    """Per-image negative log-likelihood in bits, (N,): -sum_t log2 p(id_t | BOS, ids_<t)."""
    flat = flatten_ids(ids, codebook_size)
    if model.config.vocab_size < codebook_size + 1:
        raise ValueError(f"model vocab_size ({model.config.vocab_size}) must be >= codebook_size + 1 ({codebook_size + 1})")
    seqs = _with_bos(flat, codebook_size)
    device = next(model.parameters()).device
    model.eval()
    out = []
    for chunk in seqs.split(batch_size):
        chunk = chunk.to(device)
        logp = model(input_ids=chunk[:, :-1]).logits.float().log_softmax(-1)  # (B, L, V)
        nll = -logp.gather(-1, chunk[:, 1:, None])[..., 0].sum(1)  # (B,) nats
        out.append(nll.cpu() / math.log(2))
    return torch.cat(out)

