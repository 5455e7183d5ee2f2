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
largest; tested against the empirical output distribution on toy distributions.

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

__all__ = ["Lantern", "latent_neighbours", "neighbour_mass", "tv_bound"]


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
            self._bounds.append(tv_bound(pk[reached], qk[reached], table, self.delta))
        return accepted, nxt

    def generate(self, target, input_ids, attention_mask=None, **kw):
        """The base's loop; ``out.stats.extra`` adds ``tv_bound`` / ``tv_bound_max`` (sampling with neighbours)."""
        self._bounds = []
        out = super().generate(target, input_ids, attention_mask, **kw)
        if self._bounds:
            b = torch.cat(self._bounds)
            out.stats.extra.update(tv_bound=float(b.mean()), tv_bound_max=float(b.max()), delta=self.delta)
        return out
