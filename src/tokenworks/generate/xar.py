"""P32 xAR: next-cell prediction with flow matching on noisy context.

Mechanism (Ren et al. 2025, "Beyond next-token: next-X prediction for autoregressive visual
generation"): the prediction unit X is a group of tokens (a cell, here one row of the token
grid, ``cell`` tokens); the transformer itself is a flow-matching velocity model: for cell i it
sees the previous cells as context and the noisy cell ``x_t = t x_1 + (1 - t) x_0`` with its time
t, and regresses the velocity ``x_1 - x_0`` for all tokens of the cell at once. Noisy Context
Learning: during training the context cells are themselves noised at random levels
(``t_c ~ U(0, 1)`` per cell, given to the model as their time), so the model never relies on a
perfect past and errors of its own earlier cells at inference (exposure bias) hurt less.
``noisy_context=False`` is the teacher-forced control: clean context in training, one change.

Layout: two streams over the same positions, ``[label, context cells (time t_c), query cells
(time t)]``; a context token sees the label and context cells up to its own, a query token sees
the label, the context cells before its cell and its own cell's query tokens (block-causal), so
one training pass covers every cell. Generation runs cell by cell: ``steps`` Euler steps of the
whole model per cell (nfe = cells x steps), the generated cells becoming clean (t_c = 1)
context. :meth:`XAR.teacher_forced` generates each cell given the *real* previous cells: the
quality gap between the two is the exposure-bias measurement of the suite.

Deviations: cells are grid rows (xAR's best unit is a k x k cell of a larger grid); no
KV cache between Euler steps; classifier-free guidance on the velocity; d=96, 2 layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tokenworks.checks import check_int
from tokenworks.generate.base import ImageGenerator, Transformer, check_labels, check_steps
from tokenworks.generate.flow import time_embedding
from tokenworks.registry import register

__all__ = ["XAR"]


@register("xar", paper="P32")
@dataclass(kw_only=True, eq=False, repr=False)
class XAR(ImageGenerator):
    """Cell-by-cell flow-matching AR with noisy-context training (or clean: the control)."""

    continuous = True
    cell: int = 0  # tokens per cell; 0 = one row of the square token grid
    noisy_context: bool = True

    def validate(self) -> None:
        check_int("cell", self.cell, min=0, max=self.num_tokens)
        if self.cell == 0:
            import math

            g = math.isqrt(self.num_tokens)
            if g * g != self.num_tokens:
                raise ValueError(f"cell must be given (a divisor of num_tokens={self.num_tokens}) when the tokens are not a square grid")
            self.cell = g
        if self.num_tokens % self.cell:
            raise ValueError(f"cell must divide num_tokens={self.num_tokens}, got {self.cell}")
        if not isinstance(self.noisy_context, bool):
            raise ValueError(f"noisy_context must be a bool, got {self.noisy_context!r}")

    @property
    def cells(self) -> int:
        return self.num_tokens // self.cell

    def build(self) -> None:
        d = self.d_model
        self.in_proj = nn.Linear(self.token_dim, d)
        self.pos_emb = nn.Parameter(torch.randn(self.num_tokens, d) * 0.02)
        self.stream_emb = nn.Parameter(torch.randn(2, d) * 0.02)  # context, query
        self.t_proj = nn.Linear(d, d)
        self.net = Transformer(d, self.layers, self.heads)
        self.out = nn.Linear(d, self.token_dim)

    def _embed(self, x, t, pos, stream):
        return self.in_proj(x) + self.pos_emb[pos] + self.stream_emb[stream] + self.t_proj(time_embedding(t, self.d_model))

    def velocity(self, labels, ctx, t_ctx, q, t_q, first):
        """labels (B,), ctx (B, Tc, D) context tokens at positions 0..Tc-1 with times t_ctx (B, Tc),
        q (B, Tq, D) query tokens at positions first..first+Tq-1 with times t_q (B, Tq)
        -> velocity (B, Tq, D). Tq is one cell (generation) or all of them (training, first=0)."""
        B, Tc, Tq = q.shape[0], ctx.shape[1], q.shape[1]
        dev = q.device
        pc, pq = torch.arange(Tc, device=dev), torch.arange(first, first + Tq, device=dev)
        h = torch.cat([self.label_emb(labels)[:, None], self._embed(ctx, t_ctx, pc, 0), self._embed(q, t_q, pq, 1)], 1)
        cell_c, cell_q = pc // self.cell, pq // self.cell
        allowed = torch.zeros(1 + Tc + Tq, 1 + Tc + Tq, dtype=torch.bool, device=dev)
        allowed[:, 0] = True  # the label
        allowed[1 : 1 + Tc, 1 : 1 + Tc] = cell_c[None, :] <= cell_c[:, None]
        allowed[1 + Tc :, 1 : 1 + Tc] = cell_c[None, :] < cell_q[:, None]
        allowed[1 + Tc :, 1 + Tc :] = cell_q[None, :] == cell_q[:, None]
        out = self.net(h, allowed.expand(B, -1, -1))[0]
        return self.out(out[:, 1 + Tc :])

    def loss(self, tokens, labels):
        B, N, _ = tokens.shape
        C, dev = self.cells, tokens.device
        t = torch.rand(B, C, device=dev).repeat_interleave(self.cell, 1)  # (B, N): one time per cell
        x0 = torch.randn_like(tokens)
        q = t[..., None] * tokens + (1 - t[..., None]) * x0
        if self.noisy_context:
            tc = torch.rand(B, C, device=dev).repeat_interleave(self.cell, 1)
            ctx = tc[..., None] * tokens + (1 - tc[..., None]) * torch.randn_like(tokens)
        else:
            tc, ctx = torch.ones(B, N, device=dev), tokens
        v = self.velocity(self.drop_labels(labels), ctx, tc, q, t, 0)
        return (v - (tokens - x0)).pow(2).mean()

    def _cell(self, labels, ctx, i, steps, g):
        """Generate cell i given context tokens ctx (B, i*cell, D) (clean)."""
        B, L = labels.shape[0], self.cell
        guided = self.cfg != 1.0
        lab = torch.cat([labels, torch.full_like(labels, self.NULL)]) if guided else labels
        c = ctx.repeat(2 if guided else 1, 1, 1)
        tc = torch.ones(c.shape[:2])
        x = torch.randn(B, L, self.token_dim, generator=g) * self.temperature
        for k in range(steps):
            t = torch.full((lab.shape[0], L), k / steps)
            v = self.velocity(lab, c, tc, x.repeat(2 if guided else 1, 1, 1), t, i * L)
            if guided:
                v = v[B:] + self.cfg * (v[:B] - v[B:])
            x = x + v / steps
        return x

    def _generate(self, labels, steps, g):
        B = labels.shape[0]
        out = torch.zeros(B, 0, self.token_dim)
        for i in range(self.cells):
            out = torch.cat([out, self._cell(labels, out, i, steps, g)], 1)
        return out, self.cells * steps

    @torch.no_grad()
    def teacher_forced(self, tokens, labels, *, steps: int = 8, seed: int = 0) -> torch.Tensor:
        """Each cell generated given the real previous cells of ``tokens`` (B, N, D); the first
        cell is generated from the label alone, as in free-running generation."""
        check_steps(steps)
        labels = check_labels(labels, self.num_classes)
        tokens = self.check_tokens(tokens)
        was = self.training
        self.eval()
        g = torch.Generator().manual_seed(seed)
        try:
            cells = [self._cell(labels, tokens[:, : i * self.cell].float(), i, steps, g) for i in range(self.cells)]
        finally:
            self.train(was)
        return torch.cat(cells, 1)
