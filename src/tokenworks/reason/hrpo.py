"""P37 HRPO: hybrid latent reasoning via reinforcement learning (Yue et al. 2025).

Mechanism: while the chain of thought is open (before ``<eot>``), the input after a sampled
token is a gated mix of that token's embedding and the previous step's hidden features,

    e = a * emb(x) + sqrt(1 - a^2) * (i * h~),   a = exp(-c * softplus(-L) * r),
    r = sigmoid(W_r emb(x)),  i = sigmoid(W_i emb(x)),

where ``h~`` is the output distribution of the step that produced ``x`` mapped back into the
embedding space (``p @ E``, divided by ``||p||_2``, as the official code's
``last_thinking_states``), ``L`` (``Lambda``) is learnt per dimension and initialised so that
``a`` starts in ``(r_min, r_max)`` near 1: at initialisation the model is the token-embedding
model (tested). After ``<eot>`` inputs are plain token embeddings. Training is RL only (no CoT
traces): GRPO (:func:`grpo_advantages`: reward minus the group mean, over the group's standard
deviation) on sampled rollouts; the loss re-runs the rollout teacher-forced in one forward with
the *captured* ``h~`` and the *current* gate (the official ``thinking_embeds`` protocol), so the
gate and the LM both get gradients. The control is GRPO without the latent path (``a = 1``).

Deviations: a short GRPO written here (one gradient step per rollout batch, so the PPO ratio is
1 and clipping is inert; no KL term, ``beta = 0``), instead of ``trl``'s trainer, because the
hybrid inputs need a custom rollout and forward that ``GRPOTrainer`` cannot take; the model is
the family's small CoT Llama (a full fine-tune with a higher learning rate for the gate, as the
official per-group learning rates), not a LoRA-tuned Qwen; reward = exact answer (no format
reward); tens of updates, not epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.reason.base import Reasoner
from tokenworks.reason.tasks import EOT, SPECIALS
from tokenworks.registry import register

__all__ = ["HRPO", "HybridGate", "grpo_advantages", "soft_embedding"]


class HybridGate(nn.Module):
    """The gate of HRPO: ``forward(token_emb, latent) -> (mixed, a)``, all (.., D)."""

    def __init__(self, dim: int, *, c: float = 8.0, r_min: float = 0.99, r_max: float = 0.999, seed: int = 0):
        super().__init__()
        check_float("r_min", r_min, min=0.0, max=1.0, min_open=True)
        check_float("r_max", r_max, min=r_min, max=1.0)
        self.c = float(c)
        self.gate_r = nn.Linear(dim, dim)
        self.gate_i = nn.Linear(dim, dim)
        self.Lambda = nn.Parameter(torch.zeros(dim))
        self.reset(r_min, r_max, seed=seed)

    @torch.no_grad()
    def reset(self, r_min: float, r_max: float, *, seed: int = 0) -> None:
        """``a`` at ``r = 1`` drawn uniformly in ``[r_min, r_max]`` per dimension (``r_max = 1``:
        ``Lambda`` = +inf there, ``a = 1`` exactly)."""
        g = torch.Generator().manual_seed(seed)
        u = r_min + (r_max - r_min) * torch.rand(self.Lambda.shape, generator=g)
        # a = exp(-c softplus(-L)) = u  <=>  softplus(-L) = -log(u)/c  <=>  L = -log(exp(-log(u)/c) - 1)
        sp = -torch.log(u.double()) / self.c
        lam = torch.where(sp > 0, -torch.log(torch.expm1(sp.clamp(min=1e-300))), torch.full_like(sp, math.inf))
        self.Lambda.copy_(lam.float().clamp(max=1e4))  # 1e4: softplus(-1e4) = 0 in float

    def forward(self, token_emb: torch.Tensor, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.sigmoid(self.gate_r(token_emb))
        i = torch.sigmoid(self.gate_i(token_emb))
        a = torch.exp(-self.c * F.softplus(-self.Lambda) * r)
        return a * token_emb + torch.sqrt((1 - a * a).clamp(min=0)) * (i * latent), a


def soft_embedding(logits: torch.Tensor, weight: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``p @ E / ||p||_2`` with ``p = softmax(logits / temperature)``: (.., V) -> (.., D)."""
    p = torch.softmax(logits.float() / max(temperature, 1e-6), -1)
    return (p @ weight.float()) / p.norm(dim=-1, keepdim=True)


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantages: rewards (N,) in consecutive groups of ``group_size``;
    ``(r - mean_group) / (std_group + eps)`` with the sample (n - 1) standard deviation, as ``trl``."""
    check_int("group_size", group_size, min=2)
    if rewards.numel() % group_size:
        raise ValueError(f"rewards: {rewards.numel()} values do not split into groups of group_size={group_size}")
    r = rewards.float().view(-1, group_size)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).flatten()


@register("hrpo", paper="P37")
@dataclass(kw_only=True)
class HRPO(Reasoner):
    """Hybrid decoding: inside the chain the input after each token mixes its embedding with the
    step's soft embedding through ``gate`` (None or ``latent=False``: plain tokens, i.e. GRPO)."""

    uses_latents: ClassVar[bool] = False  # no latent-only steps: the latents ride on decoded tokens

    gate: nn.Module | None = field(default=None, repr=False)
    latent: bool = True
    end_token_id: int | None = SPECIALS.index(EOT)
    captured: dict | None = field(default=None, repr=False)  # a dict: rollouts record {row: [h~ per token]} here

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_steps != 0:
            raise ValueError(f"latent_steps: HRPO mixes latents into decoded tokens, so it must be 0, got {self.latent_steps}")
        if self.latent and self.gate is None:
            raise ValueError("gate: HRPO with latent=True needs its HybridGate (latent=False is plain GRPO decoding)")

    def token_input(self, model, tokens, logits, hidden, in_chain, rows):
        emb = model.get_input_embeddings()
        e = emb(tokens)
        if not self.latent:
            return e
        h = soft_embedding(logits, emb.weight, max(self.temperature, 1e-6) if self.temperature > 0 else 1.0).to(e.dtype)
        if self.captured is not None:
            for j, r in enumerate(rows.tolist()):
                self.captured.setdefault(r, []).append(h[j])
        mixed, _ = self.gate(e, h)
        return torch.where(in_chain[:, None], mixed, e)


def rollout_inputs(model, gate, prompt: list[int], tokens: list[int], latents: torch.Tensor | None, end_token_id: int) -> torch.Tensor:
    """Teacher-forced input embeddings (T, D) of ``prompt + tokens`` with the current ``gate``
    applied at the in-chain generated positions, from the captured soft embeddings ``latents``
    (len(tokens), D) (None: plain embeddings)."""
    emb = model.get_input_embeddings()
    ids = torch.tensor(prompt + tokens)
    x = emb(ids)
    if gate is None or latents is None or not tokens:
        return x
    t = torch.tensor(tokens)
    open_ = torch.cumsum((t == end_token_id).long(), 0) == 0  # chain still open after this token
    mixed, _ = gate(x[len(prompt) :], latents)
    gen = torch.where(open_[:, None], mixed, x[len(prompt) :])
    return torch.cat([x[: len(prompt)], gen], 0)


def grpo_train(model, gate: nn.Module | None, pools, tok, *, steps: int, group_size: int = 8, questions: int = 4,
               lr: float = 1e-4, gate_lr: float = 1e-3, temperature: float = 1.0, max_new_tokens: int = 40, seed: int = 0,
               progress=None) -> list[float]:  # fmt: skip
    """GRPO (with HRPO's hybrid inputs when ``gate`` is given) on problems drawn from ``pools``
    (tuples of examples, alternated); one optimizer step per batch of ``questions`` x
    ``group_size`` rollouts; returns the mean reward of each step's rollouts."""
    from tokenworks.reason.base import answer_of
    from tokenworks.reason.models import prompt_ids

    check_int("steps", steps, min=1)
    check_int("questions", questions, min=1)
    eot = tok.convert_tokens_to_ids(EOT)
    groups = [{"params": list(model.parameters()), "lr": lr}]
    if gate is not None:
        groups.append({"params": list(gate.parameters()), "lr": gate_lr})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    curve = []
    for step in range(steps):
        exs = []
        for q in range(questions):
            pool = pools[(step * questions + q) % len(pools)]
            exs.append(pool[int(torch.randint(len(pool), (1,), generator=g))])
        prompts = [prompt_ids(e, tok) for e in exs for _ in range(group_size)]
        captured: dict = {}
        r = HRPO(gate=gate, latent=gate is not None, temperature=temperature, seed=seed * 100_003 + step,
                 max_new_tokens=max_new_tokens, captured=captured if gate is not None else None)  # fmt: skip
        model.eval()
        with torch.no_grad():
            out = r.generate(model, prompts, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        rewards = []
        for i, toks in enumerate(out.tokens):
            a = answer_of(toks, tok.eos_token_id)
            rewards.append(float(a is not None and tok.convert_ids_to_tokens(a) == exs[i // group_size].answer))
        rewards_t = torch.tensor(rewards)
        curve.append(float(rewards_t.mean()))
        if progress is not None:
            progress(step, curve[-1])
        adv = grpo_advantages(rewards_t, group_size)
        if not adv.abs().gt(0).any():
            continue
        model.train()
        seqs, starts = [], []
        for i, toks in enumerate(out.tokens):
            lat = torch.stack(captured[i]) if gate is not None and captured.get(i) else None
            seqs.append(rollout_inputs(model, gate, prompts[i], toks[:-1], lat, eot))
            starts.append(len(prompts[i]))
        T = max(len(s) for s in seqs)
        B, D = len(seqs), seqs[0].shape[1]
        x = torch.zeros(B, T, D)
        mask = torch.zeros(B, T, dtype=torch.long)
        for i, s in enumerate(seqs):
            x[i, : len(s)], mask[i, : len(s)] = s, 1
        logits = model(inputs_embeds=x, attention_mask=mask, position_ids=torch.arange(T).expand(B, T)).logits
        logp = torch.log_softmax(logits.float(), -1)
        loss = 0.0
        for i, toks in enumerate(out.tokens):
            pos = torch.arange(starts[i] - 1, starts[i] - 1 + len(toks))
            loss = loss - adv[i] * logp[i, pos, torch.tensor(toks)].mean()
        opt.zero_grad()
        (loss / B).backward()
        torch.nn.utils.clip_grad_norm_([p for grp in groups for p in grp["params"]], 1.0)
        opt.step()
    model.eval()
    return curve
