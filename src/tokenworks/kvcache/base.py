"""The KV-cache policy interface: one scoring hook, the base class does the mechanics.

    policy = tw.create("lazy_eviction", budget=0.5)    # a fraction of the context, or a token count
    policy.attach(model)                                # any HF decoder: Llama, Qwen2, Mistral, ...
    out = model.generate(**inputs, max_new_tokens=64)   # unchanged; batches with left padding work
    policy.detach()                                     # or: with policy(model): ...

How it hooks a model. ``attach`` routes the model's attention through one function registered
in transformers' ``AttentionInterface`` (and a mask function in ``AttentionMaskInterface`` that
defers to the original one). That function runs the model's own attention implementation
(``sdpa`` or ``eager``) on the keys and values the cache holds, then lets the policy score the
held tokens and writes the kept ones back into the ``DynamicCache`` layer: memory is really
freed. Two forward pre-hooks (on the decoder and on each attention module) hand it the 2-D
padding mask and the cache object. Nothing else of the model changes; ``detach`` restores it.

Bookkeeping per cache layer (stored on the cache object, so each ``generate`` call starts
fresh): for every held slot its real position (index among the row's non-padding tokens),
whether it is a real token, and the method's per-token state (``token_state``). Positions are
counted without padding, so a left-padded row behaves exactly as the same row alone: padding
is never attended and is evicted first, rows whose budget is smaller than the longest row's
keep masked empty slots. While a layer has never been compressed the model's own mask is
passed through unchanged, so a policy that keeps everything gives bit-identical logits.

The hook: ``score(view) -> (B, Hkv, K) | None``, called on every forward of every layer, after
attention for evicting policies and before it for sparse ones (``evicts = False``). Higher
scores are kept; ``+inf`` marks tokens that must never be dropped (sinks, recent windows),
``-inf`` is set by the base for padding and empty slots. ``None`` means "nothing to do now".
The base then keeps, per row and head, the top ``cap`` tokens and gathers keys, values and
state. The budget is what is *held*: ``cap`` is ``ceil(budget x real tokens seen)`` for a
fraction, ``min(budget, real tokens)`` for a count, and protected (``+inf``) tokens count
against it (when they alone exceed it, the most recent of them stay: ties go to the later
token). A lagged policy (``compress_every() > 1``) compresses ahead of its lag, to ``cap -
(lag - 1)``, so that after every forward the cache holds at most ``ceil(budget x seen)``
tokens; the lag is ``compress_every()`` but at most half the budget. (During one forward the
new token is attended before the eviction: ``cap + 1`` slots at most.) A sparse policy
(``evicts = False``) holds everything and, in its sparse layers, attends to the top ``cap``
held tokens (per query head or per kv head). When the base compresses is set by ``phase``
("prefill", "decode", "both", "never"). Attention probabilities are computed only on demand
(``view.probs(last=n)`` for the last n queries, ``view.column_sums()`` in query chunks).

Hot path. Counts (tokens seen, held per row, caps) are kept on the host, so a decoding step
makes no device-to-host sync per layer (one per forward to read a padding mask when one is
passed, none otherwise); a forward of one new token over a cache of real tokens passes no mask;
``full`` (keeps everything) calls the model's own attention directly.

Models. Full-attention layers are managed; sliding-window layers of hybrid models (Gemma2,
Gemma3: ``config.layer_types``) keep their own window and are left alone. A model whose every
layer is sliding-window (Mistral v0.1 or Phi-3 with ``config.sliding_window`` set) is refused
at ``attach`` with advice (``config.sliding_window = None``). If the model builds a cache but
no attention layer receives it (past_key_values not passed to ``self_attn``, or attention not
routed through ``AttentionInterface``), the forward raises instead of running without policy.

Not supported, with a clear error: static/offloaded/quantized caches, beam search (the cache is
reordered behind the policy's back) and attention implementations other than ``sdpa``/``eager``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from tokenworks.checks import check_choice, check_float, check_int

__all__ = ["ATTN_IMPLEMENTATION", "KVPolicy", "LayerView", "kv_bytes"]

ATTN_IMPLEMENTATION = "tokenworks_kv"
_STATE_ATTR = "_tokenworks_kv_state"
_POLICY_ATTR = "_tokenworks_kv_policy"
_ORIG_ATTR = "_tokenworks_kv_orig"
_SUPPORTED_IMPL = ("sdpa", "eager")


def kv_bytes(cache) -> int:
    """Bytes of keys and values a ``DynamicCache`` holds right now (all layers)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class _LayerState:
    pos: torch.Tensor  # (B, Hkv, K) long: real position of each held slot (-1: padding/empty)
    valid: torch.Tensor  # (B, Hkv, K) bool
    state: dict[str, torch.Tensor]  # per-token method state, (B, Hkv, K) each
    n_valid: list[int]  # real tokens held per row (the same in every kv head), tracked on the host
    seen_host: list[int] = field(default_factory=list)  # real tokens seen per row when last updated
    compressed: bool = False


@dataclass
class _CacheState:
    count: torch.Tensor  # (B,) real tokens seen so far per row
    seen: int = 0  # tokens seen (padding included)
    step: int = -1  # forwards seen (0 = prefill)
    forward_id: int = -1
    qpos: torch.Tensor | None = None  # (B, q) real positions of the current chunk
    qvalid: torch.Tensor | None = None  # (B, q)
    all_valid: bool = True
    cap: torch.Tensor | None = None  # (B,) tokens kept at a compression of this forward, per row
    cap_host: list[int] = field(default_factory=list)  # the same on the host
    count_host: list[int] = field(default_factory=list)  # real tokens seen per row, on the host
    cap_min: int = 0
    lag: int = 1  # forwards until the next compression, set at each compression
    next_compress: int = 0  # the step of the next scheduled compression
    compress_step: bool = False  # does this forward compress?
    layers: dict[int, _LayerState] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)


def _repeat_heads(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, Hkv, ...) -> (B, Hkv * groups, ...), each kv head repeated for its query heads."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


class LayerView:
    """What ``score`` sees for one layer and one forward.

    Tensors: ``query`` (B, H, q, D) post-RoPE queries of this forward; ``keys``/``values``
    (B, Hkv, K, D) everything the layer holds, the q new tokens last; ``pos``/``valid``
    (B, Hkv, K) real position and validity of each held slot; ``qpos``/``qvalid`` (B, q);
    ``state`` the method's per-token tensors (B, Hkv, K), to read and update in place
    (assign ``view.state[name] = tensor``); ``cap`` (B,) tokens kept per row at a compression
    of this forward (the budget less the lag, see the module docstring); ``lag`` forwards until
    the next compression;
    ``count`` (B,) real tokens seen so far per row.
    Scalars: ``layer``, ``num_layers``, ``step`` (0 for the first forward, the prefill),
    ``prefill``, ``compress`` (True when the base will compress after this call if scores
    are returned), ``groups`` (H // Hkv) and ``scaling``. ``shared`` is a dict shared by all
    layers of one cache (TidalDecode keeps its selection there).
    """

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self._probs: dict[int, torch.Tensor] = {}

    # (B, H, n, K) boolean: may query i (of the last n) see held slot j?  (padding queries: nothing)
    def _mask(self, n: int) -> torch.Tensor:
        allowed = getattr(self, "allowed", None)  # (B, H, q, K), built once per layer call by the base
        if allowed is None:
            pos = _repeat_heads(self.pos, self.groups)[:, :, None, :]
            valid = _repeat_heads(self.valid, self.groups)[:, :, None, :]
            allowed = valid & (pos <= self.qpos[:, None, :, None])
            self.allowed = allowed
        m = allowed[:, :, -n:]
        return m if self.all_queries_valid else m & self.qvalid[:, None, -n:, None]

    def logits(self, last: int | None = None) -> torch.Tensor:
        """Masked attention logits of the last ``last`` queries (all by default): (B, H, n, K)."""
        n = self.query.shape[2] if last is None else min(last, self.query.shape[2])
        k = _repeat_heads(self.keys, self.groups)
        s = torch.matmul(self.query[:, :, -n:].float(), k.transpose(2, 3).float()) * self.scaling
        return s.masked_fill(~self._mask(n), float("-inf"))

    def probs(self, last: int | None = None) -> torch.Tensor:
        """Attention probabilities of the last ``last`` queries over held slots: (B, H, n, K).

        Rows of padding queries are all zero. Reuses the weights of ``eager`` attention when
        the model returned them."""
        n = self.query.shape[2] if last is None else min(last, self.query.shape[2])
        if n not in self._probs:
            w = getattr(self, "weights", None)
            mask = self._mask(n)
            if w is not None and w.shape[-1] == self.keys.shape[2]:
                p = w[:, :, -n:].float() * mask
            else:
                k = _repeat_heads(self.keys, self.groups)
                s = torch.matmul(self.query[:, :, -n:].float(), k.transpose(2, 3).float()) * self.scaling
                p = torch.softmax(s.masked_fill(~mask, torch.finfo(s.dtype).min), dim=-1)
                if not self.all_queries_valid:
                    p = p * self.qvalid[:, None, -n:, None]
            self._probs[n] = p
        return self._probs[n]

    def iter_probs(self, chunk: int = 128) -> Iterator[tuple[slice, torch.Tensor]]:
        """Probabilities of all queries of this forward, ``chunk`` queries at a time (never
        the full (q x K) matrix at once): yields ``(query slice, (B, H, c, K))``."""
        q = self.query.shape[2]
        if q <= chunk:
            yield slice(0, q), self.probs()
            return
        k = _repeat_heads(self.keys, self.groups).float()
        pos = _repeat_heads(self.pos, self.groups)[:, :, None, :]
        valid = _repeat_heads(self.valid, self.groups)[:, :, None, :]
        for s in range(0, q, chunk):
            sl = slice(s, min(q, s + chunk))
            logits = torch.matmul(self.query[:, :, sl].float(), k.transpose(2, 3)) * self.scaling
            m = valid & (pos <= self.qpos[:, None, sl, None]) & self.qvalid[:, None, sl, None]
            yield sl, torch.softmax(logits.masked_fill(~m, float("-inf")), dim=-1).nan_to_num(0.0)

    def column_sums(self, chunk: int = 128) -> torch.Tensor:
        """Attention each held slot received, summed over all queries of this forward: (B, H, K)."""
        out = self.keys.new_zeros((self.keys.shape[0], self.query.shape[1], self.keys.shape[2]), dtype=torch.float32)
        for _, p in self.iter_probs(chunk):
            out += p.sum(2)
        return out

    def per_kv_head(self, x: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
        """(B, H, ...) per query head -> (B, Hkv, ...) by ``reduce`` over each kv head's group."""
        if self.groups == 1:
            return x
        x = x.view(x.shape[0], -1, self.groups, *x.shape[2:])
        return getattr(x, reduce)(2) if reduce != "max" else x.amax(2)


# --------------------------------------------------------------------------- the base class


@dataclass(kw_only=True, eq=False)
class KVPolicy:
    """Base of every KV-cache policy: a ``@dataclass(kw_only=True, eq=False)`` whose fields are
    its options, implementing ``score``. ``budget`` is a fraction in (0, 1] of the real tokens
    seen so far, or a token count >= 1 (an int)."""

    kind: ClassVar[str] = "kv_policy"
    phase: ClassVar[str] = "both"  # when the base compresses: "prefill", "decode", "both", "never"
    evicts: ClassVar[bool] = True  # False: sparse attention on the top-cap tokens, nothing dropped
    token_state: ClassVar[dict[str, float]] = {}  # per-token state: name -> value for new tokens

    budget: float | int = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)):
            raise TypeError(f"budget must be a fraction in (0, 1] or a token count >= 1, got {self.budget!r}")
        if isinstance(self.budget, int):
            check_int("budget", self.budget, min=1)
        else:
            check_float("budget", self.budget, min=0.0, max=1.0, min_open=True)
        check_choice("phase", self.phase, ("prefill", "decode", "both", "never"))
        self.validate()
        self._model = None
        self._handles: list = []
        self._forward_id = 0
        self._pending_mask: torch.Tensor | None = None
        self.record_recall = False  # sparse policies: measure attention recall (bench diagnostics)
        self.last_selection: dict[int, torch.Tensor] = {}
        self.reset_stats()

    # ---- hooks for subclasses
    def validate(self) -> None:
        """Check option fields (raise naming the field)."""

    @abstractmethod
    def score(self, view: LayerView) -> torch.Tensor | None:
        """Per held token scores (B, Hkv, K) (sparse policies may return (B, H, K)), or None."""

    def on_attach(self, model, num_layers: int) -> None:
        """Check options that depend on the model (e.g. layer indices); no-op by default."""

    def compress_every(self) -> int:
        """Decode steps between compressions (1: every step; >1: lagged eviction)."""
        return 1

    def check_window(self, name: str, window: int) -> None:
        """For a count budget, a protected window must fit in it (clear error otherwise)."""
        if isinstance(self.budget, int) and window > self.budget:
            raise ValueError(
                f"{name}={window} is larger than the budget ({self.budget} tokens); lower {name} or raise budget"
            )

    def adopt(self, cache) -> None:
        """Start tracking a ``DynamicCache`` that already holds tokens filled outside the policy
        (random keys and values for a speed test, a reused prefix): every row's held tokens
        count as real tokens at positions 0..K-1 that the policy has not scored (per-token state
        at its initial values). The next forward is a decoding step; an evicting policy
        compresses at it. Call after ``attach``."""
        if self._model is None:
            raise ValueError("adopt() needs the policy attached to a model first")
        if getattr(cache, _STATE_ATTR, None) is not None:
            raise ValueError("this cache is already tracked by a policy")
        ref = next((cache.layers[i] for i in sorted(self._managed) if i < len(cache.layers)), None)
        if ref is None or not isinstance(getattr(ref, "keys", None), torch.Tensor):
            raise ValueError("cache holds no keys for the policy's layers; fill it first")
        B, Hkv, K, _ = ref.keys.shape
        dev = ref.keys.device
        st = _CacheState(count=torch.full((B,), K, dtype=torch.long, device=dev), count_host=[K] * B, seen=K, step=0)
        for i in sorted(self._managed):
            layer = cache.layers[i]
            _check_layer(layer)
            if layer.keys.shape[:3] != (B, Hkv, K):
                raise ValueError(f"cache layer {i} holds {tuple(layer.keys.shape[:3])} slots, layer {sorted(self._managed)[0]} {(B, Hkv, K)}")
            pos = torch.arange(K, device=dev).expand(B, Hkv, K).clone()
            state = {n: torch.full((B, Hkv, K), v, dtype=torch.float32, device=dev) for n, v in self.token_state.items()}
            st.layers[i] = _LayerState(pos=pos, valid=torch.ones(B, Hkv, K, dtype=torch.bool, device=dev), state=state,
                                       n_valid=[K] * B, seen_host=[K] * B)  # fmt: skip
        setattr(cache, _STATE_ATTR, st)

    # ---- instrumentation
    def reset_stats(self) -> None:
        """Zero the counters in ``self.stats`` (policy seconds, calls, evictions, recall)."""
        self.stats: dict[str, float] = {"policy_seconds": 0.0, "calls": 0, "compressions": 0, "recall_sum": 0.0, "recall_n": 0}

    # ---- attaching
    def __call__(self, model):
        """``with policy(model): model.generate(...)``: attached inside the block only."""
        return self._context(model)

    @contextlib.contextmanager
    def _context(self, model):
        self.attach(model)
        try:
            yield model
        finally:
            self.detach()

    def attach(self, model) -> KVPolicy:
        """Route ``model``'s attention through this policy (until ``detach``). Returns self."""
        if getattr(model, _POLICY_ATTR, None) is not None:
            raise ValueError("model already has a KV policy attached; call detach() on it first")
        decoder, attns = _check_model(model)
        if self._model is not None:
            raise ValueError("this policy is already attached to a model; detach() it first")
        _register_interfaces()
        config = model.config
        orig = config._attn_implementation
        setattr(config, _ORIG_ATTR, orig)
        config._attn_implementation = ATTN_IMPLEMENTATION
        self._num_layers = len(attns)
        self._managed = {i for i, k in enumerate(_layer_kinds(model.config, len(attns))) if k == "full"}
        try:
            self.on_attach(model, len(attns))
        except Exception:
            config._attn_implementation = orig
            raise
        self._handles = [
            decoder.register_forward_pre_hook(self._on_forward, with_kwargs=True),
            decoder.register_forward_hook(self._after_forward, with_kwargs=True),
        ]
        for a in attns:
            setattr(a, _POLICY_ATTR, self)
            self._handles.append(a.register_forward_pre_hook(_on_attention, with_kwargs=True))
        setattr(model, _POLICY_ATTR, self)
        self._model = model
        self._orig_impl = orig
        return self

    def detach(self) -> None:
        """Restore the model as it was before ``attach``."""
        model = self._model
        if model is None:
            return
        for h in self._handles:
            h.remove()
        self._handles = []
        _, attns = _check_model(model, check_impl=False)
        for a in attns:
            for attr in (_POLICY_ATTR, "_tokenworks_kv_cache"):
                if hasattr(a, attr):
                    delattr(a, attr)
        model.config._attn_implementation = self._orig_impl
        delattr(model, _POLICY_ATTR)
        self._model = None

    # ---- per forward: the padding mask and, for manual calls, true cache positions
    def _on_forward(self, module, args, kwargs):
        self._forward_id += 1
        self._saw_cache = False
        mask = kwargs.get("attention_mask")
        self._pending_mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
        cache = kwargs.get("past_key_values")
        st = getattr(cache, _STATE_ATTR, None) if cache is not None else None
        if st is not None and kwargs.get("cache_position") is None:
            ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
            if ids is None and args:
                ids = args[0]
            q = ids.shape[1]
            kwargs["cache_position"] = torch.arange(st.seen, st.seen + q, device=ids.device)
            if kwargs.get("position_ids") is None:
                kwargs["position_ids"] = kwargs["cache_position"][None]
            return args, kwargs
        return None

    def _after_forward(self, module, args, kwargs, output):
        cache = getattr(output, "past_key_values", None)
        if cache is not None and not self._saw_cache and self._managed:
            raise RuntimeError(
                f"{type(self).__name__}: the model built a KV cache but none reached its attention layers, so the "
                f"policy could not act; {type(module).__name__}'s layers must pass past_key_values by keyword to "
                "self_attn and call the attention function through transformers' AttentionInterface (as Llama, "
                "Qwen2, Mistral do); this model is not supported"
            )
        return None

    # ---- the attention call
    def _attend(self, module, orig_fn, query, key, value, attention_mask, kwargs) -> tuple[torch.Tensor, Any]:
        cache = getattr(module, "_tokenworks_kv_cache", None)
        if cache is None:  # no cache (e.g. a training forward): nothing to manage
            return orig_fn(module, query, key, value, attention_mask, **kwargs)
        self._saw_cache = True
        layer_idx = module.layer_idx
        if layer_idx not in self._managed:  # a sliding-window layer: its own window bounds it
            return orig_fn(module, query, key, value, attention_mask, **kwargs)
        layer = cache.layers[layer_idx]
        _check_layer(layer)
        if self.phase == "never" and self.evicts:  # keeps everything: the model's own attention, no bookkeeping
            self.stats["calls"] += 1
            return orig_fn(module, query, key, value, attention_mask, **kwargs)
        t0 = time.perf_counter()
        scaling = kwargs.get("scaling")
        cs = self._cache_state(cache, query)
        ls = self._layer_state(cs, layer_idx, key, query.shape[2])
        B, Hkv, K, _ = key.shape
        groups = query.shape[1] // Hkv
        # nothing can be evicted while the layer holds no more real tokens than each row's cap
        compress = (
            self.evicts and self.phase != "never" and cs.compress_step
            and any(n > c for n, c in zip(ls.n_valid, cs.cap_host))
        )  # fmt: skip
        view = LayerView(
            layer=layer_idx, num_layers=self._num_layers, step=cs.step, prefill=cs.step == 0, compress=compress,
            query=query, keys=key, values=value, pos=ls.pos, valid=ls.valid, qpos=cs.qpos, qvalid=cs.qvalid,
            state=ls.state, cap=cs.cap, count=cs.count, groups=groups, scaling=scaling if scaling is not None else module.scaling,
            shared=cs.shared, weights=None, all_queries_valid=cs.all_valid, module=module,
            softcap=getattr(module.config, "attn_logit_softcapping", None), n_valid=ls.n_valid, cap_host=cs.cap_host,
            lag=cs.lag,
        )  # fmt: skip
        self.stats["calls"] += 1
        if not self.evicts:
            out = self.sparse_attend(view)
            if out is None:  # full attention (or the budget covers every token)
                mask = self._mask_for(ls, cs, attention_mask, key, groups, query, view)
                out = orig_fn(module, query, key, value, mask, **kwargs)
            self.stats["policy_seconds"] += time.perf_counter() - t0
            return out
        mask = self._mask_for(ls, cs, attention_mask, key, groups, query, view)
        t_mid = time.perf_counter()
        out, w = orig_fn(module, query, key, value, mask, **kwargs)
        t_after = time.perf_counter()
        view.weights = w
        scores = self.score(view)
        if compress and scores is not None:
            self._compress(layer, ls, view, scores)
        self.stats["policy_seconds"] += (t_mid - t0) + (time.perf_counter() - t_after)
        return out, w

    def sparse_attend(self, view: LayerView):
        """Sparse policies (``evicts = False``): the layer's attention output ``(out, weights)``,
        or None for the model's own full attention. The default attends to the top-cap slots of
        ``score``; a policy may override it."""
        scores = self.score(view)
        if scores is None:
            return None
        selection = self._select(view, scores)
        if selection[2]:
            return None
        return self._sparse_attention(view, selection[0], selection[1], view.layer)

    # ---- state handling
    def _cache_state(self, cache, query) -> _CacheState:
        st = getattr(cache, _STATE_ATTR, None)
        q = query.shape[2]
        B = query.shape[0]
        if st is None:
            st = _CacheState(count=torch.zeros(B, dtype=torch.long, device=query.device), count_host=[0] * B)
            setattr(cache, _STATE_ATTR, st)
        if st.forward_id != self._forward_id:  # first layer of a new forward
            st.forward_id = self._forward_id
            st.step += 1
            if st.count.shape[0] != B:
                raise RuntimeError(
                    f"the cache holds {st.count.shape[0]} rows but the input has {B}: beam search and other cache "
                    "reordering are not supported with a KV policy (use greedy or sampling)"
                )
            mask = self._pending_mask
            if mask is not None:
                if mask.shape[0] != B or mask.shape[1] < q:
                    raise ValueError(f"attention_mask must have shape (batch, >= {q}), got {tuple(mask.shape)}")
                qvalid = mask[:, -q:].to(device=query.device, dtype=torch.bool)
                new = qvalid.long().sum(1).tolist()  # the one host sync of a forward (none without a padding mask)
            else:
                qvalid = torch.ones(B, q, dtype=torch.bool, device=query.device)
                new = [q] * B
            st.qvalid = qvalid
            st.qpos = torch.where(qvalid, st.count[:, None] + qvalid.long().cumsum(1) - 1, torch.full_like(st.count[:, None], -1))
            st.count = st.count + qvalid.long().sum(1) if mask is not None else st.count + q
            st.count_host = [c + n for c, n in zip(st.count_host, new)]
            st.all_valid = all(n == q for n in new)
            self._schedule(st)
            st.cap_host = self._cap(st)
            st.cap = torch.tensor(st.cap_host, dtype=torch.long).to(query.device, non_blocking=True)
            st.cap_min = min(st.cap_host)
            st.seen += q
            if st.step == 0 and self.phase == "prefill" and isinstance(self.budget, int):
                short = min(st.count_host)
                if self.budget > short:
                    raise ValueError(
                        f"budget={self.budget} tokens is larger than the context ({short} tokens in the shortest row); "
                        f"{type(self).__name__} compresses the prompt only, so use a smaller count or a fraction"
                    )
            self.last_selection = {}
            st.shared.pop("_topk_memo", None)
        return st

    def _layer_state(self, cs: _CacheState, layer_idx: int, key: torch.Tensor, q: int) -> _LayerState:
        B, Hkv, K, _ = key.shape
        ls = cs.layers.get(layer_idx)
        new_pos = cs.qpos[:, None, :].expand(B, Hkv, q)
        new_valid = cs.qvalid[:, None, :].expand(B, Hkv, q)
        new_state = {n: torch.full((B, Hkv, q), v, dtype=torch.float32, device=key.device) for n, v in self.token_state.items()}
        new_n = [cs.count_host[b] - (ls.seen_host[b] if ls is not None else 0) for b in range(B)]
        if ls is None:
            ls = _LayerState(pos=new_pos.clone(), valid=new_valid.clone(), state=new_state, n_valid=list(new_n))
            cs.layers[layer_idx] = ls
        else:
            ls.pos = torch.cat([ls.pos, new_pos], dim=2)
            ls.valid = torch.cat([ls.valid, new_valid], dim=2)
            ls.state = {n: torch.cat([ls.state[n], new_state[n]], dim=2) for n in self.token_state}
            ls.n_valid = [a + b for a, b in zip(ls.n_valid, new_n)]
        ls.seen_host = list(cs.count_host)
        if ls.pos.shape[2] != K:
            raise RuntimeError(
                f"layer {layer_idx}: the cache holds {K} tokens but the policy tracked {ls.pos.shape[2]}; the cache "
                "was changed outside the policy (crop, beam search, or a cache reused after detach)"
            )
        return ls

    def _budget_tokens(self, count: int) -> int:
        if isinstance(self.budget, int):
            return min(self.budget, count)
        return max(1, math.ceil(count * self.budget - 1e-9))

    def _schedule(self, cs: _CacheState) -> None:
        """Is this forward a compression? And if so, the lag until the next one: the policy's
        ``compress_every()``, at most half the smallest row's budget (a lag as long as the budget
        would leave nothing to choose)."""
        if not self.evicts or self.phase == "never":
            cs.compress_step = False
            return
        if cs.step == 0:
            cs.compress_step = self.phase in ("prefill", "both")
        else:
            cs.compress_step = self.phase in ("decode", "both") and cs.step >= cs.next_compress
        if cs.step == 0 or cs.compress_step:
            smallest = min(self._budget_tokens(c) for c in cs.count_host)
            cs.lag = max(1, min(self.compress_every(), smallest // 2))
            cs.next_compress = cs.step + cs.lag

    def _cap(self, cs: _CacheState) -> list[int]:
        """Per row, the real tokens kept at a compression of this forward: the budget at the
        current count, less the tokens that arrive before the next compression (``lag - 1``),
        so that what is held after every forward stays within the budget."""
        out = []
        for c in cs.count_host:
            cap = self._budget_tokens(c)
            out.append(max(1, cap - (cs.lag - 1)) if cap < c else cap)
        return out

    def _mask_for(self, ls: _LayerState, cs: _CacheState, hf_mask, key, groups: int, query, view: LayerView):
        """The model's own mask while the layer is uncompressed, else one built from positions."""
        if not ls.compressed and (hf_mask is None or hf_mask.shape[-1] == key.shape[2]):
            return hf_mask
        if cs.all_valid and query.shape[2] == 1 and all(
            n == key.shape[2] for n in ls.n_valid
        ):  # one new token, every held slot real: nothing to mask
            return None
        pos = _repeat_heads(ls.pos, groups)[:, :, None, :]
        valid = _repeat_heads(ls.valid, groups)[:, :, None, :]
        allowed = valid & (pos <= cs.qpos[:, None, :, None])
        view.allowed = allowed
        if not cs.all_valid:  # a padding query row must not be all-masked (NaN in softmax)
            allowed = allowed | ~cs.qvalid[:, None, :, None]
        if self._orig_impl == "eager":
            m = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
            return m.masked_fill(~allowed, torch.finfo(query.dtype).min)
        return allowed

    @staticmethod
    def _order(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Held slots by descending score (padding last); ties, ``+inf`` (protected) slots
        included, go to the later slot (the more recent token)."""
        s = scores.float().masked_fill(~valid, float("-inf"))
        K = s.shape[-1]
        return (K - 1) - torch.sort(s.flip(-1), dim=-1, descending=True, stable=True).indices

    def _compress(self, layer, ls: _LayerState, view: LayerView, scores: torch.Tensor) -> None:
        B, Hkv, K, D = view.keys.shape
        if scores.shape != (B, Hkv, K):
            raise RuntimeError(f"{type(self).__name__}.score must return shape {(B, Hkv, K)}, got {tuple(scores.shape)}")
        caps = view.cap_host
        keep = [min(c, n) for c, n in zip(caps, ls.n_valid)]
        keep_n = max(1, max(keep))
        order = self._order(scores, ls.valid)
        idx = order[..., :keep_n]  # (B, Hkv, k) best first
        if min(keep) == keep_n and ls.n_valid == [K] * B:  # every row keeps keep_n real tokens
            keep_valid = None
        else:
            rank_ok = torch.arange(keep_n, device=idx.device)[None, None, :] < view.cap[:, None, None]
            keep_valid = ls.valid.gather(2, idx) & rank_ok
        idx, perm = torch.sort(idx, dim=-1)  # back to slot (position) order
        gidx = idx[..., None].expand(-1, -1, -1, D)
        layer.keys = view.keys.gather(2, gidx)
        layer.values = view.values.gather(2, gidx)
        if keep_valid is None:
            ls.pos = ls.pos.gather(2, idx)
            ls.valid = torch.ones_like(idx, dtype=torch.bool)
        else:
            keep_valid = keep_valid.gather(2, perm)
            ls.pos = torch.where(keep_valid, ls.pos.gather(2, idx), torch.full_like(idx, -1))
            ls.valid = keep_valid
        ls.state = {n: t.gather(2, idx) for n, t in view.state.items()}
        ls.n_valid = keep
        ls.compressed = True
        self.stats["compressions"] += 1

    def _select(self, view: LayerView, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Top-cap held slots per query head: (idx (B, H, k), selected-and-valid (B, H, k) or None
        when all are, all valid slots selected?). Memoized on the scores tensor (shared by layers
        that reuse it). ``topk`` on the scores, with the sizes known on the host (no sync)."""
        B, Hkv, K, D = view.keys.shape
        H = view.query.shape[1]
        if scores.shape not in ((B, H, K), (B, Hkv, K)):
            raise RuntimeError(f"{type(self).__name__}.score must return (B, H, K) or (B, Hkv, K), got {tuple(scores.shape)}")
        per_kv = scores.shape[1] == Hkv and H != Hkv  # one selection per kv head, shared by its query heads
        memo = view.shared.get("_topk_memo")
        if memo is not None and memo[0] is scores:
            return memo[1], memo[2], memo[3]
        keep = [min(c, n) for c, n in zip(view.cap_host, view.n_valid)]
        everything = all(c >= n for c, n in zip(view.cap_host, view.n_valid))
        k = max(1, max(keep))
        if view.n_valid == [K] * B and min(keep) == k:  # every slot real, every row selects k
            idx = torch.topk(scores, k, dim=-1, sorted=False).indices
            sel_valid = None
        else:
            s = scores.masked_fill(~(view.valid if per_kv else _repeat_heads(view.valid, view.groups)), float("-inf"))
            vals, idx = torch.topk(s, k, dim=-1)
            sel_valid = (vals > float("-inf")) & (torch.arange(k, device=idx.device)[None, None, :] < view.cap[:, None, None])
        view.shared["_topk_memo"] = (scores, idx, sel_valid, everything)
        return idx, sel_valid, everything

    def _sparse_attention(self, view: LayerView, idx: torch.Tensor, sel_valid: torch.Tensor | None, layer_idx: int):
        """Attention of the current queries restricted to the selected held slots, per query head
        (``idx`` (B, H, k)) or per kv head (``idx`` (B, Hkv, k), shared by the head's group).

        Gathers the selected slots straight from each kv head's keys and values (one
        ``index_select`` on the flattened cache, no repeat of the cache), then one
        ``scaled_dot_product_attention`` in the model's dtype (grouped-query when per kv head)."""
        B, Hkv, K, D = view.keys.shape
        H = view.query.shape[1]
        h, k = idx.shape[1], idx.shape[-1]
        self.last_selection[layer_idx] = idx
        per_kv = h == Hkv and H != Hkv
        reps = 1 if per_kv else view.groups
        base = (torch.arange(B * Hkv, device=idx.device).view(B, Hkv, 1, 1) * K).expand(B, Hkv, reps, 1).reshape(B, h, 1)
        flat = (idx + base).reshape(-1)
        k_sel = view.keys.reshape(B * Hkv * K, D).index_select(0, flat).view(B, h, k, D)
        v_sel = view.values.reshape(B * Hkv * K, -1).index_select(0, flat).view(B, h, k, view.values.shape[-1])
        mask = None
        q = view.query.shape[2]
        if sel_valid is not None or q > 1 or not view.all_queries_valid:
            pos_sel = view.pos.reshape(B * Hkv * K).index_select(0, flat).view(B, h, k)
            allowed = pos_sel[:, :, None, :] <= view.qpos[:, None, :, None]
            if sel_valid is not None:
                allowed = allowed & sel_valid[:, :, None, :]
            if per_kv:
                allowed = _repeat_heads(allowed, view.groups)
            mask = allowed | ~view.qvalid[:, None, :, None]
        if per_kv and view.softcap:
            k_sel, v_sel = _repeat_heads(k_sel, view.groups), _repeat_heads(v_sel, view.groups)
        if view.softcap:  # Gemma2: tanh soft-capping of the logits, as the model's eager attention
            logits = torch.matmul(view.query, k_sel.transpose(2, 3)) * view.scaling
            logits = torch.tanh(logits / view.softcap) * view.softcap
            if mask is not None:
                logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
            w = torch.softmax(logits.float(), dim=-1).to(view.query.dtype)
            out = torch.matmul(w, v_sel)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(
                view.query, k_sel, v_sel, attn_mask=mask, scale=view.scaling, enable_gqa=per_kv
            )
        out = out.transpose(1, 2).contiguous()  # (B, q, H, D) as HF expects
        if self.record_recall:
            full = view.probs(last=q)  # (B, H, q, K)
            idx_h = _repeat_heads(idx, view.groups) if per_kv else idx
            got = full.gather(3, idx_h[:, :, None, :].expand(-1, -1, full.shape[2], -1))
            if sel_valid is not None:
                got = got * (_repeat_heads(sel_valid, view.groups) if per_kv else sel_valid)[:, :, None, :]
            got = got.sum(-1)  # (B, H, q)
            m = view.qvalid[:, None, :].expand_as(got)
            self.stats["recall_sum"] += float(got[m].sum())
            self.stats["recall_n"] += int(m.sum())
        return out, None

    def extra_repr(self) -> str:  # pragma: no cover - cosmetic
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__dataclass_fields__)


# --------------------------------------------------------------------------- model plumbing


def _decoder_and_attentions(model):
    base = getattr(model, "model", None)
    if base is not None and hasattr(base, "language_model") and not hasattr(base, "layers"):
        base = base.language_model
    layers = getattr(base, "layers", None)
    if base is None or layers is None:
        return None, None
    attns = [getattr(layer, "self_attn", None) for layer in layers]
    if not attns or any(a is None or not hasattr(a, "layer_idx") for a in attns):
        return None, None
    return base, attns


def _check_model(model, check_impl: bool = True):
    from transformers import PreTrainedModel

    name = type(model).__name__
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"model must be a Hugging Face PreTrainedModel (a decoder-only causal LM), got {name}")
    if getattr(model.config, "is_encoder_decoder", False):
        raise TypeError(f"model must be a decoder-only causal LM; {name} is an encoder-decoder model")
    decoder, attns = _decoder_and_attentions(model)
    if decoder is None:
        raise TypeError(
            f"model {name} is not supported: expected a decoder-only HF model with model.model.layers[i].self_attn "
            "(Llama, Qwen2, Mistral, ... families)"
        )
    if check_impl:
        impl = model.config._attn_implementation
        if impl not in _SUPPORTED_IMPL:
            raise ValueError(
                f"model's attn_implementation must be one of {_SUPPORTED_IMPL} for a KV policy, got {impl!r}; "
                "call model.set_attn_implementation('sdpa') first"
            )
        kinds = _layer_kinds(model.config, len(attns))
        if "full" not in kinds:
            w = getattr(model.config, "sliding_window", None)
            if getattr(model.config, "layer_types", None):  # per-layer types (Gemma3, ...): layers differ beyond the mask
                raise TypeError(
                    f"model {name} has no full-attention layer (config.layer_types are all sliding, window {w}): its cache "
                    "is already bounded by the window and a KV policy would manage no layer; run it without a policy"
                )
            raise TypeError(
                f"model {name} uses sliding-window attention in every layer (config.sliding_window={w}), so its cache is "
                "already bounded by the window and a KV policy would manage no layer; to use one, set "
                "model.config.sliding_window = None before attach (outputs are unchanged while the context fits in "
                f"the {w}-token window; beyond it the model attends to the whole context the policy keeps)"
            )
    return decoder, attns


def _layer_kinds(config, n: int) -> list[str]:
    """Per decoder layer, "full" or "sliding", as ``DynamicCache(config=...)`` builds its layers."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None) or getattr(text, "attention_chunk_size", None)
    types = getattr(text, "layer_types", None)
    if types is None:
        types = ["sliding_attention" if window is not None else "full_attention"] * n
    return ["sliding" if t in ("sliding_attention", "chunked_attention") else "full" for t in list(types)[:n]]


def _check_layer(layer) -> None:
    from transformers.cache_utils import DynamicLayer

    if type(layer) is not DynamicLayer:
        raise TypeError(
            f"KV policies need a DynamicCache (full attention layers); the cache layer is {type(layer).__name__} "
            "(static, sliding-window, offloaded and quantized caches are not supported)"
        )


def _on_attention(module, args, kwargs):
    from transformers.cache_utils import Cache

    cache = kwargs.get("past_key_values", kwargs.get("past_key_value"))
    if cache is None:  # passed positionally or under another name
        cache = next((a for a in (*args, *kwargs.values()) if isinstance(a, Cache)), None)
    module._tokenworks_kv_cache = cache
    return None


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The attention function registered as ``tokenworks_kv``: dispatches to the policy."""
    kwargs = {**kwargs, "dropout": dropout, "scaling": scaling}
    policy = getattr(module, _POLICY_ATTR, None)
    orig = _original_function(module, policy._orig_impl if policy is not None else "sdpa")
    if policy is None:
        return orig(module, query, key, value, attention_mask, **kwargs)
    return policy._attend(module, orig, query, key, value, attention_mask, kwargs)


def _original_function(module, impl: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if impl == "eager":
        fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if fn is None:
            raise TypeError(f"{type(module).__name__} has no eager_attention_forward; use attn_implementation='sdpa'")
        return fn
    return ALL_ATTENTION_FUNCTIONS[impl]


def _mask(**kwargs):
    """Mask function registered as ``tokenworks_kv``: the original implementation's mask."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    config = kwargs["config"]
    return ALL_MASK_ATTENTION_FUNCTIONS[getattr(config, _ORIG_ATTR, "sdpa")](**kwargs)


_REGISTERED = False


def _register_interfaces() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, _attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, _mask)
    _REGISTERED = True


def budget_tokens(budget: float | int, context: int) -> int:
    """Tokens a budget allows for a context of ``context`` real tokens."""
    if isinstance(budget, int):
        return min(budget, context)
    return max(1, math.ceil(context * budget))
