"""Suite ``speculative``: speculative decoders of tokenworks and Hugging Face's assisted generation, same models, same run.

Models: the target is the KV family's task model (a 6-layer d=128 Llama, committed under
``assets/kv/task-model``); the draft is the reference LM (4 layers, d=128, ``assets/reference-lm``).
Both were trained here, independently, with the same tokenizer (the reference BPE); both are
small, so the draft costs a large fraction of a target forward (measured: ``draft_cost``).
Prompts: the openings of held-out prose documents (``tokenworks.data.load_prose("test")``),
of different lengths; greedy continuation of ``new`` tokens.

Per method (``tw.methods(kind="spec_decoder")`` at each draft length k) and per peer
(HF ``generate(assistant_model=draft)`` with a constant ``num_assistant_tokens=k`` and no
confidence cut-off; HF ``generate(prompt_lookup_num_tokens=k)``), all at batch 1 (HF's
assisted generation does not batch):

- ``tokens_per_target_forward`` (mean accepted length + 1 per verification, counted with a
  forward hook on the target, prefill included) and ``target_forwards_per_token``;
- ``speedup_forwards`` = plain decoding's target forwards / the method's (plain = 1 per token),
  ``speedup_wall`` = plain greedy decoding's wall time / the method's, both in the same run;
- ``identical`` = share of prompts whose greedy output equals the target's own ``generate``;
- ``acceptance`` = per-draft acceptance ``a`` = accepted / (accepted + rejected) drafts, only
  drafts a verification reached (ours) or, for peers (which do not report it), the ``a`` whose
  theory gives the measured tokens per verification; ``theory_tokens_per_forward`` =
  ``(1 - a^(k+1)) / (1 - a)`` (Leviathan et al. 2023, eq. 1) at the measured ``a``;
  ``theory_speedup_wall`` = that / ``(k * draft_cost + 1)`` (eq. 2 with the measured cost ratio
  of one draft forward to one target forward); ``fraction_of_theory`` = measured / theory.

R2R (P62) rows (when the large LM is trained, ``assets/decode/large-lm``): small = the
reference LM, large = the decoding family's large LM; a router trained on divergence labels
of train-split windows, evaluated teacher-forced on held-out windows: perplexity of the routed
mixture and agreement with the large model's argmax vs the share of large-model tokens, for
the router, confidence routing and random routing at the same shares (Pareto plot).

LANTERN (P17) rows (``params.task = "image-ar"``; :mod:`bench.suites.speculative_lantern`): a
class-conditional image-token AR pair over the ``vq-16`` tokenizer, exact speculative sampling
vs LANTERN's relaxed acceptance at several delta (sampled drafts, and LANTERN++'s static argmax
drafts), with accepted length, target forwards per token, the TV bound, and ``fd_local`` /
classifier accuracy of the generated images against the target's own sampling.

FLASH (P31) rows (``params.task = "caption-vlm"``; :mod:`bench.suites.speculative_flash`): a
tiny captioning VLM over ``vq-16`` image tokens, its self-distilled draft head over 4
learned-query-compressed visual tokens proposing k tokens per pass vs a text-only head and
prompt lookup; lossless (``identical``), accepted length and the one-pass theory.

Our methods also run batched (all prompts at once, left-padded; ``batch`` in the budget) and
with sampling at temperature 1 (acceptance only: outputs are random). Wall times are CPU
figures on whatever the machine gives (shared cores in the project's runs).
"""

from __future__ import annotations

import time
from typing import Any

import torch

import tokenworks as tw

NAME = "speculative"
DESCRIPTION = __doc__.split("\n\n", 1)[1]


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(n_prompts=5, prompt_tokens=(24, 48), new=32, ks=(4,))
    return dict(n_prompts=16, prompt_tokens=(24, 96), new=64, ks=(2, 4, 6))


def _models():
    from tokenworks.kvcache.task_model import task_model
    from tokenworks.models import reference_lm

    target, tok = task_model(train_if_missing=False)
    draft, _ = reference_lm(train_if_missing=False)
    return target.eval(), draft.eval(), tok


def _prompts(tok, n: int, lengths: tuple[int, int]) -> list[list[int]]:
    from tokenworks.data import load_prose

    docs = [d for d in load_prose("test").documents if len(d) > 2000]
    out = []
    for i, d in enumerate(docs[:n]):
        ids = tok(d[:2000], add_special_tokens=False)["input_ids"]
        length = lengths[0] + (lengths[1] - lengths[0]) * i // max(1, n - 1)
        out.append(ids[:length])
    return out


class _Counter:
    """Counts forwards of a model (HF generate and ours alike)."""

    def __init__(self, model):
        self.n = 0
        self.h = model.register_forward_pre_hook(lambda *_: setattr(self, "n", self.n + 1))

    def close(self):
        self.h.remove()


def _rate(stats) -> float:
    """Per-draft acceptance over several runs: accepted / (accepted + rejected) drafts."""
    a = sum(s.accepted_total for s in stats)
    r = sum(s.rejections for s in stats)
    return a / (a + r) if a + r else 0.0


def _theory(a: float, k: int) -> float:
    return float(k + 1) if a >= 1 else (1 - a ** (k + 1)) / (1 - a)


def _invert_theory(tpf: float, k: int) -> float:
    """The per-draft acceptance a with (1 - a^(k+1)) / (1 - a) = tpf (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _theory(mid, k) < tpf else (lo, mid)
    return (lo + hi) / 2


def run(ctx) -> list[dict]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # HF's assisted generation warns on every call
    try:
        return _run(ctx)
    finally:
        hf_logging.set_verbosity(level)


@torch.no_grad()
def _run(ctx) -> list[dict]:
    torch.manual_seed(ctx.seed)
    s = _sizes(ctx.quick)
    target, draft, tok = _models()
    dev = torch.device(ctx.device)
    target, draft = target.to(dev), draft.to(dev)
    prompts = _prompts(tok, s["n_prompts"], s["prompt_tokens"])
    new, eos, pad = s["new"], tok.eos_token_id, tok.pad_token_id
    hf_kw = dict(max_new_tokens=new, do_sample=False, pad_token_id=pad, eos_token_id=eos)
    ct, cd = _Counter(target), _Counter(draft)

    def one(fn) -> tuple[list[list[int]], float, int, int]:
        outs, secs, ft, fd = [], 0.0, 0, 0
        for p in prompts:
            ids = torch.tensor([p], device=dev)
            ct.n = cd.n = 0
            t0 = time.perf_counter()
            toks = fn(ids)
            secs += time.perf_counter() - t0
            ft, fd = ft + ct.n, fd + cd.n
            outs.append(toks)
        return outs, secs, ft, fd

    def hf(model, **kw):
        def fn(ids):
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **hf_kw, **kw)[0, ids.shape[1] :].tolist()
            return out[: out.index(eos) + 1] if eos in out else out

        return fn

    # plain decoding of the target (reference outputs and times) and of the draft (its cost)
    one(hf(target))  # warm-up
    ref, t_plain, f_plain, _ = one(hf(target))
    _, t_draft, _, _ = one(hf(draft))
    n_tokens = sum(len(r) for r in ref)
    draft_cost = t_draft / t_plain
    rows = [_row("target-plain", None, {"k": 0}, 1, dict(tokens_per_target_forward=n_tokens / f_plain, target_forwards_per_token=f_plain / n_tokens,
                 speedup_forwards=1.0, speedup_wall=1.0, identical=1.0, ms_per_token=1000 * t_plain / n_tokens, draft_cost=draft_cost))]  # fmt: skip

    def metrics(outs, secs, ft, fd, k, acc_rate=None, drafted=True):
        m = {
            "tokens_per_target_forward": sum(len(o) for o in outs) / ft,
            "target_forwards_per_token": ft / sum(len(o) for o in outs),
            "speedup_forwards": (f_plain / n_tokens) / (ft / sum(len(o) for o in outs)),
            "speedup_wall": (t_plain / n_tokens) / (secs / sum(len(o) for o in outs)),
            "identical": sum(o == r for o, r in zip(outs, ref)) / len(ref),
            "ms_per_token": 1000 * secs / sum(len(o) for o in outs),
            "draft_forwards_per_token": fd / sum(len(o) for o in outs),
        }
        # tokens per verification forward (the prefill forward excluded)
        tpf = sum(len(o) for o in outs) / max(1, ft - len(outs))
        a = acc_rate if acc_rate is not None else _invert_theory(tpf, k)
        theory = _theory(a, k)
        m.update(acceptance=a, theory_tokens_per_forward=theory, fraction_of_theory=tpf / theory)
        if drafted:
            tw_theory = theory / (k * draft_cost + 1)
            m.update(theory_speedup_wall=tw_theory, fraction_of_theory_wall=m["speedup_wall"] / tw_theory)
        return m

    for k in s["ks"]:
        text_methods = [m for m in tw.methods(kind="spec_decoder") if m.name not in ("lantern", "flash")]  # image-token pair / VLM below
        for info in ctx.track(text_methods, f"speculative k={k}"):
            dec = info.create(k=k)
            d = draft if dec.needs_draft else None
            stats = []

            def ours(ids, dec=dec, d=d, stats=stats):
                out = dec.generate(target, ids, draft=d, max_new_tokens=new, eos_token_id=eos, pad_token_id=pad)
                stats.append(out.stats)
                return out.tokens[0]

            outs, secs, ft, fd = one(ours)
            acc = _rate(stats)
            rows.append(_row(info.name, info.paper, {"k": k}, 1, metrics(outs, secs, ft, fd, k, acc, drafted=dec.needs_draft)))
            # batched (left-padded) greedy and batch-1 sampling
            T = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), T), pad, dtype=torch.long, device=dev)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(prompts):
                ids[i, T - len(p) :] = torch.tensor(p)
                mask[i, T - len(p) :] = 1
            ct.n = 0
            t0 = time.perf_counter()
            out = dec.generate(target, ids, mask, draft=d, max_new_tokens=new, eos_token_id=eos, pad_token_id=pad)
            secs = time.perf_counter() - t0
            rows.append(_row(info.name, info.paper, {"k": k}, len(prompts), {
                "tokens_per_target_forward": out.stats.new_tokens / out.stats.target_forwards, "acceptance": out.stats.acceptance_rate,
                "mean_accepted": out.stats.mean_accepted, "identical": sum(o == r for o, r in zip(out.tokens, ref)) / len(ref),
                "ms_per_token": 1000 * secs / out.stats.new_tokens}))  # fmt: skip
            samp = [dec.generate(target, torch.tensor([p], device=dev), draft=d, max_new_tokens=new, do_sample=True, eos_token_id=eos, seed=ctx.seed + i).stats for i, p in enumerate(prompts)]
            a = _rate(samp)
            ntok = sum(s_.new_tokens for s_ in samp)
            nver = sum(s_.steps for s_ in samp)
            rows.append(_row(info.name, info.paper, {"k": k, "sampling": True}, 1, {"acceptance": a, "tokens_per_target_forward": ntok / max(1, nver), "theory_tokens_per_forward": _theory(a, k)}))
        # peers
        # HF reads these from the assistant's own generation_config
        gc = draft.generation_config
        saved = (gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold)
        gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold = k, "constant", 0.0
        try:
            outs, secs, ft, fd = one(hf(target, assistant_model=draft))
        finally:
            gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold = saved
        rows.append(_row("hf-assisted", None, {"k": k}, 1, metrics(outs, secs, ft, fd, k)))
        outs, secs, ft, fd = one(hf(target, prompt_lookup_num_tokens=k))
        rows.append(_row("hf-prompt-lookup", None, {"k": k}, 1, metrics(outs, secs, ft, fd, k, drafted=False)))
    ct.close()
    cd.close()
    rows += _r2r(ctx, s, draft, tok)
    from bench.suites.speculative_lantern import lantern_rows

    rows += lantern_rows(ctx)
    from bench.suites.speculative_flash import flash_rows

    rows += flash_rows(ctx)
    return rows


R2R_NOTE = "R2R (P62) needs the large LM (assets/decode/large-lm, `tokenworks train decode-large-lm --out assets/decode/large-lm`)"


@torch.no_grad()
def _r2r(ctx, s, small, tok, large=None) -> list[dict]:
    """P62 R2R: small = the reference LM, large = the decoding family's large LM. Router trained
    on divergence labels over train-split prose windows; evaluated teacher-forced on held-out
    windows (perplexity and agreement with the large model's argmax vs share of large-model
    tokens) against random routing and confidence routing at equal shares."""
    from tokenworks.data import load_prose
    from tokenworks.decode.r2r import divergence_labels, router_features, routed_nll, train_router
    from tokenworks.models.lm import token_stream

    if large is None:
        from tokenworks.decode.large_lm import large_lm

        try:
            large, _ = large_lm(train_if_missing=False)
        except FileNotFoundError:
            ctx.log(f"skipping R2R: {R2R_NOTE} is not trained")
            return []
    n_train, n_test, L = (32, 24, 64) if ctx.quick else (96, 48, 128)
    g = torch.Generator().manual_seed(ctx.seed)

    def windows(split, n):
        stream = token_stream(load_prose(split).documents[:200], tok)
        starts = torch.randint(0, stream.numel() - L - 1, (n,), generator=g)
        return torch.stack([stream[i : i + L] for i in starts.tolist()])

    start = 16
    tr = windows("train", n_train)
    differ, div = divergence_labels(small, large, tr, start=start, rollout=6)
    feats, _, _ = router_features(small, tr)
    f = feats[:, start - 1 : -1].reshape(-1, feats.shape[-1])
    router = train_router(f, div.flatten(), d_model=small.config.hidden_size, seed=ctx.seed)
    te = windows("test", n_test)
    feats, spred, slog = router_features(small, te)
    llog = large(input_ids=te).logits.float()
    sl = (slice(None), slice(start - 1, -1))
    feats, slog, llog, tgt = feats[sl], slog[sl], llog[sl], te[:, start:]
    lpred = llog.argmax(-1)
    p_router = torch.sigmoid(router(feats))
    conf = torch.softmax(slog, -1).max(-1).values
    # decoding check: every token routed to the large model reproduces its own greedy generate
    ids = te[:4, :start]
    eos = tok.eos_token_id
    routed, _ = tw.create("r2r", route="all").generate(small, large, ids, max_new_tokens=16, eos_token_id=eos)
    ref = large.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
    ref = [r[: r.index(eos) + 1] if eos in r else r for r in ref[:, start:].tolist()]
    rows = []
    base = {"label_divergent_share": float(div.float().mean()), "label_differ_share": float(differ.float().mean()),
            "all_routed_identical": sum(a == b for a, b in zip(routed, ref)) / len(ref)}  # fmt: skip
    for share in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
        n = round(share * p_router.numel())
        for route, score in (("router", p_router), ("confidence", -conf), ("random", torch.rand(p_router.shape, generator=g))):
            mask = torch.zeros(score.numel(), dtype=torch.bool)
            if n:
                mask[score.flatten().topk(n).indices] = True
            mask = mask.view(score.shape)
            nll, got_share = routed_nll(slog, llog, tgt, mask)
            agree = float((torch.where(mask, lpred, slog.argmax(-1)) == lpred).float().mean())
            name = "r2r" if route == "router" else f"r2r-{route}-routing"
            rows.append(_row(name, "P62" if route == "router" else None, {"route": route, "target_share": share}, n_test,
                             {"ppl": float(torch.exp(torch.tensor(nll))), "large_share": got_share, "agreement_with_large": agree, **base}))  # fmt: skip
    return rows


def _row(method: str, paper, params: dict, batch: int, metrics: dict) -> dict:
    return {
        "family": "SPEC", "method": method, "paper": paper, "params": params, "budget": {"batch": batch},
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
    }  # fmt: skip


def headline(method: str, rows: list[dict]) -> str | None:
    if method == "lantern":
        r = next((r for r in rows if r["params"].get("delta") == 0.1 and not r["params"].get("static")), None)
        return None if r is None else (f"image AR, delta=0.1: {r['metrics']['tokens_per_target_forward']:.2f} tokens/target forward, "
                                       f"TV to target {r['metrics']['tv']:.3f}, fd_local {r['metrics']['fd_local']:.1f}")  # fmt: skip
    if method == "flash":
        r = next((r for r in rows if r["params"].get("k") == 4), None)
        return None if r is None else (f"caption VLM, k=4: {r['metrics']['tokens_per_target_forward']:.2f} tokens/target forward, "
                                       f"identical {r['metrics']['identical']:.0%}, {r['metrics']['speedup_wall']:.2f}x wall (CPU)")  # fmt: skip
    rows = [r for r in rows if r["params"].get("task") not in ("image-ar", "caption-vlm")]
    if method == "r2r":
        r = next((r for r in rows if r["params"].get("target_share") == 0.2), None)
        return None if r is None else f"20% large-model tokens: ppl {r['metrics']['ppl']:.1f}, agreement with large {r['metrics']['agreement_with_large']:.2f}"
    r = next((r for r in rows if r["budget"].get("batch") == 1 and not r["params"].get("sampling") and r["params"].get("k") == 4), None)
    if r is None:
        return None
    m = r["metrics"]
    return (f"k=4 greedy: {m['tokens_per_target_forward']:.2f} tokens/target forward, {m['speedup_forwards']:.2f}x fewer target "
            f"forwards, {m['speedup_wall']:.2f}x wall (CPU), identical {m['identical']:.0%}")  # fmt: skip


def plots(rows: list[dict], out_dir) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.suites.speculative_lantern import lantern_plot

    made = _r2r_plot(rows, out_dir) + lantern_plot(rows, out_dir)
    pts = [r for r in rows if r["budget"].get("batch") == 1 and not r["params"].get("sampling") and "acceptance" in r["metrics"]]
    if not pts:
        return made
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    a = torch.linspace(0, 0.99, 100)
    for k in sorted({r["params"]["k"] for r in pts}):
        axes[0].plot(a, [_theory(float(x), k) for x in a], ":", lw=1, color="grey")
        axes[0].text(0.99, _theory(0.99, k), f"theory k={k}", fontsize=7, ha="right")
    names = list(dict.fromkeys(r["method"] for r in pts))
    for i, name in enumerate(names):
        mr = [r for r in pts if r["method"] == name]
        style = "s" if name.startswith("hf-") else "o"
        axes[0].plot([r["metrics"]["acceptance"] for r in mr], [r["metrics"]["tokens_per_target_forward"] for r in mr], style, color=f"C{i}", label=name)
        axes[1].plot([r["metrics"]["acceptance"] for r in mr], [r["metrics"]["speedup_wall"] for r in mr], style, color=f"C{i}", label=name)
    axes[0].set_xlabel("acceptance per draft token")
    axes[0].set_ylabel("tokens per target forward")
    axes[1].set_xlabel("acceptance per draft token")
    axes[1].set_ylabel("wall-time speed-up over plain decoding (CPU)")
    axes[1].axhline(1.0, color="k", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fname = "speculative_speedup_vs_acceptance.png"
    fig.savefig(out_dir / fname, dpi=100)
    plt.close(fig)
    return [("Speculative decoding: tokens per target forward and wall-time speed-up vs measured acceptance (batch 1, greedy)", fname), *made]


def _r2r_plot(rows, out_dir) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    rr = [r for r in rows if "target_share" in r["params"]]
    if not rr:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for route in ("router", "confidence", "random"):
        mr = sorted((r for r in rr if r["params"]["route"] == route), key=lambda r: r["metrics"]["large_share"])
        x = [r["metrics"]["large_share"] for r in mr]
        axes[0].plot(x, [r["metrics"]["ppl"] for r in mr], marker="o", label=route)
        axes[1].plot(x, [r["metrics"]["agreement_with_large"] for r in mr], marker="o", label=route)
    axes[0].set_xlabel("share of large-model tokens")
    axes[0].set_ylabel("held-out perplexity (teacher-forced mixture)")
    axes[1].set_xlabel("share of large-model tokens")
    axes[1].set_ylabel("agreement with the large model's argmax")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fname = "r2r_pareto.png"
    fig.savefig(out_dir / fname, dpi=100)
    plt.close(fig)
    return [("R2R (P62): perplexity and agreement vs share of large-model tokens; router vs confidence and random routing", fname)]
