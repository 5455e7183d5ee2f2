"""P54 Token-level correlation-guided compression: a per-image keep ratio from patch
redundancy, tokens sampled by [CLS] correlation.

1. Pattern repetitiveness: a token is a *repeat* when its cosine similarity to some earlier
   real token (row-major order) exceeds ``threshold``; the image's information density is
   ``rho = 1 - repeats / real tokens`` (the first token of a repeated pattern counts as
   information, its copies do not).
2. Adaptive ratio: ``ratio = clip(budget x rho / reference_density, 1 / N, 1)``, so an image
   denser than the reference keeps more tokens and a repetitive one fewer. The benchmark sets
   ``reference_density`` to the mean density of training scenes, which makes the mean kept
   ratio close to ``budget``; it reports the tokens actually kept.
3. Sampling by [CLS] correlation: tokens are drawn without replacement with probability
   proportional to their [CLS] attention (Gumbel-top-k with keys hashed from the token index
   and ``seed``, so a row keeps the same tokens alone or in a batch).

``adaptive=False`` is the paper's control: the same sampling with the same ratio for every
image. Deviations: the paper works on the crops of a document image in mPLUG-DocOwl1.5 and
sets each crop's ratio from its density; here the "crop" is the whole scene, and its exact
redundancy rule and sampling distribution could not be checked against the official code
(none was read for this implementation): the threshold rule and Gumbel sampling above are this
project's reading of the abstract.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.checks import check_float, check_int
from tokenworks.compress.base import Reducer, TokenView, budget_count
from tokenworks.kvcache.random import hash_uniform
from tokenworks.registry import register

__all__ = ["CorrelationGuided", "information_density"]


def information_density(tokens: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, N, D), (B, N) -> (B,) share of real tokens that repeat no earlier real token."""
    x = F.normalize(tokens.float(), dim=-1)
    sim = x @ x.transpose(1, 2)  # (B, N, N)
    N = sim.shape[1]
    earlier = torch.ones(N, N, dtype=torch.bool, device=sim.device).tril(-1)  # j < i
    ok = earlier[None] & mask[:, None, :] & mask[:, :, None]
    repeat = (sim.masked_fill(~ok, float("-inf")) > threshold).any(2) & mask
    return 1.0 - repeat.sum(1).float() / mask.sum(1).float()


@register("token_correlation", paper="P54")
@dataclass(kw_only=True, eq=False)
class CorrelationGuided(Reducer):
    """P54: per-image ratio from patch redundancy, tokens sampled by [CLS] attention."""

    needs_attention = True

    threshold: float = 0.9
    reference_density: float = 0.5
    adaptive: bool = True
    seed: int = 0

    def validate(self) -> None:
        if isinstance(self.budget, int):
            raise ValueError("budget must be a fraction for token_correlation (its per-image ratio scales it), got an int")
        check_float("threshold", self.threshold, min=-1.0, max=1.0)
        check_float("reference_density", self.reference_density, min=0.0, max=1.0, min_open=True)
        if not isinstance(self.adaptive, bool):
            raise TypeError(f"adaptive must be True or False, got {self.adaptive!r}")
        check_int("seed", self.seed, min=0)

    def ratios(self, view: TokenView) -> torch.Tensor:
        """(B,) keep ratio per image (before rounding to a count)."""
        B = view.mask.shape[0]
        if not self.adaptive:
            return torch.full((B,), float(self.budget), dtype=torch.float64, device=view.mask.device)
        rho = information_density(view.tokens, view.mask, self.threshold).double()  # float64: 0.1 x 10 stays 1 token
        return (self.budget * rho / self.reference_density).clamp(max=1.0)

    def keep_counts(self, view: TokenView) -> torch.Tensor:
        n_real = view.mask.sum(1).tolist()
        return torch.tensor(
            [budget_count(min(1.0, max(r, 1.0 / n)), n) for r, n in zip(self.ratios(view).tolist(), n_real)],
            device=view.mask.device,
        )

    def assign(self, view: TokenView) -> torch.Tensor:
        B, N = view.mask.shape
        p = view.cls_attention().float().clamp(min=1e-12)
        pos = torch.arange(N, device=p.device).expand(B, N)
        u = hash_uniform((self.seed * 1_000_003 + pos) * 65_537 + 777).float().clamp(1e-7, 1 - 1e-7)
        gumbel = -torch.log(-torch.log(u))
        return self.keep_first(view, self.order_by(torch.log(p) + gumbel, view.mask))


