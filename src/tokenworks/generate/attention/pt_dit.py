"""P01 PT-DiT (Qihoo-T2X, Wang et al. 2024, "An efficient proxy-tokenized diffusion transformer"):
global attention only among proxy tokens, injected back by cross-attention, plus window attention.

Each layer's token mixing (the paper's GIIM + TCM, inside one DiT layer):

1. *proxies*: one token per ``proxy_window`` x ``proxy_window`` window of the grid, drawn at
   random (the paper's first version and this issue; ``proxy="mean"`` takes the window average,
   the paper's later version), (B, L / pw^2, d);
2. *global*: self-attention among the proxies (residual), O((L / pw^2)^2);
3. *injection*: cross-attention from all L tokens (queries) to the proxies, O(L^2 / pw^2);
4. *texture*: window attention in ``window`` x ``window`` windows over the tokens plus the
   injection, shifted by window // 2 on odd layers (Swin), O(L * window^2).

The update is injection + texture. With ``proxy_window = 1`` every token is its own proxy, so
step 2 is full self-attention; the tests check this against torch's ``nn.MultiheadAttention``.

Deviations: the paper's blocks also cross-attend to text (here the class label enters through
adaLN modulation, as in DiT/PixArt) and it uses 3-D (video) windows; ours are 2-D. Proxies are
drawn per image and layer from the generator's seed at sampling time (so a seed fixes samples).
Parameters per layer: three attentions (proxy, cross, window) + the MLP; the suite matches the
budget of the other variants by depth (3 such layers ~ 5 full-attention layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import check_choice, check_int
from tokenworks.generate.attention.base import Attention, DiTAttention, check_divides, window_attention
from tokenworks.registry import register

__all__ = ["PTDiT", "select_proxies"]


def select_proxies(h: torch.Tensor, grid, pw: int, how: str, g: torch.Generator | None) -> torch.Tensor:
    """One proxy per pw x pw window: h (B, H*W, d) -> (B, (H/pw)*(W/pw), d), windows in raster order."""
    win = rearrange(h, "b (nh ph nw qw) d -> b (nh nw) (ph qw) d", nh=grid[0] // pw, ph=pw, qw=pw)
    if how == "mean":
        return win.mean(2)
    B, G, S, d = win.shape
    idx = torch.randint(0, S, (B, G), generator=g, device=h.device) if S > 1 else torch.zeros(B, G, dtype=torch.long, device=h.device)
    return win.gather(2, idx[:, :, None, None].expand(B, G, 1, d))[:, :, 0]


@register("pt-dit", paper="P01")
@dataclass(kw_only=True, eq=False, repr=False)
class PTDiT(DiTAttention):
    """Proxy-token global attention + cross-attention injection + (shifted) window attention."""

    proxy_window: int = 2
    window: int = 7
    shift: bool = True
    proxy: str = "random"

    def validate(self) -> None:
        check_int("proxy_window", self.proxy_window, min=1, max=1024)
        check_int("window", self.window, min=1, max=1024)
        check_choice("proxy", self.proxy, ("random", "mean"))
        if not isinstance(self.shift, bool):
            raise ValueError(f"shift must be a bool, got {self.shift!r}")

    def check_grid(self, grid):
        check_divides("proxy_window", self.proxy_window, grid)
        check_divides("window", self.window, grid)

    def build(self) -> None:
        mk = lambda: nn.ModuleList(Attention(self.d, self.heads) for _ in range(self.layers))  # noqa: E731
        self.proxy_attn, self.cross, self.win = mk(), mk(), mk()

    def mix(self, i, h, ctx):
        grid = ctx["grid"]
        p = select_proxies(h, grid, self.proxy_window, self.proxy, ctx.get("g"))
        p = p + self.proxy_attn[i](p)  # global semantics among the proxies
        inj = self.cross[i](h, p)  # every token queries the proxies
        s = self.window // 2 if self.shift and i % 2 == 1 else 0
        return inj + window_attention(self.win[i], h + inj, grid, self.window, s)
