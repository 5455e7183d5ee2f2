"""Baseline: pause tokens (Goyal et al. 2024, "Think before you speak").

Baseline (not one of the index's papers): ``latent_steps`` copies of a learnt ``<pause>``
token are appended after ``<bot>``; the model gets extra forwards but no new information, and
is trained with the pauses in place (``question <bot> <pause>*m <eot> answer``, loss on the
answer only). Deviation: pauses are used only in fine-tuning on the task, not in pre-training
(the paper finds pre-training with pauses matters; there is no pre-training here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.reason.base import Reasoner
from tokenworks.reason.tasks import EOT, PAUSE, SPECIALS
from tokenworks.registry import register

__all__ = ["PauseTokens"]


@register("pause", family="LAT", cite="Goyal et al. 2024, pause tokens")
@dataclass(kw_only=True)
class PauseTokens(Reasoner):
    """Baseline: feeds the embedding of ``pause_token_id`` as every latent step."""

    latent_steps: int = 6
    pause_token_id: int = SPECIALS.index(PAUSE)
    end_token_id: int | None = SPECIALS.index(EOT)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("pause_token_id", self.pause_token_id, min=0)

    def thought(self, model, hidden: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        emb = model.get_input_embeddings()
        return emb(torch.full(hidden.shape[:1], self.pause_token_id, device=hidden.device))  # (B, D)
