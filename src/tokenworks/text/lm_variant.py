"""The LM-variant interface: one way of holding tokens in a Hugging Face causal LM.

    v = tw.create("lexinvariant")                # or "caft", "metadata_prefix", "standard_lm"
    model = v.prepare(lm)                        # lm, or a module holding lm + extra parts
    logits = v.logits(model, input_ids)          # (B, T, V)
    loss, stats = v.loss(model, batch)           # training objective on a (B, T + 1) batch

A variant changes *one* thing of a causal LM: how tokens are embedded (P28 lexinvariant), what
the training objective predicts (P69 CAFT), which targets a metadata prefix takes out of the
loss (P47). The base does the mechanics: the next-token cross-entropy (optionally masked),
a model built from any ``LlamaForCausalLM``-like model, and :func:`train_variant` on the
project's training loop. Hooks a variant may override: ``prepare`` (add modules),
``logits`` (the forward) and ``extra_loss`` (terms added to the next-token loss); the
default of each is the plain LM, so ``standard_lm`` (the baseline) overrides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_tensor
from tokenworks.registry import register

__all__ = ["LMVariant", "StandardLM", "next_token_loss", "per_position_nll", "train_variant"]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, T, V) against ``targets`` (B, T); ``mask`` (B, T)
    keeps the positions that count (all of them when None)."""
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(targets)
    if mask is None:
        return nll.mean()
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum().clamp_min(1.0)


@dataclass(kw_only=True)
class LMVariant:
    """Base of the LM variants (``kind = "lm_variant"``); see the module docstring."""

    kind: ClassVar[str] = "lm_variant"

    def prepare(self, lm: nn.Module) -> nn.Module:
        """The trainable model for ``lm`` (default: ``lm`` itself)."""
        return lm

    def base_lm(self, model: nn.Module) -> nn.Module:
        """The causal LM inside ``model`` (what :meth:`prepare` wrapped)."""
        return getattr(model, "lm", model)

    def logits(self, model: nn.Module, input_ids: torch.Tensor, *, seeds: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for ``input_ids`` (B, T). ``seeds`` (B,) fixes any
        per-sequence randomness (ignored by deterministic variants)."""
        check_tensor("input_ids", input_ids, ndim=2, floating=False)
        return self.base_lm(model)(input_ids=input_ids).logits

    def hidden_and_logits(self, model: nn.Module, input_ids: torch.Tensor, *, seeds=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states (B, T, D), logits (B, T, V))."""
        out = self.base_lm(model)(input_ids=input_ids, output_hidden_states=True)
        return out.hidden_states[-1], out.logits

    def extra_loss(self, model: nn.Module, batch: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor | None, step_frac: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Terms added to the next-token loss (default: none)."""
        return hidden.new_zeros(()), {}

    def loss_mask(self, batch: torch.Tensor) -> torch.Tensor | None:
        """(B, T) mask of the targets ``batch[:, 1:]`` that count (None: all)."""
        return None

    def loss(self, model: nn.Module, batch: torch.Tensor, *, step_frac: float = 0.0, seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on ``batch`` (B, T + 1): next-token CE (+ :meth:`extra_loss`)."""
        check_tensor("batch", batch, ndim=2, floating=False)
        if batch.shape[1] < 2:
            raise ValueError(f"batch must hold at least 2 tokens per row, got shape {tuple(batch.shape)}")
        x, y = batch[:, :-1], batch[:, 1:]
        mask = self.loss_mask(batch)
        hidden, logits = self.hidden_and_logits(model, x, seeds=seeds)
        ce = next_token_loss(logits, y, mask)
        extra, stats = self.extra_loss(model, batch, hidden, mask, step_frac)
        return ce + extra, {"ce": float(ce.detach()), **stats}


@register("standard_lm", paper=None, family="TXT", cite="a Llama causal LM with a learned token embedding table")
@dataclass(kw_only=True)
class StandardLM(LMVariant):
    """Baseline: the plain causal LM (learned embeddings, next-token loss)."""


@torch.no_grad()
def per_position_nll(variant: LMVariant, model: nn.Module, windows: torch.Tensor, *, seeds: torch.Tensor | None = None, batch_size: int = 8) -> torch.Tensor:
    """NLL (nats) of every target of ``windows`` (N, T + 1) under ``variant``: (N, T)."""
    check_tensor("windows", windows, ndim=2, floating=False)
    out = []
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i : i + batch_size]
        s = None if seeds is None else seeds[i : i + batch_size]
        logits = variant.logits(model, w[:, :-1], seeds=s).float()
        out.append(F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="none").view(w.shape[0], -1))
    return torch.cat(out)


def train_variant(variant: LMVariant, model: nn.Module, batch_fn, config, *, ckpt_dir=None, params=None):
    """Train ``model`` (from :meth:`LMVariant.prepare`) with ``variant.loss`` on the project's
    loop (:func:`tokenworks.train.train`); returns its ``TrainResult``."""
    from tokenworks.train import train

    steps = config.steps

    def batches(step, g):  # the step travels with the batch, so a resumed run keeps the schedule
        return {"batch": batch_fn(step, g), "step": step}

    def loss_fn(m, b):
        return variant.loss(m, b["batch"], step_frac=min(1.0, b["step"] / max(1, steps - 1)))

    return train(model, loss_fn, batches, config, ckpt_dir=ckpt_dir, params=params)
