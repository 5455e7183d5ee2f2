"""Suite ``kv-cache``: KV-cache policies of tokenworks and NVIDIA kvpress presses, same model, same run.

Every registered KV policy (``tw.methods(kind="kv_policy")``) and four kvpress presses
(StreamingLLM, SnapKV, TOVA, ObservedAttention) run on the task model (a small Llama trained
here, ``tokenworks.kvcache.task_model``) at budgets of 10, 25, 50 and 75% of the context (``--quick``: 10, 25 and 50%):

- ``retrieval`` (task a): many ``@ KEY V1 V2`` records in held-out prose, a query ``@ KEY`` at
  the end; the prompt is compressed, then the value is decoded greedily. Accuracy = exact match.
- ``recurrence`` (task b): variables defined in a short prompt, then a long stream, fed token by
  token, in which each variable is read back periodically; accuracy = next-token argmax on the
  read-back values (teacher forcing).
- ``prose`` (task c): held-out prose streamed token by token after a short prompt; perplexity,
  and two task-free fidelity measures against the full cache on the same tokens: KL divergence
  of next-token distributions and the greedy-match length of free generation (``model.generate``
  for ours; kvpress's hook for its presses) from the same prompts.

Held KV, the budget that counts: ``kv_peak_fraction`` is the most KV held after any forward
(prefill included) as a fraction of the full cache at that step, ``kv_mean_fraction`` its mean;
tables and plots lead with it. Our policies keep ``ceil(budget x tokens seen)`` after every
forward, windows, sinks and lagged eviction included (LazyEviction evicts ahead of its lag;
SnapKV keeps the budget while decoding by its prefill scores). TidalDecode holds everything and
reads the budget in its sparse layers. kvpress presses are charged the same way: the prefill
press keeps what the budget allows after the decoding forwards before the next compression,
and in the streaming tasks kvpress's ``DecodingPress`` (in a ``PrefillDecodingPress``)
re-compresses every 16 steps (at most half the prompt's budget) ahead of its interval.
ObservedAttention reads attention weights, so its rows run with eager attention (a cost that
is its own). Also per row: ``kv_bytes``/``kv_ratio`` (mean bytes held over decoding),
``decode_ms`` and ``time_ratio`` to the model with no policy (``sdpa``), and ``overhead_ms``
(time in our policy code per decoding forward).

``kv-speed``: decode speed at the per-layer shapes of Llama-3.2-1B and Qwen2.5-0.5B (random
init, 2 layers in ``--quick``, 4 in the full variant; vocab 256), the cache pre-filled with
random keys and values of the right shape instead of a prefill, at 2k and 8k tokens (32k in
the full variant): tokens/s as a ratio to no policy in the same run, held KV, attention bytes
read per token (hardware-free) and, on CUDA, peak memory; the issue's targets (``full``
within 5% of no policy, eviction at 25% >= 1.5x at 32k, TidalDecode faster than dense at long
context) judged per row, CPU figures said to be such. ``models``: a tiny random model of each
family the docs name, supported or refused at attach. Plots: score vs held KV and vs budget
per task, decode throughput ratios, TidalDecode's attention recall vs budget.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

import tokenworks as tw
from tokenworks.kvcache import kv_bytes
from tokenworks.kvcache.task_model import task_model
from tokenworks.kvcache.tasks import kv_retrieval, prose_windows, recurrence_traces

NAME = "kv-cache"
DESCRIPTION = __doc__.split("\n\n", 1)[1]

BUDGETS = (0.1, 0.25, 0.5, 0.75)
QUICK_BUDGETS = (0.1, 0.25, 0.5)  # --quick leaves out 75% (the least informative point) to stay within its 3 minutes on 2 cores
PRESSES = ("StreamingLLMPress", "SnapKVPress", "TOVAPress", "ObservedAttentionPress")


def _sizes(quick: bool) -> dict[str, Any]:
    # Retrieval stays within the 1,536 tokens the task model was trained on, at the quick run's
    # density of records: beyond it the full cache itself fails (measured with 64 pairs and 16
    # prompts: exact match 0.75 at 1,536 tokens, 0.44 at 2,048, 0.125 at 3,072), which would
    # leave nothing for a policy to preserve. Timing contexts go further (no accuracy there).
    if quick:
        return dict(
            ret_n=8, ret_len=1024, ret_pairs=24, rec_n=8, rec_prompt=64, rec_trace=256, rec_periods=(70, 150),
            prose_n=4, prose_prompt=32, prose_steps=128, gen_prompt=96, gen_new=16,
            speed_ctx=(2048, 8192), speed_layers=2, speed_warm=1, speed_steps=4,
        )  # fmt: skip
    return dict(
        ret_n=32, ret_len=1536, ret_pairs=36, rec_n=16, rec_prompt=128, rec_trace=1024, rec_periods=(150, 450),
        prose_n=8, prose_prompt=64, prose_steps=512, gen_prompt=256, gen_new=48,
        speed_ctx=(2048, 8192, 32768), speed_layers=4, speed_warm=4, speed_steps=24,
    )  # fmt: skip


# ----------------------------------------------------------------------------- methods


def _ours(name: str, budget: float):
    info = tw.get(name)
    if name == "full":
        return tw.create("full")
    opts: dict[str, Any] = {"budget": budget}
    if name == "tidal_decode":
        opts["selection_layer"] = 1
    return info.create(**opts)


INTERVAL = 16  # kvpress DecodingPress: compress every 16 decoding steps


def _ahead(budget: float, seen: int, lag: int) -> int:
    """Tokens to keep at ``seen`` so that after each of the next ``lag`` forwards (one token each,
    no compression) the cache still holds at most ``ceil(budget x tokens seen)``."""
    return max(1, min(math.ceil(budget * (seen + d) - 1e-9) - d for d in range(lag + 1)))


def _press(cls_name: str, budget: float, streaming: bool, prompt_len: int, decode_steps: int = 0):
    """A kvpress press held to the same budget as our policies, charged the same way: at
    prefill it keeps ``_ahead(budget, prompt, lag)`` tokens, where lag is the decoding forwards
    before its next compression (all of them for a prefill-only press, the interval less one
    when streaming), so that the KV held after every forward is within ``ceil(budget x seen)``;
    for streaming, kvpress's DecodingPress re-compresses every ``INTERVAL`` steps (at most half
    the prompt's budget), likewise ahead of its interval."""
    import kvpress

    cls = getattr(kvpress, cls_name)
    kw = {"window_size": min(32, prompt_len - 1)} if cls_name == "SnapKVPress" else {}
    # the decoding interval, at most half the prompt's budget (as our lagged policies): a longer lag
    # could only be charged by emptying the cache
    interval = max(1, min(INTERVAL, math.ceil(budget * prompt_len) // 2))
    keep = _ahead(budget, prompt_len, interval - 1 if streaming else decode_steps)
    if cls_name == "StreamingLLMPress":  # kvpress asserts more held tokens than sinks at every compression
        kw = {"n_sink": min(4, max(0, keep - 1))}
    prefill = cls(compression_ratio=max(0.0, 1.0 - (keep + 0.5) / prompt_len), **kw)  # kvpress keeps int(K x (1 - ratio))
    if not streaming:
        return prefill
    # the decoding press scores with the hidden states buffered since its last compression
    kw = {"window_size": max(1, interval // 2)} if cls_name == "SnapKVPress" else kw if cls_name == "StreamingLLMPress" else {}
    decoding = _fraction_decoding_press()(base_press=cls(**kw), compression_interval=interval, target_size=1, fraction=budget)
    return kvpress.PrefillDecodingPress(prefilling_press=prefill, decoding_press=decoding)


_FRACTION_PRESS = None


def _check_kvpress_target_hook() -> None:
    """The fraction target overrides kvpress's private ``DecodingPress._resolve_target_size``;
    if kvpress renames it or stops calling it, fail instead of silently keeping ``target_size``."""
    import inspect

    import kvpress

    dp = kvpress.DecodingPress
    src = inspect.getsource(dp.forward_hook) if hasattr(dp, "forward_hook") else ""
    if not callable(getattr(dp, "_resolve_target_size", None)) or "self._resolve_target_size(" not in src:
        raise RuntimeError(
            f"kvpress {getattr(kvpress, '__version__', '?')}: DecodingPress no longer resolves its target through "
            "_resolve_target_size in forward_hook; the bench's fraction-of-seen target would be ignored. Update "
            "_fraction_decoding_press in bench/suites/kv_cache.py for this kvpress version."
        )


def _fraction_decoding_press():
    """kvpress's DecodingPress with a target that is a fraction of the tokens seen so far,
    kept ahead of its compression interval (see ``_ahead``)."""
    global _FRACTION_PRESS
    if _FRACTION_PRESS is None:
        from dataclasses import dataclass

        import kvpress

        _check_kvpress_target_hook()

        @dataclass
        class FractionDecodingPress(kvpress.DecodingPress):
            fraction: float = 1.0

            def _resolve_target_size(self, kwargs: dict) -> int:
                seen = int(kwargs["cache_position"][-1]) + 1
                return _ahead(self.fraction, seen, self.compression_interval - 1)

        _FRACTION_PRESS = FractionDecodingPress
    return _FRACTION_PRESS


@contextmanager
def _attn(model, impl: str, inner):
    """Run ``inner`` (a context manager) with the model's attention implementation set to ``impl``."""
    old = model.config._attn_implementation
    model.set_attn_implementation(impl)
    try:
        with inner:
            yield
    finally:
        model.set_attn_implementation(old)


def _press_name(cls_name: str) -> str:
    return "kvpress-" + cls_name.removesuffix("Press").lower().replace("observedattention", "observed_attention").replace("streamingllm", "streaming_llm")


# ----------------------------------------------------------------------------- running


class _Run:
    """Prefill then token-by-token decoding with explicit positions, timing and KV bytes."""

    def __init__(self, model, ctx_manager, policy=None):
        from transformers import DynamicCache

        self.model, self.ctx, self.policy = model, ctx_manager, policy
        self.cache = DynamicCache(config=model.config)
        self.t = 0
        self.decode_seconds = 0.0
        self.decode_steps = 0
        self.bytes = []
        self.fractions = []  # KV held after each forward / KV of every token seen (prefill included)
        c = model.config
        self.token_bytes = 2 * c.num_hidden_layers * c.num_key_value_heads * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
        self.token_bytes *= next(model.parameters()).element_size()

    def forward(self, ids: torch.Tensor, timed: bool) -> torch.Tensor:
        q = ids.shape[1]
        pos = torch.arange(self.t, self.t + q)
        t0 = time.perf_counter()
        out = self.model(input_ids=ids, past_key_values=self.cache, cache_position=pos, position_ids=pos[None].expand(ids.shape[0], -1))
        if timed:
            self.decode_seconds += time.perf_counter() - t0
            self.decode_steps += 1
            self.bytes.append(kv_bytes(self.cache))
        self.t += q
        self.fractions.append(kv_bytes(self.cache) / (self.token_bytes * ids.shape[0] * self.t))
        self.first_seen = getattr(self, "first_seen", self.t)
        return out.logits


def _with(model, method: str, budget: float, streaming: bool, target: int, prompt_len: int = 1 << 30, decode_steps: int = 0):
    """(context manager, our policy or None) for a row's method; "none" is the plain model."""
    if method == "none":
        return nullcontext(), None
    if method.startswith("kvpress-"):
        cls_name = next(p for p in PRESSES if _press_name(p) == method)
        press = _press(cls_name, budget, streaming, prompt_len, decode_steps)
        if cls_name == "ObservedAttentionPress":  # needs the attention weights: eager attention
            return _attn(model, "eager", press(model)), None
        return press(model), None
    policy = _ours(method, budget)
    return policy(model), policy


def _methods() -> list[str]:
    return [m.name for m in tw.methods(kind="kv_policy")] + [_press_name(p) for p in PRESSES]


def _row(method: str, task: str, budget: float, metrics: dict[str, float], params: dict | None = None) -> dict:
    paper = None if method.startswith("kvpress-") or method == "no-policy" else tw.get(method).paper
    return {
        "family": "KV", "method": method, "paper": paper, "params": params or {},
        "budget": {"task": task, "fraction": budget}, "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
    }  # fmt: skip


def _cost(run: _Run, policy, full_bytes: float | None, full_ms: float | None) -> dict[str, float]:
    ms = 1000 * run.decode_seconds / max(1, run.decode_steps)
    b = float(sum(run.bytes) / max(1, len(run.bytes)))
    out = {"kv_peak_fraction": max(run.fractions), "kv_mean_fraction": sum(run.fractions) / len(run.fractions),
           "kv_slack": 1.0 / run.first_seen}  # budget + 1/T: the rounding of ceil(budget x T) at the shortest T  # fmt: skip
    out.update({"kv_bytes": b, "decode_ms": ms})
    out["kv_ratio"] = b / full_bytes if full_bytes else 1.0
    out["time_ratio"] = ms / full_ms if full_ms else 1.0
    if policy is not None:
        out["overhead_ms"] = 1000 * policy.stats["policy_seconds"] / max(1, run.decode_steps)
    return out


@torch.no_grad()
def _retrieval(model, tok, method, budget, data, ref) -> dict[str, float]:
    ids, answers = data["input_ids"], data["answers"]
    ctx, policy = _with(model, method, budget, streaming=False, target=0, prompt_len=ids.shape[1], decode_steps=answers.shape[1])
    with ctx:
        run = _Run(model, ctx, policy)
        logits = run.forward(ids, timed=False)
        preds, first_logp = [], torch.log_softmax(logits[:, -1].float(), -1)
        if policy is not None:
            policy.reset_stats()
        for _ in range(answers.shape[1]):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            preds.append(nxt)
            logits = run.forward(nxt, timed=True)
    pred = torch.cat(preds, 1)
    m = {"accuracy": float((pred == answers).all(1).float().mean()), "first_token_acc": float((pred[:, 0] == answers[:, 0]).float().mean())}
    if ref is not None:
        m["kl_first"] = float(torch.nn.functional.kl_div(first_logp, ref["first_logp"], log_target=True, reduction="batchmean"))
    return {**m, **_cost(run, policy, ref and ref["kv_bytes"], ref and ref["decode_ms"]), "_first_logp": first_logp}


@torch.no_grad()
def _stream(model, method, budget, ids, prompt_len, targets, ref, record_recall=False) -> dict[str, Any]:
    """Teacher-forced streaming: returns accuracy on ``targets`` (bool (B, T)), NLL on the rest,
    KL to the reference log-probs, and costs."""
    T = ids.shape[1]
    target_tokens = max(1, round(budget * T))
    ctx, policy = _with(model, method, budget, streaming=True, target=target_tokens, prompt_len=prompt_len)
    if policy is not None:
        policy.record_recall = record_recall
    nll, n_tok, correct, n_tgt, kl, logps = 0.0, 0, 0, 0, 0.0, []
    with ctx:
        run = _Run(model, ctx, policy)
        logits = run.forward(ids[:, :prompt_len], timed=False)[:, -1]
        if policy is not None:
            policy.reset_stats()
        for t in range(prompt_len, T):
            logp = torch.log_softmax(logits.float(), -1)  # predicts ids[:, t]
            y = ids[:, t]
            tgt = targets[:, t - 1] if targets is not None else torch.zeros_like(y, dtype=torch.bool)
            lp = logp.gather(1, y[:, None])[:, 0]
            nll -= float(lp[~tgt].sum())
            n_tok += int((~tgt).sum())
            correct += int(((logp.argmax(-1) == y) & tgt).sum())
            n_tgt += int(tgt.sum())
            if ref is None:
                logps.append(logp)
            else:
                kl += float(torch.nn.functional.kl_div(logp, ref["logps"][t - prompt_len].float(), log_target=True, reduction="sum"))
            if t < T - 1:
                logits = run.forward(ids[:, t : t + 1], timed=True)[:, -1]
    out: dict[str, Any] = {"ppl": math.exp(nll / max(1, n_tok))}
    if targets is not None:
        out["accuracy"] = correct / max(1, n_tgt)
    if ref is not None:
        out["kl"] = kl / (ids.shape[0] * (T - prompt_len))
    else:
        out["_logps"] = logps
    out.update(_cost(run, policy, ref and ref["kv_bytes"], ref and ref["decode_ms"]))
    if record_recall and policy is not None and policy.stats["recall_n"]:
        out["attention_recall"] = policy.stats["recall_sum"] / policy.stats["recall_n"]
    return out


@torch.no_grad()
def _greedy(model, method, budget, prompts, new: int) -> torch.Tensor:
    T = prompts.shape[1]
    ctx, _ = _with(model, method, budget, streaming=False, target=0, prompt_len=T, decode_steps=new)
    if method.startswith("kvpress-"):  # kvpress hooks prefill; decode greedily by hand
        with ctx:
            run = _Run(model, ctx)
            logits = run.forward(prompts, timed=False)
            out = []
            for _ in range(new):
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                out.append(nxt)
                logits = run.forward(nxt, timed=False)
        return torch.cat(out, 1)
    with ctx:
        g = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=model.config.pad_token_id)  # fmt: skip
    return g[:, T:]


def _match_len(a: torch.Tensor, b: torch.Tensor) -> float:
    same = (a == b).long().cumprod(1)
    return float(same.sum(1).float().mean())


# ----------------------------------------------------------------------------- kv-speed

# per-layer shapes of the models people run (from their published configs); few layers, small vocab
SPEED_SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, num_attention_heads=32, num_key_value_heads=8, head_dim=64, intermediate_size=8192),
    "qwen2.5-0.5b": dict(hidden_size=896, num_attention_heads=14, num_key_value_heads=2, head_dim=64, intermediate_size=4864),
}
SPEED_BUDGET = 0.25
# ``tidal_decode:kv_head``: TidalDecode with select_per="kv_head"; kvpress presses run inside kvpress's
# DecodingPress (decode-time compression, every ``speed_warm`` steps so it compresses before timing)
SPEED_METHODS = {
    True: ("full", "streaming_llm", "h2o", "lazy_eviction", "tidal_decode", "tidal_decode:kv_head", "kvpress-decoding-streaming_llm"),
    False: ("full", "streaming_llm", "h2o", "tova", "snapkv", "lazy_eviction", "random", "tidal_decode", "tidal_decode:kv_head",
            "kvpress-decoding-streaming_llm", "kvpress-decoding-tova"),
}  # fmt: skip
SPEED_PRESSES = ("StreamingLLMPress", "TOVAPress")


def _speed_model(shape: str, layers: int, device: str, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(num_hidden_layers=layers, vocab_size=256, max_position_embeddings=1 << 16, pad_token_id=0, **SPEED_SHAPES[shape])
    if shape.startswith("llama"):
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False))
    model.set_attn_implementation("sdpa")
    return model.to(device=device, dtype=dtype).eval()


def _filled_cache(model, n_ctx: int, seed: int):
    """A DynamicCache holding ``n_ctx`` random keys and values of the model's shape (the prefill
    replaced: decode speed depends on what is held, not on how it was computed)."""
    from transformers import DynamicCache

    c = model.config
    p = next(model.parameters())
    g = torch.Generator(device=p.device).manual_seed(seed)
    cache = DynamicCache(config=c)
    for i in range(c.num_hidden_layers):
        shape = (1, c.num_key_value_heads, n_ctx, c.head_dim)
        k = torch.randn(shape, generator=g, device=p.device, dtype=p.dtype)
        v = torch.randn(shape, generator=g, device=p.device, dtype=p.dtype)
        cache.update(k, v, i)
    return cache


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def _speed_one(model, method: str, n_ctx: int, warm: int, steps: int, device: str) -> dict[str, float]:  # noqa: C901
    """Decode ``warm + steps`` tokens after a random-filled cache; median step time of the
    last ``steps``, held KV and attention bytes read per token (hardware-free)."""
    import kvpress

    c = model.config
    L, Hkv, H, D = c.num_hidden_layers, c.num_key_value_heads, c.num_attention_heads, c.head_dim
    el = next(model.parameters()).element_size()
    cache = _filled_cache(model, n_ctx, seed=n_ctx)
    policy, ctx = None, nullcontext()
    name, _, variant = method.partition(":")
    if name in {m.name for m in tw.methods(kind="kv_policy")}:
        opts = {} if name == "full" else {"budget": SPEED_BUDGET}
        if name == "tidal_decode":
            opts.update(selection_layer=0, reselection_layer=None, select_per=variant or "query_head")
        policy = tw.create(name, **opts)
        ctx = policy(model)
    elif method.startswith("kvpress-decoding-"):
        cls = next(p for p in SPEED_PRESSES if _press_name(p) == "kvpress-" + method.removeprefix("kvpress-decoding-"))
        press = _fraction_decoding_press()(base_press=getattr(kvpress, cls)(), compression_interval=warm, target_size=1,
                                           fraction=SPEED_BUDGET)  # fmt: skip
        ctx = press(model)
    times, held, read = [], [], []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated() if device.startswith("cuda") else 0
    with ctx:
        if policy is not None and method != "full":
            policy.adopt(cache)
        ids = torch.randint(2, c.vocab_size, (1, 1), device=device)
        for j in range(warm + steps):
            pos = torch.tensor([n_ctx + j], device=device)
            _sync(device)
            t0 = time.perf_counter()
            out = model(input_ids=ids, past_key_values=cache, cache_position=pos, position_ids=pos[None])
            ids = out.logits[:, -1:].argmax(-1)
            _sync(device)
            if j >= warm:
                times.append(time.perf_counter() - t0)
                lens = [layer.keys.shape[2] for layer in cache.layers]
                held.append(sum(lens) / (L * (n_ctx + j + 1)))
                if name == "tidal_decode" and policy.last_selection:  # selected slots per selection head
                    k = {i: s.shape[-1] * s.shape[1] for i, s in policy.last_selection.items()}
                    read.append(sum(k[i] if i in k else lens[i] * Hkv for i in range(L)) * 2 * D * el)
                else:  # attention reads every held key and value once (the token just written included)
                    read.append(sum(lens) * Hkv * 2 * D * el)
    times.sort()
    med = times[len(times) // 2]
    out = {
        "context": n_ctx, "decode_ms": 1000 * med, "tokens_per_s": 1.0 / med, "kv_peak_fraction": max(held),
        "kv_mean_fraction": sum(held) / len(held), "attn_bytes_per_token": sum(read) / len(read),
        "kv_bytes": float(kv_bytes(cache)),
    }  # fmt: skip
    if device.startswith("cuda"):
        out["peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
    return out


def _speed_targets(method: str, n_ctx: int, ratio: float, device: str) -> str:
    """The issue's targets, judged on this row: met / missed / n.a.; a CPU figure is said to be one."""
    where = "" if device.startswith("cuda") else " (CPU figure)"
    if method == "full":
        return ("met" if ratio >= 1 / 1.05 else "missed") + ": within 5% of no policy" + where
    if method == "tidal_decode" and n_ctx >= 8192:
        return ("met" if ratio > 1.0 else "missed") + ": faster than dense attention" + where
    if method in ("streaming_llm", "h2o", "tova", "snapkv", "lazy_eviction", "random") and n_ctx >= 32768:
        return ("met" if ratio >= 1.5 else "missed") + ": >= 1.5x no-policy throughput at 32k" + where
    return "n.a."


def _speed(ctx, S) -> list[dict]:
    device = ctx.device
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    methods = SPEED_METHODS[bool(ctx.quick)]
    rows = []
    for shape in SPEED_SHAPES:
        model = _speed_model(shape, S["speed_layers"], device, dtype)
        for n_ctx in S["speed_ctx"]:
            # no policy is measured first and last; its mean is the baseline (drift on a shared machine)
            first = _speed_one(model, "none", n_ctx, S["speed_warm"], S["speed_steps"], device)
            measured = [(m, _speed_one(model, m, n_ctx, S["speed_warm"], S["speed_steps"], device)) for m in methods]
            last = _speed_one(model, "none", n_ctx, S["speed_warm"], S["speed_steps"], device)
            base = dict(first)
            base["decode_ms"] = (first["decode_ms"] + last["decode_ms"]) / 2
            base["tokens_per_s"] = 1000.0 / base["decode_ms"]
            base["baseline_spread"] = abs(first["decode_ms"] - last["decode_ms"]) / base["decode_ms"]
            for method, m in [("none", base), *measured]:
                m["throughput_ratio"] = m["tokens_per_s"] / base["tokens_per_s"]
                m["attn_bytes_ratio"] = m["attn_bytes_per_token"] / base["attn_bytes_per_token"]
                budget = 1.0 if method in ("none", "full") else SPEED_BUDGET
                name, _, variant = method.partition(":")
                params = {"shape": shape, "layers": S["speed_layers"], "dtype": str(dtype).removeprefix("torch."),
                          "device": device, "target": _speed_targets(name, n_ctx, m["throughput_ratio"], device),
                          "cache": "pre-filled with random keys/values (no prefill)", "steps": S["speed_steps"]}  # fmt: skip
                if variant:
                    params["select_per"] = variant
                if name == "tidal_decode":
                    params["dense_layers"] = 1
                rows.append(_row("no-policy" if method == "none" else name, "kv-speed", budget, m, params))
        del model
    return rows


# ----------------------------------------------------------------------------- model families

FAMILIES = {  # the families the docs name, as (config, model) classes of transformers, and the configs tried
    "Llama": ("LlamaConfig", "LlamaForCausalLM", [{}]),
    "Qwen2": ("Qwen2Config", "Qwen2ForCausalLM", [{}]),
    "Qwen3": ("Qwen3Config", "Qwen3ForCausalLM", [{}]),
    "Mistral": ("MistralConfig", "MistralForCausalLM", [{"sliding_window": 16}, {"sliding_window": None}]),
    "Phi-3": ("Phi3Config", "Phi3ForCausalLM", [{"sliding_window": 16}, {"sliding_window": None}]),
    "Gemma2": ("Gemma2Config", "Gemma2ForCausalLM", [{"sliding_window": 8}]),
    "Gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", [{"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"] * 2},
                                                         {"sliding_window": 8}]),
    "OLMo2": ("Olmo2Config", "Olmo2ForCausalLM", [{}]),
}  # fmt: skip


@torch.no_grad()
def _families() -> list[dict]:
    """Attach H2O at 25% to a tiny random model of each family and generate 8 tokens: supported
    (held KV within the budget in every full-attention layer), or the error attach gives."""
    import transformers
    from transformers import DynamicCache

    rows = []
    for fam, (cfg_name, model_name, configs) in FAMILIES.items():
        for over in configs:
            cfg = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=8, max_position_embeddings=512, pad_token_id=0, **over)  # fmt: skip
            torch.manual_seed(0)
            label = ", ".join(f"{k}={v if k != 'layer_types' else 'sliding/full'}" for k, v in over.items()) or "default"
            try:
                model = getattr(transformers, model_name)(getattr(transformers, cfg_name)(**cfg)).eval()
            except (AttributeError, TypeError, ValueError) as e:
                rows.append(_row("h2o", "models", 0.25, {"supported": 0.0}, {"family": fam, "config": label, "status": f"not in this transformers ({e})"}))
                continue
            policy = tw.create("h2o", budget=0.25)
            try:
                policy.attach(model)
            except TypeError as e:
                rows.append(_row("h2o", "models", 0.25, {"supported": 0.0}, {"family": fam, "config": label, "status": f"refused at attach: {e}"}))
                continue
            try:
                x = torch.randint(2, 96, (1, 40))
                cache = DynamicCache(config=model.config)
                model.generate(x, attention_mask=torch.ones_like(x), past_key_values=cache, max_new_tokens=8, min_new_tokens=8,
                               do_sample=False, pad_token_id=0)  # fmt: skip
                managed = sorted(policy._managed)
                held = max(cache.layers[i].keys.shape[2] for i in managed) / 48
                status = f"supported: H2O at 25% holds at most {held:.0%} in full-attention layers {managed}"
                if len(managed) < len(cache.layers):
                    status += "; sliding-window layers keep their own window"
                rows.append(_row("h2o", "models", 0.25, {"supported": 1.0, "kv_peak_fraction": held}, {"family": fam, "config": label, "status": status}))
            finally:
                policy.detach()
    return rows


def run(ctx) -> list[dict]:
    torch.manual_seed(ctx.seed)
    S = _sizes(ctx.quick)
    model, tok = task_model(device=ctx.device)
    model.set_attn_implementation("sdpa")  # kvpress's ObservedAttention switches to eager for its own rows
    methods = _methods()
    rows: list[dict] = []
    budgets = QUICK_BUDGETS if ctx.quick else BUDGETS

    # ---- task (a): retrieval
    data = kv_retrieval(tok, n=S["ret_n"], context_len=S["ret_len"], n_pairs=S["ret_pairs"], seed=ctx.seed + 1)
    ref = _retrieval(model, tok, "none", 1.0, data, None)
    ref = {"first_logp": ref.pop("_first_logp"), **ref}
    for method in ctx.track(methods, "kv-cache: retrieval"):
        for b in budgets if method != "full" else (1.0,):
            m = _retrieval(model, tok, method, b, data, ref)
            m.pop("_first_logp")
            rows.append(_row(method, "retrieval", b, m))

    # ---- task (b): recurrence traces (teacher-forced streaming)
    tr = recurrence_traces(tok, n=S["rec_n"], prompt_len=S["rec_prompt"], trace_len=S["rec_trace"],
                           min_period=S["rec_periods"][0], max_period=S["rec_periods"][1], seed=ctx.seed + 2)  # fmt: skip
    ref = _stream(model, "none", 1.0, tr["input_ids"], S["rec_prompt"], tr["targets"], None)
    ref["logps"] = ref.pop("_logps")
    for method in ctx.track(methods, "kv-cache: recurrence"):
        for b in budgets if method != "full" else (1.0,):
            rows.append(_row(method, "recurrence", b, _stream(model, method, b, tr["input_ids"], S["rec_prompt"], tr["targets"], ref)))

    # ---- task (c): prose streaming perplexity + fidelity
    prose = prose_windows(tok, n=S["prose_n"], length=S["prose_prompt"] + S["prose_steps"], seed=ctx.seed + 3)
    ref = _stream(model, "none", 1.0, prose, S["prose_prompt"], None, None)
    ref["logps"] = ref.pop("_logps")
    gen_prompts = prose_windows(tok, n=S["prose_n"], length=S["gen_prompt"], seed=ctx.seed + 4)
    full_gen = _greedy(model, "none", 1.0, gen_prompts, S["gen_new"])
    for method in ctx.track(methods, "kv-cache: prose"):
        for b in budgets if method != "full" else (1.0,):
            m = _stream(model, method, b, prose, S["prose_prompt"], None, ref)
            m["greedy_match"] = _match_len(_greedy(model, method, b, gen_prompts, S["gen_new"]), full_gen)
            rows.append(_row(method, "prose", b, m))

    # ---- TidalDecode attention recall vs budget (separate, untimed runs)
    short = prose[:, : S["prose_prompt"] + 64]
    for b in budgets:
        m = _stream(model, "tidal_decode", b, short, S["prose_prompt"], None, None, record_recall=True)
        rows.append(_row("tidal_decode", "recall", b, {"attention_recall": m.get("attention_recall", float("nan"))}))

    # ---- kv-speed: decode speed and bytes at the per-layer shapes of real models
    rows += _speed(ctx, S)
    rows += _families()
    return rows


# ----------------------------------------------------------------------------- report


def _tasks(rows):
    return [t for t in ("retrieval", "recurrence", "prose") if any(r["budget"]["task"] == t for r in rows)]


def _metric(task: str) -> str:
    return "ppl" if task == "prose" else "accuracy"


def summary(rows: list[dict]) -> str:
    """Per task: the KV actually held (peak over every step, fraction of the full cache) beside
    the score at each budget; then the kv-speed table."""
    out = []
    over = [r for r in rows if r["budget"]["task"] in ("retrieval", "recurrence", "prose") and "kv_peak_fraction" in r["metrics"]
            and r["method"] not in ("tidal_decode", "full") and r["metrics"]["kv_peak_fraction"] > r["budget"]["fraction"] + r["metrics"].get("kv_slack", 0.0) + 1e-9]  # fmt: skip
    out.append(
        "Held KV: `kv_peak_fraction` is the most KV any row held after any forward (prefill included), as a fraction "
        "of the full cache at that step; `kv_mean_fraction` its mean. Every cell reads `score (peak held)`. "
        "TidalDecode holds the whole cache (it reads `budget` of it in its sparse layers). "
        + ("Rows above budget + 1/T: " + ", ".join(f"{r['method']} {r['budget']['task']} {r['budget']['fraction']:.0%} "
                                                 f"({r['metrics']['kv_peak_fraction']:.1%})" for r in over)
           if over else "Every evicting row held at most budget + 1/T at every step.")  # fmt: skip
    )
    for task in _tasks(rows):
        key = _metric(task)
        tr = [r for r in rows if r["budget"]["task"] == task]
        full = next((r for r in tr if r["method"] == "full"), None)
        budgets = sorted({r["budget"]["fraction"] for r in tr if r["method"] != "full"})
        head = ["method", *[f"{int(b * 100)}%: {key} (held)" for b in budgets], "mean held @25%", "time ratio @25%", "overhead ms @25%"]
        if task == "prose":
            head[-3:-3] = ["KL @25%", "greedy match @25%"]
        lines = [f"**{task}** ({key}; full cache: {full['metrics'][key]:.4g})" if full else f"**{task}**", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
        for method in dict.fromkeys(r["method"] for r in tr if r["method"] != "full"):
            mr = {r["budget"]["fraction"]: r["metrics"] for r in tr if r["method"] == method}
            q = mr.get(0.25, {})
            cells = [method, *[f"{mr[b][key]:.3g} ({mr[b].get('kv_peak_fraction', float('nan')):.0%})" if b in mr else "" for b in budgets]]
            cells.append(f"{q.get('kv_mean_fraction', float('nan')):.0%}")
            if task == "prose":
                cells += [f"{q.get('kl', float('nan')):.3g}", f"{q.get('greedy_match', float('nan')):.3g}"]
            cells += [f"{q.get('time_ratio', float('nan')):.2f}", f"{q['overhead_ms']:.2f}" if "overhead_ms" in q else "n/a (kvpress)"]
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    rec = [r for r in rows if r["budget"]["task"] == "recall"]
    if rec:
        out.append("**TidalDecode attention recall** (share of full attention mass on the selected tokens, sparse layers): "
                   + ", ".join(f"{int(r['budget']['fraction'] * 100)}%: {r['metrics']['attention_recall']:.3f}" for r in rec))  # fmt: skip
    sp = [r for r in rows if r["budget"]["task"] == "kv-speed"]
    if sp:
        p0 = sp[0]["params"]
        lines = [
            f"**kv-speed** (decode, batch 1, {p0['layers']} layers with the per-layer shapes of the named model, vocab 256, "
            f"{p0['dtype']} on {p0['device']}; the cache is pre-filled with random keys/values of the model's shape instead "
            "of a prefill; eviction budget 25%; median step time after warm-up; ratios against no policy in the same run, "
            "its time the mean of a run before and after the others). `attn bytes` counts the keys and values the model's "
            "attention reads per token, all layers (hardware-free).", "",
            "| shape | context | method | tokens/s | throughput vs no policy | held KV (peak) | attn bytes vs dense | peak mem MB | target |",
            "|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for r in sp:
            m, p = r["metrics"], r["params"]
            name = r["method"] + (f" ({p['select_per']})" if "select_per" in p else "")
            mem = f"{m['peak_mem_mb']:.0f}" if "peak_mem_mb" in m else "n/a (CPU)"
            lines.append(f"| {p['shape']} | {m['context']} | {name} | {m['tokens_per_s']:.2f} | {m['throughput_ratio']:.2f}x | "
                         f"{m['kv_peak_fraction']:.0%} | {m['attn_bytes_ratio']:.2f} | {mem} | {p['target']} |")  # fmt: skip
        out.append("\n".join(lines))
    fam = [r for r in rows if r["budget"]["task"] == "models"]
    if fam:
        lines = ["**Model families** (tiny random configs; a policy attached, 8 tokens generated)", "",
                 "| family | config | status |", "|---|---|---|"]  # fmt: skip
        for r in fam:
            lines.append(f"| {r['params']['family']} | {r['params']['config']} | {r['params']['status']} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def headline(method: str, rows: list[dict]) -> str | None:
    parts = []
    for task in ("retrieval", "recurrence"):
        r = next((r for r in rows if r["budget"]["task"] == task and r["budget"]["fraction"] in (0.25, 1.0)), None)
        if r is not None:
            held = r["metrics"].get("kv_peak_fraction")
            what = f"holding {held:.0%} of the KV at peak" if held is not None else f"{int(r['budget']['fraction'] * 100)}% budget"
            parts.append(f"{task} acc {r['metrics']['accuracy']:.2f} {what}")
    return "; ".join(parts) or None


def plots(rows: list[dict], out_dir) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    tasks = _tasks(rows)
    if tasks:
        # top row: the KV actually held (peak over every step); bottom row: the nominal budget.
        # TidalDecode holds everything (it reads the budget), so it is only in the bottom row.
        fig, axes = plt.subplots(2, len(tasks), figsize=(5.5 * len(tasks), 8.2), squeeze=False)
        names = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "full"))
        color = {m: f"C{i}" if i < 10 else "k" for i, m in enumerate(names)}  # the same colour in both rows
        for col, task in enumerate(tasks):
            key = _metric(task)
            tr = [r for r in rows if r["budget"]["task"] == task]
            full = next((r for r in tr if r["method"] == "full"), None)
            for row, xkey in enumerate(("kv_peak_fraction", "fraction")):
                ax = axes[row][col]
                for method in dict.fromkeys(r["method"] for r in tr if r["method"] != "full"):
                    if xkey != "fraction" and method == "tidal_decode":
                        continue
                    mr = [r for r in tr if r["method"] == method]
                    pts = sorted((r["budget"]["fraction"] if xkey == "fraction" else r["metrics"].get(xkey, float("nan")), r["metrics"][key]) for r in mr)
                    peer = method.startswith("kvpress-")
                    style = "--" if peer else "-"
                    width = 2.5 if not peer and tw.get(method).paper else 1.2
                    ax.plot([q[0] for q in pts], [q[1] for q in pts], style, marker="o", lw=width, ms=3, label=method, color=color[method])
                if full:
                    ax.axhline(full["metrics"][key], color="k", lw=0.8, ls=":", label="full cache")
                ax.set_xlabel("KV held (peak over every step, fraction of the full cache)" if xkey != "fraction" else "nominal KV budget (fraction of context)")
                ax.set_ylabel(key)
                ax.set_title(f"{task}: vs {'held KV' if xkey != 'fraction' else 'budget'}")
                if key == "ppl":
                    ax.set_yscale("log")
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(f"{out_dir}/kv_accuracy_vs_budget.png", dpi=110)
        plt.close(fig)
        made.append((
            "KV policies (solid; P12/P45 thick) and kvpress presses (dashed): task score vs the KV actually held at "
            "peak (top) and vs the nominal budget (bottom; TidalDecode holds all of it and reads the budget)",
            "kv_accuracy_vs_budget.png",
        ))
    sp = [r for r in rows if r["budget"]["task"] == "kv-speed"]
    if sp:
        groups = list(dict.fromkeys((r["params"]["shape"], r["metrics"]["context"]) for r in sp))
        fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 4.2), squeeze=False, sharey=True)
        for ax, (shape, n_ctx) in zip(axes[0], groups):
            g = [r for r in sp if r["params"]["shape"] == shape and r["metrics"]["context"] == n_ctx and r["method"] != "no-policy"]
            labels = [r["method"] + (" (kv)" if r["params"].get("select_per") == "kv_head" else "") for r in g]
            ax.bar(range(len(g)), [r["metrics"]["throughput_ratio"] for r in g], color=[f"C{i}" for i in range(len(g))])
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
            ax.set_xticks(range(len(g)), labels, rotation=70, fontsize=7)
            ax.set_title(f"{shape}, {n_ctx} tokens", fontsize=9)
        axes[0][0].set_ylabel("decode throughput / no policy")
        fig.tight_layout()
        fig.savefig(f"{out_dir}/kv_decode_time.png", dpi=110)
        plt.close(fig)
        made.append(("kv-speed: decode throughput relative to no policy (same run), per model shape and context; "
                     f"{sp[0]['params']['device']} figures", "kv_decode_time.png"))  # fmt: skip
    rec = [r for r in rows if r["budget"]["task"] == "recall"]
    if rec:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        pts = sorted((r["budget"]["fraction"], r["metrics"]["attention_recall"]) for r in rec)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_xlabel("TidalDecode budget (fraction of context)")
        ax.set_ylabel("attention recall in sparse layers")
        ax.set_ylim(0, 1.02)
        fig.tight_layout()
        fig.savefig(f"{out_dir}/kv_tidal_recall.png", dpi=110)
        plt.close(fig)
        made.append(("TidalDecode: share of the full attention mass its selected tokens carry", "kv_tidal_recall.png"))
    return made
