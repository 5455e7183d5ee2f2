"""P62 R2R: Roads to Rome, routing only the divergent tokens of a small LM to a large one.

Mechanism. A small LM (SLM) generates; at every step a router looks at the SLM's state and
decides whether this token should come from the large LM (LLM) instead. Only tokens that
would make the generation *diverge* need the LLM; tokens where the SLM's choice differs only
neutrally (a synonym, a different but equivalent continuation) do not. Here:

- **Labels** (:func:`divergence_labels`): along a reference continuation (the LLM's own greedy
  output), a position is *identical* when the SLM's argmax equals the LLM's; otherwise both
  tokens are continued for ``rollout`` tokens by the LLM (greedy) and the position is
  *divergent* when the two continuations share less than ``overlap`` of their tokens (as a
  set), *neutral* otherwise.
- **Router** (:class:`Router`): an MLP on the SLM's last hidden state, the embedding of the
  SLM's predicted token and its top-``topk`` probabilities (sorted), trained with a
  class-weighted binary cross-entropy on the divergent labels (:func:`train_router`).
- **Decoding** (:class:`R2R`): both models keep one ``DynamicCache`` (``tokenworks.decode.base``
  streams); the SLM decodes every token; when a row is routed the LLM first consumes the
  tokens it has not seen (one chunked forward, no recomputation), then its argmax replaces the
  SLM's token. ``route="router"`` routes when the router's probability exceeds ``threshold``;
  the baselines ``route="confidence"`` (SLM max-probability below ``threshold``) and
  ``route="random"`` (probability ``threshold``); ``"all"`` / ``"none"`` are the two ends.

Deviations from the paper (and why): the paper labels with a 32B verifier LLM judging whether
continuations differ in meaning; here the "verifier" is token-set overlap of the LLM's two
continuations (no judge model exists offline). The paper's models are 1.5B/32B Qwen; here the
reference LM (1.4M) and a larger Llama. The paper's router is a larger network over the same
three inputs; this one has one hidden layer. Greedy decoding only (as the paper's evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from tokenworks.checks import check_choice, check_float, check_int
from tokenworks.decode.base import DecodeStats, _Stream, check_pair
from tokenworks.registry import register

__all__ = ["R2R", "Router", "divergence_labels", "router_features", "routed_nll", "train_router"]


class Router(nn.Module):
    """MLP: [hidden (d), predicted-token embedding (d), top-k probabilities (k)] -> divergence logit."""

    def __init__(self, d_model: int, topk: int = 8, width: int = 64) -> None:
        super().__init__()
        check_int("d_model", d_model, min=1)
        check_int("topk", topk, min=1)
        self.topk = topk
        self.net = nn.Sequential(nn.Linear(2 * d_model + topk, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
        self.register_buffer("mean", torch.zeros(2 * d_model + topk))
        self.register_buffer("std", torch.ones(2 * d_model + topk))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (..., F) -> (...,)
        return self.net((feats - self.mean) / self.std)[..., 0]


def _features(small, hidden: torch.Tensor, logits: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., d) hidden, (..., V) logits -> features (..., 2d + topk), SLM argmax (...)."""
    probs = torch.softmax(logits.float(), -1)
    top = probs.topk(topk, -1).values
    pred = logits.argmax(-1)
    emb = small.get_input_embeddings()(pred).float()
    return torch.cat([hidden.float(), emb, top], -1), pred


@torch.no_grad()
def router_features(small, ids: torch.Tensor, topk: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forced over ``ids`` (B, T): features (B, T, F), SLM argmax (B, T), SLM logits."""
    out = small(input_ids=ids, output_hidden_states=True)
    feats, pred = _features(small, out.hidden_states[-1], out.logits, topk)
    return feats, pred, out.logits.float()


@torch.no_grad()
def divergence_labels(small, large, ids: torch.Tensor, *, start: int, rollout: int = 6, overlap: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for positions ``start - 1 .. T - 2`` of ``ids`` (B, T) (predicting tokens
    ``start .. T-1``): (differ (B, n) bool: SLM argmax != LLM argmax, divergent (B, n) bool)."""
    check_int("rollout", rollout, min=1)
    check_float("overlap", overlap, min=0.0, max=1.0)
    ps = small(input_ids=ids).logits.argmax(-1)[:, start - 1 : -1]
    pl = large(input_ids=ids).logits.argmax(-1)[:, start - 1 : -1]
    differ = ps != pl
    divergent = torch.zeros_like(differ)
    where = differ.nonzero().tolist()
    if where:
        prefixes = []
        for b, j in where:
            t = start + j  # the token at position t is being predicted
            prefixes.append(ids[b, :t].tolist() + [int(pl[b, j])])
            prefixes.append(ids[b, :t].tolist() + [int(ps[b, j])])
        conts = _greedy_batch(large, prefixes, rollout)
        for i, (b, j) in enumerate(where):
            a, c = set(conts[2 * i]), set(conts[2 * i + 1])
            divergent[b, j] = len(a & c) < overlap * max(1, len(a))
    return differ, divergent


def _greedy_batch(model, prefixes: list[list[int]], n: int, chunk: int = 64) -> list[list[int]]:
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    out = []
    for i in range(0, len(prefixes), chunk):
        rows = prefixes[i : i + chunk]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(rows):
            ids[r, T - len(p) :] = torch.tensor(p)
            mask[r, T - len(p) :] = 1
        g = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad)
        out.extend(g[:, T:].tolist())
    return out


def train_router(feats: torch.Tensor, labels: torch.Tensor, *, d_model: int, topk: int = 8, steps: int = 400, lr: float = 3e-3, seed: int = 0) -> Router:
    """Fit a :class:`Router` on (N, F) features and (N,) bool labels (positives up-weighted)."""
    check_int("steps", steps, min=1)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    router = Router(d_model, topk)
    router.mean.copy_(feats.mean(0))
    router.std.copy_(feats.std(0).clamp(min=1e-4))
    y = labels.float()
    pos = float(y.mean().clamp(min=1e-3, max=1 - 1e-3))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - pos) / pos))
    opt = torch.optim.AdamW(router.parameters(), lr=lr, weight_decay=1e-3)
    with torch.enable_grad():  # callers may be under no_grad
        for _ in range(steps):
            idx = torch.randint(0, feats.shape[0], (min(512, feats.shape[0]),), generator=g)
            loss = loss_fn(router(feats[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return router.eval().requires_grad_(False)


@torch.no_grad()
def routed_nll(small_logits: torch.Tensor, large_logits: torch.Tensor, targets: torch.Tensor, route: torch.Tensor) -> tuple[float, float]:
    """Teacher-forced mixture: the LLM's distribution where ``route``, else the SLM's.
    Returns (mean NLL per token, share of LLM tokens)."""
    logits = torch.where(route[..., None], large_logits, small_logits)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, -2), targets.flatten())
    return float(nll), float(route.float().mean())


@register("r2r", paper="P62")
@dataclass(kw_only=True)
class R2R:
    """Routed decoding: the small model generates, routed tokens come from the large one."""

    kind: ClassVar[str] = "routed_decoder"

    route: str = "router"
    threshold: float = 0.5
    router: Any = field(default=None, repr=False)
    topk: int = 8  # SLM probabilities in the features (the router's own topk when given)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("route", self.route, ("router", "confidence", "random", "all", "none"))
        check_float("threshold", self.threshold, min=0.0, max=1.0)
        if self.route == "router" and self.router is None:
            raise ValueError("router must be a trained tokenworks.decode.r2r.Router when route='router'")
        if self.router is not None:
            self.topk = self.router.topk
        check_int("topk", self.topk, min=1)

    def decide(self, feats: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """(B, F) features -> (B,) bool: route to the large model."""
        B = feats.shape[0]
        if self.route == "all":
            return torch.ones(B, dtype=torch.bool)
        if self.route == "none":
            return torch.zeros(B, dtype=torch.bool)
        if self.route == "random":
            return torch.rand(B, generator=g) < self.threshold
        if self.route == "confidence":
            return feats[:, -self.topk] < self.threshold  # the SLM's max probability
        return torch.sigmoid(self.router(feats)) > self.threshold

    @torch.no_grad()
    def generate(self, small, large, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, max_new_tokens: int = 32,
                 eos_token_id: int | list[int] | None = None) -> tuple[list[list[int]], dict[str, float]]:  # fmt: skip
        """Greedy routed decoding of ``input_ids`` (B, T). Returns (tokens per row, stats:
        ``large_share`` of generated tokens from the LLM, forwards of both models)."""
        check_pair(large, small)
        check_int("max_new_tokens", max_new_tokens, min=1)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        order = torch.sort(mask.long(), dim=1, stable=True).indices
        ids, mask = input_ids.gather(1, order), mask.gather(1, order)
        eos = eos_token_id if eos_token_id is not None else large.generation_config.eos_token_id
        eos_set = set([eos] if isinstance(eos, int) else (eos or []))
        s = _Stream(small, ids, mask, keep_hidden=True)
        lg = _Stream(large, ids, mask)
        g = torch.Generator().manual_seed(self.seed)
        topk = self.topk
        B = ids.shape[0]
        out: list[list[int]] = [[] for _ in range(B)]
        active = [True] * B
        n_large = 0
        while any(active):
            logits = s.feed()[:, -1]
            feats, pred = _features(small, s.hidden, logits, topk)
            routed = self.decide(feats, g) & torch.tensor(active)
            tok = pred.clone()
            if bool(routed.any()):
                tok = torch.where(routed, lg.feed()[:, -1].argmax(-1), pred)
            n_large += int(routed.sum())
            for b in range(B):
                if not active[b]:
                    continue
                t = int(tok[b])
                out[b].append(t)
                if t in eos_set or len(out[b]) >= max_new_tokens:
                    active[b] = False
                s.pending[b] = [t] if active[b] else []
                lg.pending[b] = lg.pending[b] + [t] if active[b] else []
        total = sum(len(o) for o in out)
        return out, {"large_share": n_large / total, "large_forwards": lg.forwards, "small_forwards": s.forwards, "new_tokens": total}
