"""P69 CAFT: Improving large language models with concept-aware fine-tuning (Chen et al. 2025).

Fine-tuning adds ``n - 1`` auxiliary heads; head ``i`` (1..n-1) predicts token ``t + 1 + i``
from the state at ``t``, so the fine-tuned model is also trained to see multi-token concepts
whole. The loss is the next-token cross-entropy plus
``heads_coefficient * decay**i * schedule(step) * CE_i`` per head. Two stages, as in the
official code (michaelchen-lab/caft-llm, read, not copied): (1) the heads are trained on the
frozen LM (``head_pretrain_steps``, coefficient 1), (2) the LM is fine-tuned with the heads
frozen, their loss flowing back into the LM through the shared unembedding and the trunk. At
inference the heads are dropped: the fine-tuned LM is a plain causal LM.

Defaults follow the official training script: 4 auxiliary heads (``n = 5``), one Llama decoder
layer each, the LM's own final norm and unembedding shared, ``heads_coefficient = 0.01``,
``decay = 0.8``, the ``rsine`` schedule (``sin((1 - progress) * pi / 2)``: aux weight falls
from 1 to 0 over fine-tuning).

Choices and deviations:
- a head reads the *input* of the LM's last decoder layer and starts as a copy of that layer
  (so at initialisation every head predicts what the LM predicts for ``t + 1``); the official
  code reads the second-to-last state in stage 1 and the final normed state in stage 2;
- stage 1 runs on the fine-tuning data (the official heads are pre-trained on a general
  instruction mix); full fine-tuning (the official default is LoRA);
- with ``n = 1`` there are no heads and the loss is the next-token cross-entropy (tested).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from tokenworks.checks import check_choice, check_float, check_int
from tokenworks.registry import register
from tokenworks.text.lm_variant import LMVariant, next_token_loss

__all__ = ["CAFT", "CAFTModel"]

SCHEDULES = ("constant", "linear", "sine", "rsine")


class CAFTModel(nn.Module):
    """A causal LM (``lm``) plus auxiliary heads (``heads``, one decoder layer each)."""

    def __init__(self, lm: nn.Module, n_heads: int) -> None:
        super().__init__()
        self.lm = lm
        self.heads = nn.ModuleList(copy.deepcopy(lm.model.layers[-1]) for _ in range(n_heads))

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def head_logits(self, h: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, T, V) of every head from ``h`` (B, T, D), the last layer's input."""
        B, T, _ = h.shape
        pos = torch.arange(T, device=h.device)[None].expand(B, -1)
        rope = self.lm.model.rotary_emb(h, pos)
        causal = torch.full((T, T), float("-inf"), device=h.device, dtype=h.dtype).triu(1)[None, None]  # (1, 1, T, T)
        out = []
        for head in self.heads:
            z = head(h, attention_mask=causal, position_ids=pos, position_embeddings=rope)
            z = z[0] if isinstance(z, tuple) else z
            out.append(self.lm.lm_head(self.lm.model.norm(z)))
        return out


@register("caft", paper="P69")
@dataclass(kw_only=True)
class CAFT(LMVariant):
    """Concept-aware fine-tuning with auxiliary multi-token heads (see the module docstring)."""

    n: int = 5
    heads_coefficient: float = 0.01
    decay: float = 0.8
    schedule: str = "rsine"
    head_pretrain_steps: int = 100
    head_pretrain_lr: float = 1e-3

    def __post_init__(self) -> None:
        check_int("n", self.n, min=1, max=64)
        check_float("heads_coefficient", self.heads_coefficient, min=0.0)
        check_float("decay", self.decay, min=0.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("head_pretrain_steps", self.head_pretrain_steps, min=0)
        check_float("head_pretrain_lr", self.head_pretrain_lr, min=0.0, min_open=True)

    def prepare(self, lm: nn.Module) -> nn.Module:
        return CAFTModel(lm, self.n - 1) if self.n > 1 else lm

    def hidden_and_logits(self, model, input_ids, *, seeds=None):
        out = self.base_lm(model)(input_ids=input_ids, output_hidden_states=True)
        return out.hidden_states[-2], out.logits  # the last decoder layer's input

    def schedule_at(self, step_frac: float) -> float:
        return {"constant": 1.0, "linear": step_frac, "sine": math.sin(step_frac * math.pi / 2),
                "rsine": math.sin((1 - step_frac) * math.pi / 2)}[self.schedule]  # fmt: skip

    def head_losses(self, model, batch: torch.Tensor, hidden: torch.Tensor) -> list[torch.Tensor]:
        """CE of head ``i`` (predicting ``t + 1 + i``) for i = 1..n-1 on ``batch`` (B, T + 1)."""
        if not isinstance(model, CAFTModel):
            return []
        T = batch.shape[1] - 1
        out = []
        for i, logits in enumerate(model.head_logits(hidden), start=1):
            if T - i < 1:
                break
            out.append(next_token_loss(logits[:, : T - i], batch[:, 1 + i :]))
        return out

    def extra_loss(self, model, batch, hidden, mask, step_frac):
        losses = self.head_losses(model, batch, hidden)
        if not losses:
            return hidden.new_zeros(()), {}
        w = self.heads_coefficient * self.schedule_at(step_frac)
        total = sum(self.decay**i * l for i, l in enumerate(losses, start=1))
        return w * total, {f"ce_head{i}": float(l.detach()) for i, l in enumerate(losses, start=1)}

    def trainable(self, model) -> list[nn.Parameter]:
        """Stage 2 trains the LM only (the heads stay as stage 1 left them)."""
        return [p for p in self.base_lm(model).parameters() if p.requires_grad]

    def pretrain_parts(self, model, batch_fn, *, seed: int, device: str = "cpu", ckpt_dir=None) -> dict:
        """Stage 1: train the heads on the frozen LM (aux losses only, weights ``decay**i``)."""
        from tokenworks.train import TrainConfig, train

        if not isinstance(model, CAFTModel) or self.head_pretrain_steps == 0:
            return {}
        heads = list(model.heads.parameters())
        lm_params = [p for p in model.lm.parameters() if p.requires_grad]
        for p in lm_params:
            p.requires_grad_(False)

        def loss_fn(m, batch):
            with torch.no_grad():
                hidden, _ = self.hidden_and_logits(m, batch[:, :-1])
            losses = self.head_losses(m, batch, hidden)
            return sum(self.decay**i * l for i, l in enumerate(losses, start=1)), {}

        tc = TrainConfig(steps=self.head_pretrain_steps, lr=self.head_pretrain_lr, warmup=min(10, self.head_pretrain_steps),
                         seed=seed + 10_000, device=device, desc="CAFT heads", checkpoint_every=50)  # fmt: skip
        try:
            r = train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir, params=heads)
        finally:
            for p in lm_params:
                p.requires_grad_(True)
        for p in heads:  # stage 2 keeps them as they are; gradients still flow through them
            p.requires_grad_(False)
        return {"head_loss": r.final_loss, "head_seconds": round(r.seconds, 1)}
