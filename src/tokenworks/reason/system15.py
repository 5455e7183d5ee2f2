"""P39 System-1.5 reasoning: dynamic shortcuts in depth and in steps (Wang et al. 2025).

Mechanism, two shortcuts learnt by self-distillation from the full-path model:

- *depth shortcut* (DS): after each layer ``l < L`` a light adapter branch (a residual linear
  map, zero at init) and a gate (a logistic unit on the layer's hidden state); a decoded
  position whose gate fires (probability > ``depth_threshold``) exits at that layer: its token
  is read from the adapter's state through the final norm and LM head. The adapters are
  distilled to the full model's next token, the gates to "the exit token equals the full
  model's" (:func:`fit_depth_exit`).
- *step shortcut* (SS): on a Coconut (latent-chain) model, a gate on the hidden state after
  ``k`` continuous thoughts decides that the remaining thoughts are not critical and closes the
  chain (``stop_thinking``); it is distilled to "the answer after ``k`` thoughts equals the
  answer after the full chain" (:func:`fit_step_gate`).

Compute saved is reported as counts, not wall time: ``ReasonStats.extra`` holds the layers run
per decoded token (``depth_layers``) and the thoughts skipped follow from ``latent_steps``.

Deviations from the paper: the layers deeper than an exit still run for that position, so
later positions attend to the full model's keys and values (the paper copies the exit state
into the deeper layers' KV); the compute saved is therefore the layer count an implementation
with that copy would run, not a measured speed-up. The step shortcut ends the latent chain
instead of carrying the hidden state across skipped steps. The shortcuts are fitted on a
frozen model (the paper fine-tunes the model with them), in seconds, with a few hundred train
problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float
from tokenworks.reason.base import Reasoner
from tokenworks.reason.tasks import EOT, SPECIALS
from tokenworks.registry import register

__all__ = ["DepthExit", "StepGate", "System15", "fit_depth_exit", "fit_step_gate"]


class DepthExit(nn.Module):
    """Adapter branches and exit gates after layers 1 .. L-1 (index ``l - 1``)."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.adapters = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers - 1))
        self.gates = nn.ModuleList(nn.Linear(dim, 1) for _ in range(layers - 1))
        for a in self.adapters:
            nn.init.zeros_(a.weight)
            nn.init.zeros_(a.bias)

    def exit_logits(self, model, h: torch.Tensor, layer: int) -> torch.Tensor:
        """Logits (.., V) of hidden states ``h`` (.., D) after ``layer`` (1-based, < L)."""
        z = h + self.adapters[layer - 1](h)
        return model.get_output_embeddings()(model.model.norm(z))

    def gate(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        return torch.sigmoid(self.gates[layer - 1](h))[..., 0]


class StepGate(nn.Module):
    """Probability (..) that the latent chain can stop here, from the last hidden state (.., D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin = nn.Linear(dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.lin(h))[..., 0]


@register("system15", paper="P39")
@dataclass(kw_only=True)
class System15(Reasoner):
    """Coconut thoughts (``latent_steps`` at most) closed early by ``step_gate``; decoded tokens
    exit early through ``depth``. Without either it is Coconut (or CoT at 0 latent steps)."""

    depth: DepthExit | None = field(default=None, repr=False)
    step_gate: nn.Module | None = field(default=None, repr=False)
    depth_threshold: float = 0.9
    step_threshold: float = 0.9
    end_token_id: int | None = SPECIALS.index(EOT)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("depth_threshold", self.depth_threshold, min=0.0, max=1.0)
        check_float("step_threshold", self.step_threshold, min=0.0, max=1.0)
        self._layers: list[list[int]] = []

    @property
    def needs_hidden(self) -> bool:
        return self.latent_steps > 0 or self.depth is not None

    def thought(self, model, hidden, step):
        return hidden

    def stop_thinking(self, logits, hidden=None):
        if self.step_gate is None or hidden is None:
            return None
        return self.step_gate(hidden) > self.step_threshold

    def begin(self, batch: int) -> None:
        self._layers = [[] for _ in range(batch)]
        self._L = None

    def next_logits(self, model, out):
        L = len(out.hidden_states) - 1
        logits = out.logits[:, -1]
        if self.depth is None:
            self._last_exit = torch.full((logits.shape[0],), L)
            return logits
        exit_at = torch.full((logits.shape[0],), L)
        logits = logits.clone()
        for layer in range(1, L):
            h = out.hidden_states[layer][:, -1]
            take = (self.depth.gate(h, layer) > self.depth_threshold) & (exit_at == L)
            if take.any():
                logits[take] = self.depth.exit_logits(model, h[take], layer).to(logits.dtype)
                exit_at[take] = layer
        self._last_exit = exit_at
        return logits

    def token_input(self, model, tokens, logits, hidden, in_chain, rows):
        for r in rows.tolist():  # the token just decoded for row r used this many layers
            self._layers[r].append(int(self._last_exit[r]))
        return super().token_input(model, tokens, logits, hidden, in_chain, rows)

    def extra_stats(self) -> dict:
        return {"depth_layers": [list(x) for x in self._layers]}


# -- fitting the shortcuts on a frozen model ---------------------------------------------------


def fit_depth_exit(model, batches: list[dict], *, steps: int = 200, lr: float = 1e-2, seed: int = 0) -> DepthExit:
    """Distil a :class:`DepthExit` from the frozen ``model`` on teacher-forced ``batches``
    (``collate`` outputs; positions with labels are used): adapters to the full model's argmax
    token (cross-entropy), then gates to whether the adapter's token equals it (BCE)."""
    torch.manual_seed(seed)
    L = model.config.num_hidden_layers
    hs, target = [[] for _ in range(L)], []
    with torch.no_grad():
        for b in batches:
            pos = (b["mask"].cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=b["ids"], attention_mask=b["mask"], position_ids=pos, output_hidden_states=True)
            sel = b["labels"][:, 1:] != -100  # positions that predict a labelled token
            target.append(out.logits[:, :-1][sel].argmax(-1))
            for layer in range(1, L):
                hs[layer].append(out.hidden_states[layer][:, :-1][sel])
    y = torch.cat(target)
    de = DepthExit(model.config.hidden_size, L)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in range(1, L):
        h = torch.cat(hs[layer])
        opt = torch.optim.Adam(de.adapters[layer - 1].parameters(), lr=lr)
        for _ in range(steps):
            loss = F.cross_entropy(de.exit_logits(model, h, layer), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            ok = (de.exit_logits(model, h, layer).argmax(-1) == y).float()
        opt = torch.optim.Adam(de.gates[layer - 1].parameters(), lr=lr)
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(de.gates[layer - 1](h)[:, 0], ok)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    return de.eval()


def fit_step_gate(model, prompts: list[list[int]], latent_steps: int, *, eos_token_id: int, pad_token_id: int = 0,
                  steps: int = 300, lr: float = 1e-2, seed: int = 0) -> StepGate:  # fmt: skip
    """Distil a :class:`StepGate` on a Coconut ``model``: for each prompt and ``k`` in
    0 .. ``latent_steps``, the hidden state after ``k`` thoughts, labelled 1 when closing the
    chain there gives the same answer as the full chain."""
    from tokenworks.reason.base import answer_of
    from tokenworks.reason.coconut import Coconut

    class _Rec(Coconut):
        def stop_thinking(self, logits, hidden=None):
            seen.append(hidden.clone())
            return None

    torch.manual_seed(seed)
    seen: list[torch.Tensor] = []
    answers = []
    for k in range(latent_steps + 1):
        r = (_Rec if k == latent_steps else Coconut)(latent_steps=k, max_new_tokens=4)
        out = r.generate(model, prompts, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
        answers.append([answer_of(t, eos_token_id) for t in out.tokens])
    h = torch.stack(seen[: latent_steps + 1], 1)  # (N, K + 1, D): after k thoughts
    full = answers[-1]
    y = torch.tensor([[float(answers[k][i] == full[i]) for k in range(latent_steps + 1)] for i in range(len(prompts))])
    gate = StepGate(h.shape[-1])
    opt = torch.optim.Adam(gate.parameters(), lr=lr)
    x, t = h.flatten(0, 1), y.flatten()
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(gate.lin(x)[:, 0], t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return gate.eval()
