"""Baseline: random initialization of every new embedding from the source embeddings' per-dimension
mean and standard deviation (the "random" baseline of ZeTT, P29, and of vocabulary-transfer
work before it, e.g. WECHSEL, Minixhofer et al. 2022).

Every target token gets a fresh draw, including tokens the source vocabulary already has
(``copy_overlap=True`` copies those instead: the "lexical" baseline). Special tokens are
copied by the base class. Draws come from a generator seeded with ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_int
from tokenworks.registry import register
from tokenworks.text.transfer import EmbeddingTransfer

__all__ = ["RandomInit"]


@register("random_init", family="TXT", cite="random init from the source embedding statistics (baseline in Minixhofer et al. 2022/2024)")
@dataclass(kw_only=True)
class RandomInit(EmbeddingTransfer):
    """Baseline: N(mean, std) per dimension of the source embeddings, seeded."""

    seed: int = 0
    copy_overlap: bool = False

    def validate(self) -> None:
        check_int("seed", self.seed, min=0)
        if not isinstance(self.copy_overlap, bool):
            raise TypeError(f"copy_overlap must be a bool, got {self.copy_overlap!r}")

    def predict(self, parts, source_in, source_out):
        g = torch.Generator().manual_seed(self.seed)

        def draw(e: torch.Tensor) -> torch.Tensor:
            e32 = e.float()
            z = torch.randn((len(parts), e.shape[1]), generator=g).to(e.device)
            out = e32.mean(0) + z * e32.std(0)
            if self.copy_overlap:
                single = [k for k, p in enumerate(parts) if len(p) == 1]
                if single:
                    out[single] = e32[[parts[k][0] for k in single]]
            return out.to(e.dtype)

        return draw(source_in), (None if source_out is None else draw(source_out))
