"""A small flow-matching head for continuous tokens, on Meta's ``flow_matching`` library.

MAR (Li et al. 2024) models each continuous token with a small MLP "diffusion head" conditioned
on the transformer's output z; here the head is trained by flow matching on the straight
(conditional optimal-transport) path, ``x_t = t x_1 + (1 - t) x_0`` with x_0 ~ N(0, I) and x_1
the token, regressing the velocity ``x_1 - x_0``. The path is ``flow_matching``'s
``AffineProbPath(CondOTScheduler())`` and sampling is its ``ODESolver`` (Euler, ``steps`` equal
steps from t = 0 to 1); only the MLP and the classifier-free-guidance mix are written here.
:func:`euler` is checked against the closed-form velocity of a 1-D Gaussian mixture
(:func:`gmm_velocity`, written independently of the library) and the head against the mixture
itself (tests/generate/test_flow.py).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from flow_matching.path import AffineProbPath
from flow_matching.path.scheduler import CondOTScheduler
from flow_matching.solver import ODESolver
from flow_matching.utils import ModelWrapper
from torch import nn

__all__ = ["FlowHead", "euler", "gmm_velocity", "time_embedding"]


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1], (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    ang = 1000.0 * t[..., None].float() * freqs  # (..., half), periods from 2 pi / 1000 to 2 pi
    return torch.cat([ang.sin(), ang.cos()], -1)


class _Velocity(ModelWrapper):
    """``flow_matching``'s model interface around a plain ``velocity(x, t)`` with t of shape (B,)."""

    def __init__(self, velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__(nn.Identity())
        self.velocity = velocity

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras) -> torch.Tensor:
        return self.velocity(x, t.reshape(-1).expand(x.shape[0]).to(x.dtype))


_PATH = AffineProbPath(scheduler=CondOTScheduler())


def euler(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t = 0 to 1 in ``steps`` equal Euler steps
    (``flow_matching``'s ``ODESolver``)."""
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=x0.dtype, device=x0.device)
    return ODESolver(velocity_model=_Velocity(velocity)).sample(x_init=x0, step_size=None, method="euler", time_grid=grid)


def gmm_velocity(x: torch.Tensor, t: torch.Tensor, weights, means, stds) -> torch.Tensor:
    """Closed-form velocity E[x_1 - x_0 | x_t = x] of the straight path from N(0, 1) to a 1-D
    Gaussian mixture (x (B, 1), t (B,)); the reference the head and sampler are tested on."""
    w, mu, sd = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, stds))
    x, t = x.double()[:, :1], t.double()[:, None]
    s2 = t**2 * sd**2 + (1 - t) ** 2  # (B, K) variance of x_t given component k
    logp = torch.log(w) - 0.5 * torch.log(2 * math.pi * s2) - (x - t * mu) ** 2 / (2 * s2)
    post = torch.softmax(logp, -1)
    e1 = mu + t * sd**2 / s2 * (x - t * mu)
    e0 = (1 - t) / s2 * (x - t * mu)
    return (post * (e1 - e0)).sum(-1, keepdim=True).float()


class FlowHead(nn.Module):
    """MLP velocity field v(x_t, t, z): x_t (B, D), t (B,), z (B, C) -> (B, D)."""

    def __init__(self, dim: int, cond_dim: int, width: int = 128, depth: int = 3) -> None:
        super().__init__()
        self.dim, self.width = dim, width
        self.x_in = nn.Linear(dim, width)
        self.c_in = nn.Linear(cond_dim, width)
        self.t_in = nn.Linear(width, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.x_in(x) + self.c_in(z) + self.t_in(time_embedding(t, self.width))
        for blk in self.blocks:
            h = h + blk(h)
        return self.out(h)

    def loss(self, x1: torch.Tensor, z: torch.Tensor, mul: int = 4) -> torch.Tensor:
        """Flow-matching loss on targets x1 (M, D) with conditions z (M, C), ``mul`` times each."""
        x1, z = x1.repeat(mul, 1), z.repeat(mul, 1)
        x0 = torch.randn_like(x1)
        t = torch.rand(x1.shape[0], device=x1.device)
        path = _PATH.sample(x_0=x0, x_1=x1, t=t)
        return (self(path.x_t, t, z) - path.dx_t).pow(2).mean()

    def sample(self, z: torch.Tensor, steps: int, g: torch.Generator | None, temperature: float = 1.0, cfg: float = 1.0) -> torch.Tensor:
        """Tokens (M, D) for conditions z (M, C); with cfg != 1, z is (2M, C) [cond; uncond] and
        the velocity is ``v_u + cfg (v_c - v_u)``."""
        M = z.shape[0] if cfg == 1.0 else z.shape[0] // 2
        x0 = torch.randn(M, self.dim, generator=g) * temperature

        def vel(x, t):
            if cfg == 1.0:
                return self(x, t, z)
            v = self(torch.cat([x, x]), torch.cat([t, t]), z)
            return v[M:] + cfg * (v[:M] - v[M:])

        return euler(vel, x0, steps)
