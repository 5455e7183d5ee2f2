"""P21 RobusTok: neighbour-code perturbation of VQ tokens during tokenizer training.

Mechanism: an autoregressive generator's sampling errors land on plausible but wrong codes,
mostly codes near the right one. RobusTok trains the tokenizer's decoder on such errors:
during training a share ``rate`` of the tokens is swapped for one of the ``neighbours``
codes nearest (in the codebook) to the token's own code, so the decoder learns to produce
good images from slightly wrong tokens. The rate is annealed from ``rate`` to ``final_rate``
over ``anneal_steps`` training forwards (cosine).

The codebook, assignment, EMA updates and commitment loss come from ``vector-quantize-pytorch``
(``VectorQuantize``); the perturbation is written here because the library has none.
``perturb(indices, rate)`` is public so that the same perturbation can be applied at
evaluation (the perturbed-decode metric).

Deviations: the paper perturbs with a rate drawn per batch around an annealed schedule and
post-trains the decoder on generated tokens; here the rate follows the schedule exactly and
there is no post-training stage. Neighbours are found by Euclidean distance between code
vectors (cosine for a cosine codebook).
"""

from __future__ import annotations

from dataclasses import dataclass

import math
import torch

from tokenworks.checks import check_float, check_int
from tokenworks.quantize.vq import VQ
from tokenworks.registry import register

__all__ = ["RobustVQ"]


@register("robustok", paper="P21")
@dataclass(kw_only=True, eq=False, repr=False)
class RobustVQ(VQ):
    """P21 VQ whose training forward swaps a share of tokens for nearby codes."""

    rate: float = 0.5
    final_rate: float = 0.1
    neighbours: int = 8
    anneal_steps: int = 2000

    def validate(self) -> None:
        super().validate()
        check_float("rate", self.rate, min=0.0, max=1.0)
        check_float("final_rate", self.final_rate, min=0.0, max=self.rate)
        check_int("neighbours", self.neighbours, min=1, max=self.codebook_size - 1)
        check_int("anneal_steps", self.anneal_steps, min=1)

    def build(self) -> None:
        super().build()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_rate(self) -> float:
        t = min(1.0, int(self.step) / self.anneal_steps)
        return self.final_rate + (self.rate - self.final_rate) * 0.5 * (1 + math.cos(math.pi * t))

    def neighbour_table(self) -> torch.Tensor:
        """(K, neighbours) indices of each code's nearest other codes, nearest first."""
        cb = self.codebook.detach().float()
        d = torch.cdist(cb, cb)
        d.fill_diagonal_(float("inf"))
        return d.topk(self.neighbours, dim=-1, largest=False).indices

    def perturb(self, indices: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Swap round(rate * n) tokens of each sequence (B, N) for one of their code's
        ``neighbours`` nearest codes, chosen uniformly. Returns new indices."""
        check_float("rate", rate, min=0.0, max=1.0)
        if indices.ndim != 2:
            raise ValueError(f"indices must have shape (B, N), got {tuple(indices.shape)}")
        b, n = indices.shape
        k = round(rate * n)
        if k == 0:
            return indices.clone()
        dev = indices.device
        order = torch.rand(b, n, generator=generator, device="cpu").argsort(dim=1).to(dev)
        chosen = order[:, :k]  # (B, k) distinct positions per row
        pick = torch.randint(0, self.neighbours, (b, k), generator=generator, device="cpu").to(dev)
        table = self.neighbour_table().to(dev)
        new = indices.clone()
        new.scatter_(1, chosen, table[indices.gather(1, chosen), pick])
        return new

    def quantize(self, x: torch.Tensor):
        quantized, indices, loss = super().quantize(x)
        if self.training:
            rate = self.current_rate()
            self.step += 1
            perturbed = self.perturb(indices, rate)
            codes = self.decode_indices(perturbed)
            quantized = x + (codes - x).detach()  # straight-through to the perturbed codes
            indices = perturbed
        return quantized, indices, loss
