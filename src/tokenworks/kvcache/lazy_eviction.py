"""P12 LazyEviction: Lagged KV Eviction with Attention Pattern Observation for Efficient Long
Reasoning (Zhang et al. 2025).

Mechanism. Tokens in long reasoning traces regain attention after long gaps ("token
importance recurrence"), so the current attention is a poor guide to eviction. Each held
token carries two numbers, updated at every step t (every query):
- ``last``: the last step at which it was important (initially its own position), and
- ``mri``: its maximum recurrence interval, the longest gap seen between two steps at which
  it was important: when important at step t, ``mri = max(mri, t - last)`` then ``last = t``.
A token is important at a step when the attention it receives (max over the query heads of
its kv head) is at least ``alpha`` times the uniform share ``1 / visible tokens``.
Eviction is lagged: it runs only every ``window`` decoding steps (the observation window),
and the tokens that arrived since the last eviction are always kept (their recurrence is not
yet observed). Among the others the base keeps the top of the recurrence score
``(mri + 1) / (t - last + 1)``: a token still inside its usual recurrence interval scores >= 1
(it is expected back), a token silent for much longer than it ever was scores near 0.

Budget (held, at every step). The protected window counts against the budget, and each
eviction goes to ``cap - (lag - 1)`` so that the tokens arriving before the next eviction
fit: after every forward the cache holds at most ``ceil(budget x seen)`` tokens. The lag is
``window``, but at most half the budget (a lag as long as the budget would leave nothing to
rank); the protected tokens are those that arrived during the lag. (Before, the window was
added on top of the budget and the cache grew by ``window`` between evictions: up to 2.6x
the budget at peak on a tiny Llama at 25%.)

A limit of the mechanism: a token's recurrence interval is learned only from re-reads while it
is held; until its first re-read a token scores like any token of its age, so with a small
budget it can be evicted before its recurrence is ever observed (see the end-to-end test
``test_a_periodically_reread_token_survives_lazy_eviction_not_h2o_or_tova``).

Deviations (the official code was not available here; the paper's text fixes the mechanism,
these details were chosen and are documented):
- the importance threshold is relative (``alpha`` x uniform share, default 1.0) instead of an
  absolute attention value, so one setting works for contexts of any length; at the paper's
  context lengths an absolute 1e-4 is about the uniform share;
- the score formula above is ours: the paper ranks by the recurrence pattern centered on the
  MRI; we rank by how far the token is into its MRI;
- with ``compress_prompt=True`` (default) the prompt is also compressed at prefill, with the
  same statistics gathered over the prompt's own queries (each prompt position is a step), so
  prompt-heavy tasks meet the same budget as the other methods; the paper targets short
  prompts and long outputs, where this changes little. Set it False for the paper's
  decode-only behaviour (the prompt is then held whole until the first eviction, ``lag``
  steps in: the budget is not kept before it).
Prompt statistics are computed in query chunks with a cumulative max, never from a full
T x T attention matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.checks import check_float, check_int
from tokenworks.kvcache.base import KVPolicy, LayerView
from tokenworks.registry import register

__all__ = ["LazyEviction", "recurrence_update"]


def recurrence_update(
    important: torch.Tensor, steps: torch.Tensor, last: torch.Tensor, mri: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply c consecutive steps of recurrence tracking at once.

    ``important`` (..., c, K) bool, ``steps`` (..., c, 1) the step index of each row (increasing),
    ``last``/``mri`` (..., K). Returns the updated ``(last, mri)``; equal to applying the rows one
    by one (a cumulative max gives, for each row, the last important step before it)."""
    neg = torch.full_like(last, -1.0)[..., None, :]
    marks = torch.where(important, steps.to(last.dtype).expand_as(important), neg)  # (..., c, K)
    running = torch.cummax(marks, dim=-2).values
    before = torch.cat([last[..., None, :], torch.maximum(running[..., :-1, :], last[..., None, :])], dim=-2)
    gaps = torch.where(important, steps.to(last.dtype) - before, torch.zeros_like(marks))
    return torch.maximum(last, running[..., -1, :]), torch.maximum(mri, gaps.amax(-2))


@register("lazy_eviction", paper="P12")
@dataclass(kw_only=True, eq=False)
class LazyEviction(KVPolicy):
    """P12: recurrence-interval tracking + MRI-centric eviction every ``window`` steps."""

    token_state: ClassVar[dict[str, float]] = {"last": -1.0, "mri": 0.0}

    window: int = 32
    alpha: float = 1.0
    compress_prompt: bool = True

    def validate(self) -> None:
        check_int("window", self.window, min=1)
        check_float("alpha", self.alpha, min=0.0, min_open=True)
        if not isinstance(self.compress_prompt, bool):
            raise TypeError(f"compress_prompt must be a bool, got {self.compress_prompt!r}")
        self.check_window("window", self.window)

    @property
    def phase(self) -> str:  # type: ignore[override]
        return "both" if self.compress_prompt else "decode"

    def compress_every(self) -> int:
        return self.window

    def _track(self, view: LayerView) -> None:
        last, mri = view.state["last"], view.state["mri"]
        last = torch.where((last < 0) & view.valid, view.pos.to(last.dtype), last)  # arrival counts as important
        visible_k = view.valid[:, :, None, :]
        for sl, p in view.iter_probs():
            p = view.per_kv_head(p, "max")  # (B, Hkv, c, K)
            qpos = view.qpos[:, sl]  # (B, c)
            visible = (visible_k & (view.pos[:, :, None, :] <= qpos[:, None, :, None])).sum(-1)  # (B, Hkv, c)
            thresh = self.alpha / visible.clamp(min=1).to(p.dtype)
            important = (p >= thresh[..., None]) & (p > 0) & view.qvalid[:, None, sl, None]
            last, mri = recurrence_update(important, qpos[:, None, :, None].expand(-1, p.shape[1], -1, -1), last, mri)
        view.state["last"], view.state["mri"] = last, mri

    def score(self, view: LayerView) -> torch.Tensor | None:
        self._track(view)
        if not view.compress:
            return None
        last, mri = view.state["last"], view.state["mri"]
        now = view.qpos.amax(1).to(last.dtype)[:, None, None]  # (B, 1, 1) current step per row
        s = (mri + 1.0) / (now - last + 1.0)
        recent = view.pos >= (view.count - view.lag)[:, None, None]  # arrived since the last eviction
        return s.masked_fill(recent & view.valid, float("inf"))
