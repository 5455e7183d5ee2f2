"""The token-reduction interface: one assignment hook, the base class does the mechanics.

    reducer = tw.create("tome", budget=0.25)         # a fraction of the tokens, or a count (int)
    out = reducer(tokens)                             # tokens (B, N, D) -> out.tokens (B, M, D)
    out.mask, out.sizes, out.source, out.kept         # what was kept / merged, see Reduction

or inside a ViT (timm layout), between blocks, with one line (:mod:`tokenworks.compress.vit_hook`)::

    with tw.compress.attach_vit(model, tw.create("todre", budget=0.11), layer=2):
        logits = model(images)                         # the unchanged forward

The hook: ``assign(view) -> (B, N) long``: for every input token the output slot it goes to
(``0 .. counts[b] - 1``) or ``-1`` (dropped). Pruners send each kept token to its own slot
(:meth:`Reducer.keep_first` turns a priority order into such an assignment, slots in the
tokens' original order); mergers send several tokens to one slot. The base then makes every
output token the size-weighted mean of the tokens sent to it (ToMe's merge rule; a token of size 1
alone in its slot comes out bit for bit), sums the sizes, and pads rows that
keep fewer slots than the longest row (``mask`` False there). A budget that keeps every real
token of every row returns the input unchanged without calling the hook.

Budget: ``ceil(budget x real tokens)`` per row for a fraction in (0, 1], ``budget`` for an
int count (>= 1, at most the tokens given: a larger count is refused, naming ``budget``). A
method may decide its own count per row (P54 does: :meth:`Reducer.keep_counts`).

What a method may read (:class:`TokenView`): the tokens (B, N, D), the padding mask, sizes
(tokens merged into each one so far), the spatial grid when the tokens are still an unreduced
grid, and on demand ``cls_attention()`` (B, N) (the [CLS] query's attention over the tokens,
mean over heads) and ``keys()`` (B, N, Dk) (ToMe's similarity metric); a host fills these
lazily from the attention it already ran, so nothing is computed that no method reads.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenworks.checks import ArgumentError, ArgumentTypeError, check_float, check_int, check_tensor

__all__ = ["Reduction", "Reducer", "TokenView", "budget_count"]


def budget_count(budget: float | int, n: int, arg: str = "budget") -> int:
    """Tokens a budget keeps out of ``n`` real tokens (a count larger than ``n`` is refused)."""
    if isinstance(budget, int):
        if budget > n:
            raise ArgumentError(arg, f"asks to keep {budget} tokens, but the input has only {n}")
        return budget
    return max(1, min(n, math.ceil(budget * n - 1e-9)))


class TokenView:
    """What ``assign`` sees. ``tokens`` (B, N, D); ``mask`` (B, N) bool, real tokens;
    ``sizes`` (B, N) float, tokens merged into each; ``counts`` (B,) long, slots to fill per row;
    ``grid`` (h, w) when the N tokens are an unreduced row-major h x w grid, else None."""

    def __init__(self, tokens, mask, sizes, counts, grid=None, cls_attention=None, keys=None) -> None:
        self.tokens, self.mask, self.sizes, self.counts, self.grid = tokens, mask, sizes, counts, grid
        self._cls, self._keys = cls_attention, keys

    def cls_attention(self) -> torch.Tensor:
        """(B, N) attention of the [CLS] query over the tokens (mean over heads; 0 on padding)."""
        if self._cls is None:
            raise ArgumentError("attention", "is needed by this reducer ([CLS] attention over the tokens) but was not given")
        if callable(self._cls):
            self._cls = self._cls()
        return self._cls.masked_fill(~self.mask, 0.0)

    def keys(self) -> torch.Tensor:
        """(B, N, Dk) similarity metric (ToMe: attention keys, mean over heads); the tokens when none given."""
        if self._keys is None:
            return self.tokens
        if callable(self._keys):
            self._keys = self._keys()
        return self._keys


@dataclass
class Reduction:
    """Output of a reducer. ``tokens`` (B, M, D); ``mask`` (B, M) bool real slots; ``sizes``
    (B, M) input tokens (counted with their own sizes) merged into each slot; ``source`` (B, N)
    long, the slot of each input token (-1: dropped or padding); ``kept`` (B, M) long, for each
    slot the input token of the smallest index sent to it (-1 on padding); ``counts`` (B,)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    sizes: torch.Tensor
    source: torch.Tensor
    kept: torch.Tensor
    counts: torch.Tensor
    identity: bool = False  # True when nothing was reduced (the input is returned as it was)


@dataclass(kw_only=True, eq=False)
class Reducer:
    """Base of every token reducer: a ``@dataclass(kw_only=True, eq=False)`` whose fields are its
    options, implementing ``assign``. ``budget``: a fraction in (0, 1] or a count >= 1 (int)."""

    kind: ClassVar[str] = "token_reducer"
    needs_attention: ClassVar[bool] = False  # reads view.cls_attention()
    needs_grid: ClassVar[bool] = False  # needs the unreduced spatial grid (pooling)
    hosts: ClassVar[tuple[str, ...]] = ("vit", "llava")  # where it can be attached
    default_layer: ClassVar[int] = 0  # tw.compress.attach's layer when none is given (0: before the LM)

    budget: float | int = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)):
            raise ArgumentTypeError("budget", f"must be a fraction in (0, 1] or a token count >= 1, got {self.budget!r}")
        if isinstance(self.budget, int):
            check_int("budget", self.budget, min=1)
        else:
            check_float("budget", self.budget, min=0.0, max=1.0, min_open=True)
        self.validate()

    # ---- hooks
    def validate(self) -> None:
        """Check option fields (raise naming the field)."""

    @abstractmethod
    def assign(self, view: TokenView) -> torch.Tensor:
        """(B, N) long: output slot of each token (0..counts[b]-1), -1 to drop it."""

    def keep_counts(self, view: TokenView) -> torch.Tensor:
        """(B,) long: slots per row; by default the budget of each row's real tokens."""
        n_real = view.mask.sum(1).tolist()
        return torch.tensor([budget_count(self.budget, n) for n in n_real], device=view.tokens.device)

    def stages(self, layer: int) -> list[tuple[int, Reducer]]:
        """Where a host applies this reducer: [(layer, reducer), ...] (ToDRE adds a second stage)."""
        return [(layer, self)]

    # ---- helpers for subclasses
    @staticmethod
    def keep_first(view: TokenView, order: torch.Tensor) -> torch.Tensor:
        """Assignment keeping the first ``counts[b]`` tokens of each row's priority ``order``
        (B, N) (padding must come last in it); slots follow the tokens' original order."""
        B, N = order.shape
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(N, device=order.device).expand(B, N))
        keep = (rank < view.counts[:, None]) & view.mask
        slot = keep.long().cumsum(1) - 1
        return torch.where(keep, slot, torch.full_like(slot, -1))

    @staticmethod
    def order_by(score: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N) priority order by descending ``score`` (ties: lower index first), padding last."""
        s = score.float().masked_fill(~mask, float("-inf"))
        return torch.sort(s, dim=1, descending=True, stable=True).indices

    # ---- the mechanics
    def __call__(
        self,
        tokens: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        sizes: torch.Tensor | None = None,
        attention: torch.Tensor | Callable[[], torch.Tensor] | None = None,
        keys: torch.Tensor | Callable[[], torch.Tensor] | None = None,
        grid: tuple[int, int] | None = None,
    ) -> Reduction:
        """Reduce ``tokens`` (B, N, D). ``mask`` (B, N) bool real tokens; ``sizes`` (B, N);
        ``attention`` (B, N) [CLS] attention (or a function computing it); ``keys`` (B, N, Dk)
        metric; ``grid`` (h, w) when the tokens are an h x w grid."""
        check_tensor("tokens", tokens, ndim=3, floating=True)
        B, N, _ = tokens.shape
        if N == 0:
            raise ArgumentError("tokens", "must hold at least one token, got N = 0")
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=tokens.device)
        check_tensor("mask", mask, shape=(B, N))
        if mask.dtype != torch.bool:
            raise ArgumentTypeError("mask", f"must be a bool tensor, got {mask.dtype}")
        if not bool(mask.any(1).all()):
            raise ArgumentError("mask", "must mark at least one real token in every row")
        if sizes is None:
            sizes = torch.ones(B, N, dtype=tokens.dtype, device=tokens.device)
        check_tensor("sizes", sizes, shape=(B, N), floating=True)
        if isinstance(attention, torch.Tensor):
            check_tensor("attention", attention, shape=(B, N), floating=True)
        if isinstance(keys, torch.Tensor):
            check_tensor("keys", keys, shape=(B, N, None), floating=True)
        if grid is not None and (len(grid) != 2 or grid[0] * grid[1] != N):
            raise ArgumentError("grid", f"must be (h, w) with h * w = N = {N}, got {grid}")
        if self.needs_grid and grid is None:
            raise ArgumentError("grid", f"{type(self).__name__} pools a spatial grid: give grid=(h, w) of the unreduced tokens")
        view = TokenView(tokens, mask, sizes, torch.zeros(B, dtype=torch.long, device=tokens.device), grid, attention, keys)
        counts = self.keep_counts(view).to(device=tokens.device, dtype=torch.long)
        n_real = mask.sum(1)
        if bool((counts < 1).any()) or bool((counts > n_real).any()):
            raise RuntimeError(f"{type(self).__name__}.keep_counts returned {counts.tolist()} for rows of {n_real.tolist()} tokens")
        view.counts = counts
        if bool((counts == n_real).all()) and bool(mask.all()):
            src = torch.arange(N, device=tokens.device).expand(B, N)
            return Reduction(tokens, mask, sizes, src, src, counts, identity=True)
        source = self.assign(view)
        return _gather(tokens, sizes, mask, source)


def _gather(tokens: torch.Tensor, sizes: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> Reduction:
    """Size-weighted mean of the tokens sent to each slot; slots padded to the longest row."""
    B, N, D = tokens.shape
    source = torch.where(mask, source, torch.full_like(source, -1))
    counts = (source.amax(1) + 1).clamp(min=0)
    M = int(counts.max())
    slot = torch.where(source >= 0, source, torch.full_like(source, M))  # dropped -> a spare slot M
    w = sizes.to(tokens.dtype) * (source >= 0)
    num = tokens.new_zeros(B, M + 1, D).scatter_add_(1, slot[..., None].expand(B, N, D), tokens * w[..., None])
    den = tokens.new_zeros(B, M + 1).scatter_add_(1, slot, w)
    out_mask = den[:, :M] > 0
    out = torch.where(out_mask[..., None], num[:, :M] / den[:, :M, None].clamp(min=torch.finfo(tokens.dtype).tiny), 0.0)
    idx = torch.arange(N, device=tokens.device).expand(B, N)
    kept = torch.full((B, M + 1), N, dtype=torch.long, device=tokens.device).scatter_reduce_(1, slot, idx, reduce="amin")[:, :M]
    kept = torch.where(out_mask, kept, torch.full_like(kept, -1))
    if not bool((out_mask.sum(1) == counts).all()):
        raise RuntimeError("a reducer's assignment left an empty slot below its largest slot id")
    return Reduction(out, out_mask, den[:, :M], source, kept, counts)
