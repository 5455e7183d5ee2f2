"""The speculative-decoding interface: ``propose`` drafts, ``verify`` accepts; the base runs the loop.

    dec = tw.create("spec_sampling", k=4)
    out = dec.generate(target, **tok(prompts, return_tensors="pt", padding=True), draft=small, max_new_tokens=64)
    out.text(tok), out.stats.mean_accepted        # per-row token lists in out.tokens

Every step: ``propose(ctx)`` returns up to ``k`` draft tokens per row (and the draft's
distributions ``q`` when it samples); the base feeds the pending token and all drafts to the
target in one forward and hands the target's distributions ``p`` (k + 1 per row) to
``verify``, which returns how many drafts each row accepts and the token that follows them
(the correction or the bonus token). The default ``verify`` is exact speculative sampling
(Leviathan et al. 2023, Chen et al. 2023): draft ``x`` is accepted with probability
``min(1, p(x) / q(x))`` (``q = one-hot`` for a deterministic proposal), a rejection samples from
``norm(max(0, p - q))``, and after k acceptances a bonus token is drawn from ``p_{k+1}``. With
``do_sample=False`` it is greedy: drafts are accepted while they equal the target's argmax.

KV caches. Each model has one HF ``DynamicCache`` for the whole generation (a ``_Stream``):
its slots hold the prompt, the accepted tokens and, within a step, the drafts. Rows of a batch
accept different numbers of drafts; a rejected slot of one row is masked out in that row's 2-D
attention mask (a hole) and the cache is cropped back to the longest accepted row, so no
prefix is ever recomputed. Positions (``position_ids``) count a row's real tokens only, so a
left-padded row with holes computes what it would compute alone (tested against the target's
own ``generate`` and against a fresh forward over the accepted prefix).

Statistics (``out.stats``): per step the accepted drafts of every active row, target forwards
(one per step) and draft forwards; means over rows and steps.

Not supported, with a clear error: encoder-decoder models, models whose cache layers are not
full-attention ``DynamicLayer``s (sliding-window, static, quantized caches), draft and target
with different vocabulary sizes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from tokenworks.checks import check_float, check_int

__all__ = ["DecodeOutput", "DecodeStats", "ProposeContext", "SpeculativeDecoder", "check_causal_lm", "exact_verify"]


# --------------------------------------------------------------------------- model checks


def check_causal_lm(model, name: str) -> None:
    """A decoder-only HF causal LM whose caches are full-attention (cropable) ``DynamicLayer``s."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"{name} must be a Hugging Face PreTrainedModel (a decoder-only causal LM), got {type(model).__name__}")
    cfg = model.config
    if getattr(cfg, "is_encoder_decoder", False):
        raise TypeError(f"{name} must be a decoder-only causal LM; {type(model).__name__} is an encoder-decoder model")
    layer_types = getattr(cfg, "layer_types", None) or []
    sliding = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True) and cfg.model_type != "llama"
    if sliding or any("sliding" in str(t) or "chunk" in str(t) for t in layer_types):
        raise TypeError(
            f"{name} ({type(model).__name__}) uses sliding-window/chunked attention caches, which cannot be rolled back; "
            "speculative decoding needs full-attention DynamicCache layers (set config.sliding_window=None)"
        )


def _vocab(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0]) if model.get_output_embeddings() is not None else int(model.config.vocab_size)


def check_pair(target, draft) -> None:
    check_causal_lm(target, "target")
    if draft is None:
        return
    check_causal_lm(draft, "draft")
    vt, vd = _vocab(target), _vocab(draft)
    if vt != vd:
        raise ValueError(
            f"draft has a vocabulary of {vd} tokens but target has {vt}; speculative decoding needs two models "
            "that share one tokenizer (no vocabulary mapping is implemented)"
        )


# --------------------------------------------------------------------------- one model's cache


class _Stream:
    """One model's ``DynamicCache`` with a 2-D slot mask, per-row real-token counts, the
    tokens waiting to be fed (``pending``) and the distribution after the last fed token."""

    def __init__(self, model, input_ids: torch.Tensor, mask: torch.Tensor, keep_hidden: bool = False, prefill: bool = True) -> None:
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache(config=model.config)
        self.device = input_ids.device
        B, T = input_ids.shape
        self.mask = torch.zeros(B, 0, dtype=torch.long, device=self.device)
        self.tag = torch.zeros(B, 0, dtype=torch.long, device=self.device)  # -1 kept; j >= 0: draft j of this step
        self.nreal = torch.zeros(B, dtype=torch.long, device=self.device)
        self.pending: list[list[int]] = [[] for _ in range(B)]
        self.forwards = 0
        self.keep_hidden = keep_hidden
        self.hidden: torch.Tensor | None = None  # (B, d) last-layer state after the last fed slot
        self._checked = False
        if prefill:
            logits = self._forward(input_ids, mask.bool(), tags=None)
            self.last = logits[:, -1]  # (B, V) prompts are left-padded: the last slot is real
        else:  # the prompt waits and is fed with the first chunk (the target: prompt + first drafts)
            self.pending = [input_ids[b][mask[b].bool()].tolist() for b in range(B)]
            self.last = torch.zeros(B, 1, device=self.device)

    def _check_layers(self) -> None:
        from transformers.cache_utils import DynamicLayer

        for layer in self.cache.layers:
            if type(layer) is not DynamicLayer:
                raise TypeError(
                    f"{type(self.model).__name__}'s cache layer is {type(layer).__name__}; speculative decoding needs "
                    "full-attention DynamicCache layers (static, sliding-window and quantized caches cannot be rolled back)"
                )
        self._checked = True

    def _forward(self, ids: torch.Tensor, valid: torch.Tensor, tags: torch.Tensor | None) -> torch.Tensor:
        """Append ``ids`` (B, q) with their validity; returns logits (B, q, V) (float32)."""
        B, q = ids.shape
        pos = self.nreal[:, None] + valid.long().cumsum(1) - 1
        pos = pos.clamp(min=0)
        S = self.mask.shape[1]
        self.mask = torch.cat([self.mask, valid.long()], 1)
        self.tag = torch.cat([self.tag, tags if tags is not None else torch.full((B, q), -1, device=self.device)], 1)
        self.nreal = self.nreal + valid.long().sum(1)
        out = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=pos, past_key_values=self.cache,
            cache_position=torch.arange(S, S + q, device=self.device), use_cache=True, output_hidden_states=self.keep_hidden,
        )  # fmt: skip
        self.forwards += 1
        if not self._checked:
            self._check_layers()
        if self.keep_hidden:
            self.hidden = out.hidden_states[-1][:, -1].float()
        return out.logits.float()

    def feed(self, extra: torch.Tensor | None = None, extra_valid: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the pending tokens then ``extra`` (B, q) (tagged 0..q-1 for ``rollback``).

        Returns (B, q + 1, V): ``[:, 0]`` the distribution after the pending tokens (the one
        predicting ``extra[:, 0]``), ``[:, j]`` the one after ``extra[:, j - 1]``."""
        B = self.nreal.shape[0]
        P = max(len(p) for p in self.pending)
        q = 0 if extra is None else extra.shape[1]
        base_tag = 0 if extra is None or self.tag.numel() == 0 else max(int(self.tag.max()), -1) + 1  # drafts fed one at a time
        if P == 0 and q == 0:
            return self.last[:, None]
        ids = torch.zeros(B, P + q, dtype=torch.long, device=self.device)
        valid = torch.zeros(B, P + q, dtype=torch.bool, device=self.device)
        tags = torch.full((B, P + q), -1, dtype=torch.long, device=self.device)
        for b, p in enumerate(self.pending):
            if p:
                ids[b, P - len(p) : P] = torch.tensor(p, device=self.device)
                valid[b, P - len(p) : P] = True
        if q:
            ids[:, P:] = extra
            valid[:, P:] = extra_valid if extra_valid is not None else True
            tags[:, P:] = base_tag + torch.arange(q, device=self.device)
        logits = self._forward(ids, valid, tags)
        self.pending = [[] for _ in range(B)]
        if P == 0:
            dists = torch.cat([self.last[:, None], logits], 1)
        else:
            dists = logits[:, P - 1 :]
            empty = ~valid[:, P - 1]
            dists[empty, 0] = self.last[empty]
        self.last = dists[:, -1]
        return dists

    def rollback(self, keep: torch.Tensor) -> None:
        """Keep the first ``keep[b]`` drafts fed since the last rollback (masking the others),
        then crop the cache after the last slot any row still uses."""
        drop = (self.tag >= keep[:, None]) & (self.tag >= 0)
        self.mask = self.mask.masked_fill(drop, 0)
        self.tag = torch.full_like(self.tag, -1)
        used = self.mask.any(0).nonzero()
        end = int(used[-1]) + 1 if used.numel() else 0
        if end < self.mask.shape[1]:
            self.cache.crop(end)
            self.mask, self.tag = self.mask[:, :end], self.tag[:, :end]
        self.nreal = self.mask.sum(1)


# --------------------------------------------------------------------------- verification


def _probs(logits: torch.Tensor, temperature: float, do_sample: bool) -> torch.Tensor:
    """Logits -> the distribution tokens are drawn from: softmax(logits / T), or one-hot argmax."""
    if not do_sample:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits / temperature, -1)


def exact_verify(p: torch.Tensor, drafts: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor | None, generator: torch.Generator | None,
                 px: torch.Tensor | None = None):  # fmt: skip
    """Exact speculative sampling, vectorized over rows.

    p (B, k+1, V) target distributions; drafts (B, k); lengths (B,) drafts proposed per row;
    q (B, k, V) the draft's distributions, or None for a deterministic proposal (q = one-hot).
    Returns (accepted (B,), next_token (B,)). With one-hot ``p`` (greedy) this accepts while
    the draft equals the target's argmax and returns the argmax after the last accepted one.
    ``px`` (B, k) replaces the target probability of each draft in the acceptance test only
    (relaxed acceptance, P17); rejections still sample from ``norm(max(0, p - q))``."""
    B, k1, V = p.shape
    k = k1 - 1
    dev = p.device
    if k == 0:
        return torch.zeros(B, dtype=torch.long, device=dev), torch.multinomial(p[:, 0], 1, generator=generator)[:, 0]
    if px is None:
        px = p[:, :k].gather(2, drafts[..., None])[..., 0]  # (B, k)
    qx = torch.ones_like(px) if q is None else q.gather(2, drafts[..., None])[..., 0]
    ratio = torch.where(qx > 0, px / qx.clamp(min=1e-30), torch.zeros_like(px)).clamp(max=1.0)
    u = torch.rand(B, k, generator=generator, device=dev)
    ok = (u < ratio) & (torch.arange(k, device=dev)[None] < lengths[:, None])
    accepted = (~ok).cumsum(1).eq(0).sum(1)  # leading acceptances
    rows = torch.arange(B, device=dev)
    p_next = p[rows, accepted]  # (B, V)
    rejected = accepted < lengths
    if q is None:
        q_next = torch.nn.functional.one_hot(drafts.gather(1, accepted.clamp(max=k - 1)[:, None])[:, 0], V).float()
    else:
        q_next = q[rows, accepted.clamp(max=k - 1)]
    resid = (p_next - q_next).clamp(min=0)
    mass = resid.sum(-1, keepdim=True)
    resid = torch.where(mass > 0, resid / mass.clamp(min=1e-30), p_next)
    dist = torch.where(rejected[:, None], resid, p_next)
    return accepted, torch.multinomial(dist, 1, generator=generator)[:, 0]


# --------------------------------------------------------------------------- the base


@dataclass
class DecodeStats:
    """Per-step statistics of one ``generate`` call."""

    accepted: list[list[int]] = field(default_factory=list)  # per step: accepted drafts of each active row
    proposed: list[list[int]] = field(default_factory=list)  # per step: drafts proposed to each active row
    target_forwards: int = 0  # forwards of the target (the prompt is fed with the first drafts)
    draft_forwards: int = 0  # forwards of the draft model (the prefill included)
    new_tokens: int = 0  # tokens generated, all rows
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)  # method-specific statistics (e.g. LANTERN's TV bound)

    @property
    def steps(self) -> int:
        return len(self.accepted)

    @property
    def mean_accepted(self) -> float:
        """Mean tokens per target forward per row: accepted drafts + the target's own token."""
        n = [a for step in self.accepted for a in step]
        return 1.0 + sum(n) / max(1, len(n))

    @property
    def accepted_total(self) -> int:
        return sum(x for s in self.accepted for x in s)

    @property
    def rejections(self) -> int:
        """Verifications that rejected a draft (accepted fewer than were proposed)."""
        return sum(int(a < p) for sa, sp in zip(self.accepted, self.proposed) for a, p in zip(sa, sp))

    @property
    def acceptance_rate(self) -> float:
        """Per-draft-token acceptance ``a``: accepted / (accepted + rejected) drafts, counting only
        drafts the verification reached (those after the first rejection were never judged).
        Under i.i.d. acceptance this is the maximum-likelihood ``a`` of Leviathan et al.'s
        ``E[tokens per step] = (1 - a^(k+1)) / (1 - a)``."""
        a = self.accepted_total
        return a / (a + self.rejections) if a + self.rejections else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "mean_accepted": self.mean_accepted, "acceptance_rate": self.acceptance_rate,
            "target_forwards": self.target_forwards, "draft_forwards": self.draft_forwards, "new_tokens": self.new_tokens,
            "seconds": self.seconds, **self.extra,
        }  # fmt: skip


@dataclass
class DecodeOutput:
    tokens: list[list[int]]  # generated tokens per row (EOS included when it was generated)
    sequences: torch.Tensor  # (B, max new) generated tokens, right-padded with pad_token_id
    stats: DecodeStats

    def text(self, tokenizer, skip_special_tokens: bool = True) -> list[str]:
        return tokenizer.batch_decode(self.tokens, skip_special_tokens=skip_special_tokens)


@dataclass
class ProposeContext:
    """What ``propose`` sees: the token histories (prompt + generated, per row), which rows
    are active, the draft model's stream (None for model-free methods), decoding options."""

    history: list[list[int]]
    active: torch.Tensor  # (B,) bool
    draft: _Stream | None
    k: int
    do_sample: bool
    temperature: float
    generator: torch.Generator | None
    device: torch.device
    max_length: list[int]  # per row: history length at which the row stops
    eos: set[int] = field(default_factory=set)


@dataclass(kw_only=True)
class SpeculativeDecoder:
    """Base class: subclasses implement ``propose`` (and may override ``verify``)."""

    kind: ClassVar[str] = "spec_decoder"
    needs_draft: ClassVar[bool] = True

    k: int = 4  # draft tokens per step

    def __post_init__(self) -> None:
        check_int("k", self.k, min=1)

    # ---- the hooks
    def propose(self, ctx: ProposeContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> (drafts (B, k) long, lengths (B,) drafts per row (<= k), q (B, k, V) draft
        distributions or None for a deterministic proposal)."""
        raise NotImplementedError

    def verify(self, p: torch.Tensor, drafts: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor | None, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (accepted (B,), next token (B,)); default: exact speculative sampling."""
        return exact_verify(p, drafts, lengths, q, generator)

    # ---- helper for draft-model methods
    def draft_tokens(self, ctx: ProposeContext, greedy_draft: bool = False):
        """Run the draft model k tokens ahead (k - 1 or k forwards). Returns (drafts (B, k),
        q (B, k, V)): sampled from q unless ``greedy_draft`` or greedy decoding."""
        sample = ctx.do_sample and not greedy_draft
        B = ctx.active.shape[0]
        dists, toks = [], []
        logits = ctx.draft.feed()[:, -1]
        for i in range(ctx.k):
            qd = _probs(logits, ctx.temperature, sample)
            if sample:
                t = torch.multinomial(qd, 1, generator=ctx.generator)[:, 0]
            else:
                t = logits.argmax(-1)
            dists.append(qd)
            toks.append(t)
            if i < ctx.k - 1:
                logits = ctx.draft.feed(t[:, None], ctx.active[:, None])[:, -1]
        return torch.stack(toks, 1), torch.stack(dists, 1)

    # ---- the loop
    @torch.no_grad()
    def generate(
        self,
        target,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        draft=None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        seed: int | None = None,
        **unused: Any,
    ) -> DecodeOutput:
        """Generate up to ``max_new_tokens`` tokens per row of ``input_ids`` (B, T) (padding
        anywhere; ``attention_mask`` marks real tokens) with ``target``; ``draft`` is the
        draft model for methods that need one. EOS defaults to the target's
        ``generation_config.eos_token_id``; a row stops at EOS (included in its tokens)."""
        t0 = time.perf_counter()
        unused.pop("token_type_ids", None)
        if unused:
            raise TypeError(f"generate() got unexpected arguments {sorted(unused)}")
        if self.needs_draft and draft is None:
            raise ValueError(f"{type(self).__name__} needs a draft model: pass draft=<a HF causal LM sharing target's tokenizer>")
        if not self.needs_draft and draft is not None:
            raise ValueError(f"{type(self).__name__} is model-free; draft must be None")
        check_pair(target, draft)
        check_int("max_new_tokens", max_new_tokens, min=1)
        if do_sample:
            check_float("temperature", temperature, min=0.0, min_open=True)
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError(f"input_ids must be a (batch, length) integer tensor, got {getattr(input_ids, 'shape', type(input_ids))}")
        dev = next(target.parameters()).device
        input_ids = input_ids.to(dev)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(dev)
        if mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(mask.shape)}")
        if bool((mask.sum(1) == 0).any()):
            raise ValueError("attention_mask: every row needs at least one real token")
        if draft is not None and next(draft.parameters()).device != dev:
            raise ValueError(f"draft is on {next(draft.parameters()).device} but target is on {dev}; put both on one device")
        eos = eos_token_id if eos_token_id is not None else target.generation_config.eos_token_id
        eos_set = set([eos] if isinstance(eos, int) else (eos or []))
        pad = pad_token_id if pad_token_id is not None else (target.generation_config.pad_token_id or 0)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=dev).manual_seed(seed)

        # left-pad every row (real tokens last), whatever padding the caller used
        B, T = input_ids.shape
        order = torch.sort(mask.long(), dim=1, stable=True).indices
        ids, mask = input_ids.gather(1, order), mask.gather(1, order)
        history = [ids[b][mask[b].bool()].tolist() for b in range(B)]
        max_length = [len(h) + max_new_tokens for h in history]
        tgt = _Stream(target, ids, mask, prefill=False)  # the prompt goes with the first drafts
        drf = _Stream(draft, ids, mask) if draft is not None else None
        stats = DecodeStats()
        out: list[list[int]] = [[] for _ in range(B)]
        active = torch.ones(B, dtype=torch.bool, device=dev)
        while bool(active.any()):
            ctx = ProposeContext(history, active, drf, self.k, do_sample, temperature, gen, dev, max_length, eos_set)
            drafts, lengths, q = self.propose(ctx)
            lengths = torch.where(active, lengths.to(dev), torch.zeros_like(lengths, device=dev))
            K = drafts.shape[1]
            slot_ok = torch.arange(K, device=dev)[None] < lengths[:, None]
            logits = tgt.feed(drafts, slot_ok)  # (B, K + 1, V)
            p = _probs(logits, temperature, do_sample)
            if not do_sample and q is not None:
                q = None  # greedy: drafts are the draft's argmax; acceptance is equality
            accepted, nxt = self.verify(p, drafts, lengths, q, gen)
            accepted = torch.where(active, accepted, torch.zeros_like(accepted))
            tgt.rollback(accepted)
            if drf is not None:
                drf.rollback(accepted)
            stats.accepted.append([int(a) for a, on in zip(accepted.tolist(), active.tolist()) if on])
            stats.proposed.append([int(n) for n, on in zip(lengths.tolist(), active.tolist()) if on])
            acc_l, nxt_l, dr_l = accepted.tolist(), nxt.tolist(), drafts.tolist()
            for b in range(B):
                if not active[b]:
                    continue
                new = dr_l[b][: acc_l[b]] + [nxt_l[b]]
                room = max_length[b] - len(history[b])
                new = new[:room]
                stop = next((i for i, t in enumerate(new) if t in eos_set), None)
                if stop is not None:
                    new = new[: stop + 1]
                out[b].extend(new)
                history[b].extend(new)
                if stop is not None or len(history[b]) >= max_length[b]:
                    active[b] = False
                    continue
                tgt.pending[b] = [nxt_l[b]]
                if drf is not None:  # the draft never fed its last draft token
                    drf.pending[b] = ([dr_l[b][K - 1]] if acc_l[b] == K else []) + [nxt_l[b]]
        stats.target_forwards = tgt.forwards
        stats.draft_forwards = drf.forwards if drf is not None else 0
        stats.new_tokens = sum(len(o) for o in out)
        stats.seconds = time.perf_counter() - t0
        width = max(len(o) for o in out)
        seqs = torch.full((B, width), pad, dtype=torch.long)
        for b, o in enumerate(out):
            seqs[b, : len(o)] = torch.tensor(o, dtype=torch.long)
        return DecodeOutput(tokens=out, sequences=seqs, stats=stats)

    def extra_repr(self) -> str:  # pragma: no cover - cosmetic
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__dataclass_fields__)
