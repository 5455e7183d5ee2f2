"""The latent-reasoning interface: a reasoner wraps a Hugging Face causal LM and answers prompts
after latent (or mixed latent and token) steps.

``Reasoner.generate(model, prompts)`` prefills the (left-padded) prompts once into a
``transformers.DynamicCache``, then runs one forward per new position for the whole batch,
every input given as ``inputs_embeds`` (B, 1, D). Each row is in one of four phases:

1. *thinking*: the next input is the method's continuous thought, ``thought(model, h, step)``,
   computed from the last layer's hidden state ``h`` (B', D) at the row's last position;
   ``latent_steps`` thoughts at most, fewer when ``stop_thinking(logits)`` says so;
2. *closing*: the forced ``end_token_id`` (``<eot>``) is fed once after the thoughts;
3. *decoding*: greedy tokens until ``eos_token_id`` or ``max_new_tokens``;
4. *done*: a pad embedding is fed and the row's outputs are ignored.

The cache is reused across thoughts, so no prefix is recomputed (the official Coconut code
recomputes the whole prefix at every generation step). With ``latent_steps = 0`` nothing is
fed but tokens: the output equals the model's own greedy ``generate`` (tested).

Hooks a method may override: ``thought`` (the next latent input), ``stop_thinking`` (end the
latent chain early, from the logits and hidden state), ``token_input`` (the input after a
decoded token; HRPO mixes in a latent there), ``next_logits`` (the logits a token is chosen
from; System-1.5 exits early there), ``begin`` / ``extra_stats`` (method counters). With
``temperature > 0`` tokens are sampled (seeded), for RL rollouts.

Statistics (:class:`ReasonStats`): latent steps and generated tokens per row, batched forwards
(prefill included) and per-row forwards until the row finished, FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` over the whole call (``count_flops=True``; the
counter slows the call, so wall time is measured only without it), wall seconds.

Why a loop of our own rather than ``model.generate``: HF ``generate`` cannot feed a computed
embedding (a hidden state, a latent head's output) as the next input; the custom-generation
hooks work on token ids.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from tokenworks.checks import check_float, check_int

__all__ = ["ReasonOutput", "ReasonStats", "Reasoner", "answer_of", "left_pad"]

THINK, CLOSE, DECODE, DONE = 0, 1, 2, 3


@dataclass
class ReasonStats:
    latent_steps: list[int]
    generated_tokens: list[int]
    forwards: int  # batched forwards, prefill included
    row_forwards: list[int]  # forwards each row took part in until it finished
    flops: float | None = None  # whole call, all rows (FlopCounterMode)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)  # method-specific counts (e.g. layers run by System-1.5)


@dataclass
class ReasonOutput:
    tokens: list[list[int]]  # generated token ids per row (forced tokens not included), eos kept
    stats: ReasonStats


def left_pad(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both (B, T), prompts aligned to the right."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts: need at least one prompt, and no empty prompt")
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, T - len(p) :] = torch.as_tensor(p, dtype=torch.long)
        mask[i, T - len(p) :] = 1
    return ids, mask


def answer_of(tokens: list[int], eos_token_id: int) -> int | None:
    """The answer token: the one just before ``<eos>`` (the last one when there is no eos)."""
    if eos_token_id in tokens:
        tokens = tokens[: tokens.index(eos_token_id)]
    return tokens[-1] if tokens else None


def check_embeds_model(model) -> None:
    """A clear error for a model that cannot take ``inputs_embeds``."""
    if not hasattr(model, "get_input_embeddings") or not callable(getattr(model, "forward", None)):
        raise ValueError(f"model: a Hugging Face causal LM with get_input_embeddings() is needed, got {type(model).__name__}")
    params = inspect.signature(model.forward).parameters
    if "inputs_embeds" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(f"model: {type(model).__name__}.forward does not accept inputs_embeds, which latent reasoning needs")


@dataclass(kw_only=True)
class Reasoner:
    """Base class: options common to every reasoner and the generation mechanics.

    A method overrides :meth:`thought` (and optionally :meth:`stop_thinking`)."""

    kind: ClassVar[str] = "reasoner"
    uses_latents: ClassVar[bool] = True

    latent_steps: int = 0
    max_new_tokens: int = 64
    end_token_id: int | None = None
    temperature: float = 0.0  # 0: greedy; > 0: tokens sampled at this temperature (RL rollouts)
    seed: int = 0  # of the sampling generator

    def __post_init__(self) -> None:
        check_int("latent_steps", self.latent_steps, min=0, max=4096)
        check_int("max_new_tokens", self.max_new_tokens, min=1, max=1_000_000)
        if self.end_token_id is not None:
            check_int("end_token_id", self.end_token_id, min=0)
        check_float("temperature", self.temperature, min=0.0, max=100.0)
        check_int("seed", self.seed, min=0)

    @property
    def needs_hidden(self) -> bool:
        """Whether the loop must return the last hidden states (latent steps or a hook using them)."""
        return self.latent_steps > 0

    # -- the hooks ---------------------------------------------------------------------------
    def thought(self, model, hidden: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """The next input embedding (B, D) of the rows still thinking, from their last hidden
        state ``hidden`` (B, D); ``step`` (B,) counts the thoughts each row has had."""
        raise NotImplementedError(f"{type(self).__name__} does not define thought()")

    def stop_thinking(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor | None:
        """Rows (B,) bool that end their latent chain now (before ``latent_steps``), from the
        last position's ``logits`` (B, V) and last-layer ``hidden`` (B, D); None: never."""
        return None

    def next_logits(self, model, out) -> torch.Tensor:
        """Logits (B, V) the next token is chosen from (default: the last layer's)."""
        return out.logits[:, -1]

    def begin(self, batch: int) -> None:
        """Called before each generation (a method resets its own counters here)."""

    def extra_stats(self) -> dict:
        """Method-specific statistics of the last generation (``ReasonStats.extra``)."""
        return {}

    def token_input(self, model, tokens: torch.Tensor, logits: torch.Tensor, hidden: torch.Tensor | None,
                    in_chain: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The input embedding (B', D) after decoding ``tokens`` (B',) from ``logits`` (B', V);
        ``in_chain`` (B',) tells the rows whose decoded chain is still open (no ``end_token_id``
        decoded yet, this token included); ``rows`` (B',) are their indices in the batch.
        Default: the token's embedding."""
        return model.get_input_embeddings()(tokens)

    # -- the mechanics -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        model,
        prompts: list[list[int]] | torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        eos_token_id: int,
        pad_token_id: int = 0,
        count_flops: bool = False,
    ) -> ReasonOutput:
        """Answer ``prompts`` (lists of ids, or left-padded (B, T) ids with their mask)."""
        from torch.utils.flop_counter import FlopCounterMode

        check_embeds_model(model)
        if isinstance(prompts, torch.Tensor):
            ids = prompts
            mask = torch.ones_like(ids) if attention_mask is None else attention_mask.long()
            if ids.dim() != 2 or mask.shape != ids.shape:
                raise ValueError(f"prompts: expected (B, T) ids with a mask of the same shape, got {tuple(ids.shape)} and {tuple(mask.shape)}")
            if (mask[:, 1:] < mask[:, :-1]).any() or not mask[:, -1].all():
                raise ValueError("attention_mask: prompts must be left-padded (zeros only before the tokens)")
        else:
            ids, mask = left_pad([list(p) for p in prompts], pad_token_id)
        dev = next(model.parameters()).device
        ids, mask = ids.to(dev), mask.to(dev)
        counter = FlopCounterMode(display=False) if count_flops else None
        t0 = time.perf_counter()
        if counter is not None:
            with counter:
                out = self._loop(model, ids, mask, eos_token_id, pad_token_id)
            out.stats.flops = float(counter.get_total_flops())
        else:
            out = self._loop(model, ids, mask, eos_token_id, pad_token_id)
        out.stats.seconds = time.perf_counter() - t0
        return out

    def _loop(self, model, ids, mask, eos: int, pad: int) -> ReasonOutput:
        from transformers import DynamicCache

        B = ids.shape[0]
        dev = ids.device
        emb = model.get_input_embeddings()
        self.begin(B)
        hidden_needed = self.needs_hidden
        g = torch.Generator(device=dev).manual_seed(self.seed) if self.temperature > 0 else None
        chain_open = torch.ones(B, dtype=torch.bool, device=dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        cache = DynamicCache()
        out = model(inputs_embeds=emb(ids), attention_mask=mask, position_ids=pos, past_key_values=cache,
                    use_cache=True, output_hidden_states=hidden_needed)  # fmt: skip
        forwards, row_forwards = 1, torch.ones(B, dtype=torch.long)
        last_pos = pos[:, -1]
        phase = torch.full((B,), THINK if self.latent_steps > 0 else DECODE, device=dev)
        n_latent = torch.zeros(B, dtype=torch.long, device=dev)
        tokens: list[list[int]] = [[] for _ in range(B)]
        pad_vec = emb(torch.tensor([pad], device=dev))[0]
        while True:
            logits = self.next_logits(model, out)  # (B, V)
            h = out.hidden_states[-1][:, -1] if hidden_needed else None  # (B, D)
            if self.latent_steps > 0:
                stop = self.stop_thinking(logits, h)
                if stop is not None:
                    phase = torch.where((phase == THINK) & stop.to(dev), torch.full_like(phase, CLOSE if self.end_token_id is not None else DECODE), phase)
            if g is None:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(torch.softmax(logits.float() / self.temperature, -1), 1, generator=g)[:, 0]
            for r in (phase == DECODE).nonzero().flatten().tolist():
                t = int(nxt[r])
                tokens[r].append(t)
                if t == eos or len(tokens[r]) >= self.max_new_tokens:
                    phase[r] = DONE
            if bool((phase == DONE).all()):
                break
            x = pad_vec.expand(B, -1).clone()  # (B, D)
            think = phase == THINK
            if think.any():
                x[think] = self.thought(model, h[think], n_latent[think]).to(x.dtype)
            close = phase == CLOSE
            if close.any():
                x[close] = emb(torch.tensor([self.end_token_id], device=dev))[0]
            dec = phase == DECODE
            if dec.any():
                if self.end_token_id is not None:
                    chain_open &= ~(dec & (nxt == self.end_token_id))
                x[dec] = self.token_input(model, nxt[dec], logits[dec], None if h is None else h[dec], chain_open[dec],
                                          dec.nonzero().flatten()).to(x.dtype)  # fmt: skip
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=dev)], dim=1)
            last_pos = last_pos + 1
            out = model(inputs_embeds=x[:, None], attention_mask=mask, position_ids=last_pos[:, None], past_key_values=cache,
                        use_cache=True, output_hidden_states=hidden_needed)  # fmt: skip
            forwards += 1
            row_forwards += (phase != DONE).long().cpu()
            # phase transitions after the forward
            n_latent = n_latent + think.long()
            after_think = CLOSE if self.end_token_id is not None else DECODE
            phase = torch.where(think & (n_latent >= self.latent_steps), torch.full_like(phase, after_think), phase)
            phase = torch.where(close, torch.full_like(phase, DECODE), phase)
        stats = ReasonStats(
            latent_steps=n_latent.tolist(), generated_tokens=[len(t) for t in tokens], forwards=forwards,
            row_forwards=row_forwards.tolist(), extra=self.extra_stats(),
        )  # fmt: skip
        return ReasonOutput(tokens=tokens, stats=stats)
