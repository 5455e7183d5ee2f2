"""P38 CoLaR: compressed latent reasoning (Tan et al. 2025, "Think silently, think fast").

Mechanism: the reasoning chain is compressed by a factor ``c``: every ``c`` consecutive CoT
tokens are merged into one embedding, the mean of their token embeddings (:func:`compress`).
A latent head on the last hidden state predicts the next compressed embedding, which is fed
back as the next input; the LM head ends the chain by predicting ``<eot>``. Training (SFT) is
teacher-forced in one forward: the compressed embeddings are the inputs at the latent slots,
the loss is the LM loss (at each latent position the first token of the next group, then
``<eot>``, the answer and ``<eos>``) plus the head's regression loss. ``c`` is drawn at
random per example during SFT and told to the model by a ``<cK>`` token before ``<bot>``, so
one model serves every ``c`` at inference. With ``c = 1`` the target is the next token's
embedding (tested).

Deviations from the paper: the latent head is deterministic (an MLP trained with a relative
MSE) instead of predicting a Gaussian trained by likelihood, so inference is greedy, not
sampled; the merge is the plain mean of the ``c`` embeddings (a trailing group shorter than
``c`` is the mean of what it has); the regression targets are detached from the embedding
table; the RL stage (GRPO) is not implemented; the model starts from the CoT model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_int
from tokenworks.reason.base import Reasoner
from tokenworks.reason.tasks import BOT, EOS, EOT, LATENT, MAX_C, SPECIALS, Example
from tokenworks.registry import register

__all__ = ["CoLaR", "LatentHead", "colar_loss", "compress", "encode_colar"]


class LatentHead(nn.Module):
    """Hidden state (.., D) -> predicted next compressed embedding (.., D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        nn.init.zeros_(self.net[-1].weight)  # starts at 0: relative MSE 1, not a spike that shakes the CoT model
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def compress(embeds: torch.Tensor, c: int) -> torch.Tensor:
    """(L, D) token embeddings -> (ceil(L / c), D): the mean of each run of ``c`` (vectorized)."""
    check_int("c", c, min=1)
    L, D = embeds.shape
    n = -(-L // c)
    padded = torch.zeros(n * c, D, dtype=embeds.dtype, device=embeds.device)
    padded[:L] = embeds
    counts = torch.full((n,), c, dtype=embeds.dtype, device=embeds.device)
    counts[-1] = L - (n - 1) * c
    return padded.view(n, c, D).sum(1) / counts[:, None]


def encode_colar(ex: Example, tok, c: int) -> tuple[list[int], list[int], list[list[int]]]:
    """``(ids, labels, groups)``: ``question <cK> <bot> <latent>*G <eot> answer <eos>`` with the
    label of each latent slot = first token of its group, and ``groups[j]`` the token ids merged
    into slot ``j``."""
    conv = tok.convert_tokens_to_ids
    steps = conv([w for s in ex.steps for w in s.split()])
    groups = [steps[i : i + c] for i in range(0, len(steps), c)]
    head = conv(ex.question.split()) + [conv(f"<c{c}>"), conv(BOT)]
    ids = head + [conv(LATENT)] * len(groups) + [conv(EOT)] + conv([ex.answer]) + [conv(EOS)]
    labels = [-100] * len(head) + [g[0] for g in groups] + ids[len(head) + len(groups) :]
    return ids, labels, groups


def colar_loss(model, head: LatentHead, batch: dict, head_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """LM loss + relative MSE of the head's prediction of each compressed embedding. ``batch``:
    ``ids``/``mask``/``labels`` (B, T) right-padded and ``groups`` (B, T, C) token ids (-1 = none)
    of the slot at each position."""
    emb = model.get_input_embeddings()
    ids, mask, labels, groups = batch["ids"], batch["mask"], batch["labels"], batch["groups"]
    x = emb(ids)  # (B, T, D)
    valid = groups >= 0  # (B, T, C)
    slot = valid.any(-1)  # (B, T)
    z = (emb(groups.clamp(min=0)) * valid[..., None]).sum(2) / valid.sum(2, keepdim=True).clamp(min=1)  # (B, T, D)
    z = z.detach()
    x = torch.where(slot[..., None], z, x)
    out = model(inputs_embeds=x, attention_mask=mask, output_hidden_states=True)
    lm = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
    h = out.hidden_states[-1][:, :-1]  # position t predicts slot t + 1
    tgt, sel = z[:, 1:], slot[:, 1:]
    pred = head(h[sel])
    mse = ((pred - tgt[sel]) ** 2).mean() / (tgt[sel] ** 2).mean().clamp(min=1e-12)
    return lm + head_weight * mse, {"lm": lm.item(), "mse": mse.item()}


@register("colar", paper="P38")
@dataclass(kw_only=True)
class CoLaR(Reasoner):
    """Compressed latent chain: the latent head's prediction is the next input; the chain ends
    when the LM head predicts ``<eot>`` (or after ``latent_steps``)."""

    latent_steps: int = 64
    c: int = 2
    head: nn.Module | None = field(default=None, repr=False)
    end_token_id: int | None = SPECIALS.index(EOT)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("c", self.c, min=1, max=MAX_C)
        if self.head is not None and not callable(self.head):
            raise ValueError(f"head: a module mapping hidden states to embeddings is needed, got {type(self.head).__name__}")

    def thought(self, model, hidden: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise ValueError("head: CoLaR needs its trained latent head (CoLaR(head=...), see tokenworks.reason.models)")
        return self.head(hidden)

    def stop_thinking(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor | None:
        return logits.argmax(-1) == self.end_token_id if self.end_token_id is not None else None
