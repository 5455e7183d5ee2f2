"""P17 LANTERN: relaxed speculative decoding for visual autoregressive models.

Mechanism. Visual AR models spread their probability over many near-synonymous codes
("token selection ambiguity"), so an exact verifier rejects drafts that the target would have
been happy with in all but name. LANTERN relaxes the acceptance test over latent neighbours:

- a table of each code's ``kn`` nearest codes in the tokenizer's codebook space, computed once
  (:func:`latent_neighbours`, Euclidean distance between code vectors, nearest first);
- at a draft token ``x`` the target probability ``p(x)`` in the test ``u < p(x) / q(x)`` is
  replaced by ``p(x) + p(N_delta(x))``: the target mass of the longest nearest-first prefix of
  ``x``'s neighbours whose mass stays <= ``delta``. The relaxed target that moves this mass
  onto ``x`` is within total variation ``delta`` of ``p`` (the paper's bound);
- ``delta = 0`` adds nothing: exactly speculative sampling (tested token for token);
- ``static=True`` (LANTERN++'s static drafting, chain form): the drafts are the draft model's
  argmax tokens whatever its confidence; the proposal is deterministic, so a draft is accepted
  with probability ``p(x) + p(N_delta(x))`` and the output's distance to the target is at most
  ``delta`` per token.

Reported bound (``out.stats.extra``). Couple LANTERN with exact speculative sampling through
the same uniform draws: they differ only when LANTERN accepts a draft that exact sampling
rejects, so at every verified position ``TV(output, target) <= sum_x min(q(x), p(x) + a(x))
- min(q(x), p(x))`` with ``a(x) = p(N_delta(x))`` (one-hot ``q`` for static drafts, where this is
``a(x) <= delta``). ``tv_bound`` is its mean over verified positions, ``tv_bound_max`` the
largest. ``tv`` is the exact TV of each verified position's output distribution
(:func:`output_distribution`, closed form given p and q) to the target's, averaged. Both are
tested against the empirical output distribution on toy distributions. Note that the paper's
``delta`` bounds each relaxed target ``TV(p, p~_x)``, not the output: with sampled drafts the
output's TV sums contributions over many drafts ``x`` and can exceed ``delta`` (measured).
With the exact residual the coupling bound is attained: the mass LANTERN gains sits on tokens
with ``q > p`` and the residual it takes it from on tokens with ``p > q``, so ``tv == tv_bound``
(tested: two formulas, one value, and both equal to the empirical distance).

Deviations from the paper and the official code (jadohu/LANTERN): rejections resample from
the exact residual ``norm(max(0, p - q))`` (this is what makes ``delta = 0`` exact and the
coupling bound hold); the neighbour prefix is taken in latent-distance order (the official
code also selects nearest-first); no tree drafting (LANTERN++'s static tree becomes its top-1
chain); the relaxation applies to sampling only: with ``do_sample=False`` the target's
distribution is one-hot and LANTERN is exactly greedy draft-verify. The ``kn``-nearest table is
one ``torch.cdist`` + ``topk`` (no ANN library needed at codebook sizes of ~10^3-10^4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tokenworks.checks import check_float, check_int, check_tensor
from tokenworks.decode.base import ProposeContext, SpeculativeDecoder, exact_verify
from tokenworks.registry import register

__all__ = ["Lantern", "latent_neighbours", "neighbour_mass", "output_distribution", "tv_bound"]


def latent_neighbours(codes: torch.Tensor, kn: int, vocab_size: int | None = None) -> torch.Tensor:
    """(K, D) code vectors -> (V, kn) long: each code's ``kn`` nearest other codes (Euclidean,
    nearest first). Rows for ids ``K .. vocab_size - 1`` (class or special tokens) are -1."""
    check_tensor("codes", codes, ndim=2, floating=True)
    K = codes.shape[0]
    check_int("kn", kn, min=1, max=K - 1)
    V = K if vocab_size is None else vocab_size
    check_int("vocab_size", V, min=K)
    d = torch.cdist(codes.double(), codes.double())  # (K, K)
    d.fill_diagonal_(float("inf"))
    table = torch.full((V, kn), -1, dtype=torch.long)
    table[:K] = d.topk(kn, dim=1, largest=False).indices
    return table


def neighbour_mass(p: torch.Tensor, table: torch.Tensor, tokens: torch.Tensor | None, delta: float) -> torch.Tensor:
    """Target mass LANTERN adds to each token: the longest nearest-first prefix of its
    neighbours whose total mass is <= delta. p (..., V); tokens (...) -> (...), or every
    token (..., V) when ``tokens`` is None."""
    nb = table[tokens] if tokens is not None else table  # (..., kn) or (V, kn)
    if tokens is None:
        pm = p[..., nb.clamp(min=0)] * (nb >= 0)  # (..., V, kn)
    else:
        pm = p.gather(-1, nb.clamp(min=0)) * (nb >= 0)  # (..., kn)
    return (pm * (pm.cumsum(-1) <= delta)).sum(-1)


def tv_bound(p: torch.Tensor, q: torch.Tensor, table: torch.Tensor, delta: float) -> torch.Tensor:
    """(..., V) target and draft distributions -> (...): the probability that LANTERN accepts
    a draft that exact speculative sampling rejects (an upper bound on the output's TV)."""
    a = neighbour_mass(p, table, None, delta)
    return (torch.minimum(q, p + a) - torch.minimum(q, p)).sum(-1)


def output_distribution(p: torch.Tensor, q: torch.Tensor, table: torch.Tensor, delta: float) -> torch.Tensor:
    """(..., V) -> (..., V): the exact distribution of the token LANTERN emits at a verified
    position: draft x ~ q kept with probability min(1, (p(x) + a(x)) / q(x)), else a token from
    ``norm(max(0, p - q))``. ``0.5 * |output - p|_1`` is the position's true TV to the target."""
    a = neighbour_mass(p, table, None, delta)
    keep = torch.where(q > 0, ((p + a) / q.clamp(min=1e-30)).clamp(max=1.0), torch.zeros_like(q))
    resid = (p - q).clamp(min=0)
    mass = resid.sum(-1, keepdim=True)
    resid = torch.where(mass > 0, resid / mass.clamp(min=1e-30), p)
    return q * keep + (q * (1 - keep)).sum(-1, keepdim=True) * resid


@register("lantern", paper="P17")
@dataclass(kw_only=True)
class Lantern(SpeculativeDecoder):
    """Speculative sampling with LANTERN's relaxed acceptance over latent-neighbour codes."""

    delta: float = 0.1
    neighbours: Any = field(default=None, repr=False)  # (V, kn) long from latent_neighbours; None: no neighbours
    static: bool = False  # LANTERN++ static drafting: the draft's argmax chain

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("delta", self.delta, min=0.0, max=1.0)
        if not isinstance(self.static, bool):
            raise TypeError(f"static must be True or False, got {self.static!r}")
        if self.neighbours is not None:
            check_tensor("neighbours", self.neighbours, ndim=2, floating=False)
        self._bounds: list[torch.Tensor] = []

    def propose(self, ctx: ProposeContext):
        drafts, q = self.draft_tokens(ctx, greedy_draft=self.static)
        return drafts, ctx.active.long() * self.k, None if self.static else q

    def verify(self, p, drafts, lengths, q, generator):
        table = self.neighbours
        if table is None:
            return exact_verify(p, drafts, lengths, q, generator)
        if table.shape[0] != p.shape[-1]:
            raise ValueError(f"neighbours has {table.shape[0]} rows but the models' vocabulary has {p.shape[-1]} tokens")
        table = table.to(p.device)
        k = drafts.shape[1]
        pk = p[:, :k]  # (B, k, V)
        px = pk.gather(2, drafts[..., None])[..., 0] + neighbour_mass(pk, table, drafts, self.delta)
        accepted, nxt = exact_verify(p, drafts, lengths, q, generator, px=px.clamp(max=1.0))
        qk = q if q is not None else torch.nn.functional.one_hot(drafts, p.shape[-1]).to(p.dtype)
        reached = torch.arange(k, device=p.device)[None] <= accepted[:, None]
        reached &= torch.arange(k, device=p.device)[None] < lengths[:, None]
        if bool(reached.any()):
            pr, qr = pk[reached], qk[reached]
            tv = 0.5 * (output_distribution(pr, qr, table, self.delta) - pr).abs().sum(-1)
            self._bounds.append(torch.stack([tv_bound(pr, qr, table, self.delta), tv], -1))
        return accepted, nxt

    def generate(self, target, input_ids, attention_mask=None, **kw):
        """The base's loop; ``out.stats.extra`` adds ``tv`` (mean exact per-position TV to the
        target), ``tv_bound`` / ``tv_bound_max`` (sampling with neighbours)."""
        self._bounds = []
        out = super().generate(target, input_ids, attention_mask, **kw)
        if self._bounds:
            b = torch.cat(self._bounds)  # (n, 2): bound, exact TV
            out.stats.extra.update(tv_bound=float(b[:, 0].mean()), tv_bound_max=float(b[:, 0].max()), tv=float(b[:, 1].mean()),
                                   tv_max=float(b[:, 1].max()), delta=self.delta)  # fmt: skip
        return out
