"""Attention variants for the DiT generator (:mod:`tokenworks.generate.dit`): the base class and
the attention pieces they share.

    backbone = tokenworks.create("pt-dit", proxy_window=2, window=7)
    backbone.setup(d=96, heads=4, layers=3, grid=(14, 14))
    x = backbone(x, mod, ctx)         # x (B, L, d) tokens in raster order, mod (B, 6 d)

A variant is a ``@dataclass`` of its options; :class:`DiTAttention` builds ``layers`` DiT layers
(adaLN-single modulation as in PixArt-alpha: one shared (B, 6 d) projection of the condition
plus a learned (6, d) table per layer; a pre-norm MLP) and asks the variant for one thing, the
token mixing of layer i: ``mix(i, h, ctx) -> (B, L, d)``, the update added (gated) to the tokens,
given the normed, modulated tokens h. ``ctx`` carries the grid and a ``torch.Generator`` (random
proxies are drawn from it when generating, so that a seed fixes the samples).

Every softmax attention goes through :class:`Core` (matmul scores, optional boolean mask), so
``torch.utils.flop_counter`` can tell attention FLOPs (the modules named ``core``) from the
rest (:func:`attention_flops`). Hand-written instead of ``F.scaled_dot_product_attention``
because the flop counter's per-module breakdown needs the two matmuls inside a module of
their own and the tests compare it against torch's ``nn.MultiheadAttention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import ArgumentError, check_int

__all__ = ["Attention", "Core", "DiTAttention", "attention_flops", "modulate", "sincos_2d", "window_attention"]


class Core(nn.Module):
    """softmax(q k^T / sqrt(dh)) v (two matmuls) over (B, H, Tq, dh) x (B, H, Tk, dh); ``mask`` (.., Tq, Tk)
    bool, True = may attend."""

    def forward(self, q, k, v, mask=None):
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # matmul, not einsum: einsum turns a length-1 side into a product the flop counter skips
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        return att.softmax(-1) @ v


class Attention(nn.Module):
    """Multi-head attention: ``forward(x, kv=None, mask=None)``; x (B, Tq, d) queries, kv
    (B, Tk, d) keys/values (None = self-attention). Weights: q (d, d), kv (2d, d) = [k; v], out."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.core = Core()

    def forward(self, x, kv=None, mask=None):
        q = rearrange(self.q(x), "b t (h e) -> b h t e", h=self.heads)
        k, v = rearrange(self.kv(x if kv is None else kv), "b t (two h e) -> two b h t e", two=2, h=self.heads)
        return self.out(rearrange(self.core(q, k, v, mask), "b h t e -> b t (h e)"))


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def sincos_2d(h: int, w: int, d: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (DiT / MAE), (h * w, d) in raster order; needs d % 4 == 0."""
    q = d // 4
    freq = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float32) / q)
    r, c = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    parts = [f(p.reshape(-1, 1) * freq) for p in (r, c) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, 1)


def window_attention(attn: Attention, x, grid: tuple[int, int], window: int, shift: int = 0):
    """``attn`` within non-overlapping ``window`` x ``window`` windows of the (H, W) grid (Swin);
    ``shift`` > 0: windows displaced by ``shift`` (Swin's cyclic roll, with a mask so that
    tokens that wrapped around never see each other). x (B, H*W, d) -> (B, H*W, d)."""
    H, W = grid
    x = rearrange(x, "b (h w) d -> b h w d", h=H)
    mask = None
    if shift:
        x = x.roll((-shift, -shift), (1, 2))
        rid = lambda n: (torch.arange(n, device=x.device) + window - shift) // window  # region of each row/column, before the roll
        region = (rid(H)[:, None] * (W + 1) + rid(W)[None, :]).roll((-shift, -shift), (0, 1))
        region = rearrange(region, "(nh wh) (nw ww) -> (nh nw) (wh ww)", wh=window, ww=window)
        mask = (region[:, :, None] == region[:, None, :])[:, None]  # (windows, 1, S, S)
    xw = rearrange(x, "b (nh wh) (nw ww) d -> (b nh nw) (wh ww) d", wh=window, ww=window)
    if mask is not None:
        mask = mask.repeat(x.shape[0], 1, 1, 1)
    out = attn(xw, mask=mask)
    out = rearrange(out, "(b nh nw) (wh ww) d -> b (nh wh) (nw ww) d", b=x.shape[0], nh=H // window, wh=window)
    if shift:
        out = out.roll((shift, shift), (1, 2))
    return rearrange(out, "b h w d -> b (h w) d")


def check_divides(name: str, value: int, grid: tuple[int, int]) -> None:
    """``value`` (a window or group side) must divide both sides of the token grid."""
    if grid[0] % value or grid[1] % value:
        raise ArgumentError(name, f"must divide the token grid {grid[0]}x{grid[1]}, got {value}")


@dataclass(kw_only=True, eq=False, repr=False)
class DiTAttention(nn.Module):
    """Base of the attention variants: DiT layers (adaLN-single, pre-norm, MLP x4) around the
    variant's token mixing ``mix(i, h, ctx)``."""

    kind: ClassVar[str] = "dit_attention"

    def __post_init__(self) -> None:
        nn.Module.__init__(self)
        self.validate()

    def validate(self) -> None:
        """Check the variant's option fields."""

    def check_grid(self, grid: tuple[int, int]) -> None:
        """Check that the variant's windows/groups fit the (H, W) token grid."""

    def setup(self, d: int, heads: int, layers: int, grid: tuple[int, int]) -> DiTAttention:
        check_int("layers", layers, min=1, max=64)
        self.check_grid(grid)
        self.d, self.heads, self.layers, self.grid = d, heads, layers, tuple(grid)
        self.norm1 = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False, eps=1e-6) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False, eps=1e-6) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d)) for _ in range(layers))
        self.table = nn.Parameter(torch.randn(layers, 6, d) / math.sqrt(d))
        self.build()
        return self

    def build(self) -> None:
        """Create the variant's per-layer modules (``self.d``, ``self.heads``, ``self.layers``, ``self.grid`` are set)."""

    def begin(self, x: torch.Tensor, mod: torch.Tensor, ctx: dict[str, Any]) -> None:
        """Per-forward state in ``ctx`` (FIT's latents); called before the first layer."""

    def mix(self, i: int, h: torch.Tensor, ctx: dict[str, Any]) -> torch.Tensor:
        """Token mixing of layer i: h (B, L, d) normed and modulated -> update (B, L, d)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mod: torch.Tensor, ctx: dict[str, Any] | None = None) -> torch.Tensor:
        """x (B, L, d) tokens, mod (B, 6 d) the shared adaLN projection of the condition."""
        ctx = {} if ctx is None else ctx
        ctx.setdefault("grid", self.grid)
        ctx["mod"] = mod
        self.begin(x, mod, ctx)
        for i in range(self.layers):
            s1, c1, g1, s2, c2, g2 = (mod.reshape(-1, 6, self.d) + self.table[i]).unbind(1)
            x = x + g1[:, None] * self.mix(i, modulate(self.norm1[i](x), s1, c1), ctx)
            x = x + g2[:, None] * self.mlp[i](modulate(self.norm2[i](x), s2, c2))
        return x

    def extra_repr(self) -> str:
        from dataclasses import fields

        return ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))


def attention_flops(fn) -> tuple[Any, int, int]:
    """Run ``fn()`` under ``torch.utils.flop_counter`` -> (result, total FLOPs, attention FLOPs =
    the FLOPs inside :class:`Core` modules: scores and their weighted sum of values)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn()
    att = sum(sum(v.values()) for k, v in counter.get_flop_counts().items() if k.split(".")[-1] == "core")
    return out, int(counter.get_total_flops()), int(att)
