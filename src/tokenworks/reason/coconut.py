"""P36 Coconut: Chain of Continuous Thought (Hao et al. 2024).

Mechanism: after ``<bot>`` the last layer's hidden state at the last position is fed back as
the next input embedding (a continuous thought) instead of being decoded to a token; after
``latent_steps`` thoughts ``<eot>`` is given and the answer is decoded. Training is a staged
curriculum from the CoT model: at stage ``k`` the first ``k`` reasoning steps are replaced by
``k * c`` thoughts (:func:`curriculum`), the loss is on what follows, gradients flow through
the whole chain of thoughts (one forward per thought, :func:`tokenworks.reason.sft.forward_with_latents`),
and the optimizer is reset at each stage (``reset_optimizer: True`` of the official configs).
After the last stage ``max_stage`` every step is removed and ``max_stage * c`` thoughts stay
(the official ``pad_latent_to_max``); at inference a stage-``k`` model thinks ``k * c`` times.

Deviations from the paper / official code (facebookresearch/coconut): stages are counted in
optimizer steps, not epochs; the base is a small Llama trained here on the project's tasks
(``tokenworks.reason.tasks``), not GPT-2; no ``uniform_prob`` mixing of earlier stages; the
generation reuses the KV cache across thoughts (the official ``generate`` recomputes the
prefix), which gives the same logits (tested against a recomputation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.reason.base import Reasoner
from tokenworks.reason.tasks import EOT, SPECIALS
from tokenworks.registry import register

__all__ = ["Coconut", "curriculum", "probe_thought"]


def curriculum(stage: int, c: int, max_stage: int) -> tuple[int, int]:
    """``(steps removed, thoughts)`` at ``stage``: (k, k*c) up to ``max_stage``, then every
    step removed with ``max_stage * c`` thoughts."""
    check_int("stage", stage, min=0)
    check_int("c", c, min=1)
    check_int("max_stage", max_stage, min=1)
    if stage > max_stage:
        return 10_000, max_stage * c
    return stage, stage * c


@register("coconut", paper="P36")
@dataclass(kw_only=True)
class Coconut(Reasoner):
    """Continuous thoughts: the next input is the last hidden state itself."""

    latent_steps: int = 4
    c: int = 1
    end_token_id: int | None = SPECIALS.index(EOT)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("c", self.c, min=1, max=64)

    def thought(self, model, hidden: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return hidden  # (B, D)


@torch.no_grad()
def probe_thought(model, hidden: torch.Tensor, candidates: list[int]) -> torch.Tensor:
    """The BFS-like probe of the paper (its Fig. 5-6): the distribution the LM head gives to
    ``candidates`` (token ids of nodes) when a continuous thought ``hidden`` (B, D) is decoded
    as if it were a hidden state; (B, len(candidates)), rows sum to 1."""
    logits = model.get_output_embeddings()(hidden)  # (B, V)
    return torch.softmax(logits[:, candidates].float(), dim=-1)
