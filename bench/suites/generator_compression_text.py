"""P58 Token-Shuffle and P27 text-token rows of the ``generator-compression`` suite (a helper
module, not a suite of its own; :mod:`bench.suites.generator_compression` calls
:func:`shuffle_rows`, :func:`text_rows`, :func:`extra_plots` and :func:`text_verdicts`).

Token-Shuffle (``params.task = "token-shuffle"``). Models (``tokenworks train gen-<name>``,
committed under ``assets/generate/``, d=96, 2 layers, 400 steps of 32 scenes): raster AR over the
196 ``patch2d-7x7`` ids of 2x2 same-class scenes (14x14 grid; ``ar-patch2d-2x2`` = s=1, the
plain model) and P58 with s=2 (``shuffle2-patch2d-2x2``: 49 positions, 49 network evaluations);
s=4 does not divide 14 (the generator refuses it). Per row: fd_local and class accuracy of the
scene *items* (each 28x28 quarter, labelled with the scene's class) against the test images,
precision/recall, generator GFLOPs per scene (``torch.utils.flop_counter``, guidance included),
ms per scene (CPU, this machine), network evaluations, transformer positions; cfg 2; 3 sampling
seeds (spread = sampling only; one trained model per s).

P27 (``params.task = "text-tokens"`` / ``"text-leakage"``). Model: ``maskgit-text``
(:class:`~tokenworks.generate.text_cond.TextMaskGIT`, cross-attention to per-token MiniLM states,
500 steps, captions with attribute words dropped at random). Test captions: each test image's
class and its four attribute tertiles ("a dark, large, wide, plain pullover"). Rows per share
of text tokens kept (1, 0.5, 0.25) and score (``norm``, ``attention`` = the generator's
cross-attention mass at its first step, ``random`` = the control): class accuracy (frozen
classifier), attribute accuracy (tertile of the sample's pixel statistic = the named one),
``error_rate`` = share of the caption's items (class + 4 attributes) the sample misses (the
paper's "errors" at this scale), fd_local, text tokens kept; plus share 1 with the leakage fix on
the class noun. Leakage probe: captions naming one attribute ("a dark pullover"); the rate at
which the sample shows the named tertile when the caption names it, when the word's tokens are
removed after encoding (``dropped``: what the rest of the tokens carry), with the leakage fix on
the class noun (``dropped-fix``), and for the caption without the word (``absent``, ``absent-fix``:
the base rate). ``leakage = P(dropped) - P(absent)``: the unnamed attribute showing through
contextual flow into the other tokens; the fix's ``residual = P(dropped-fix) - P(absent-fix)``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

CFG = 2.0
SEEDS = (0, 1, 2)
SHUFFLE_MODELS = {1: "ar-patch2d-2x2", 2: "shuffle2-patch2d-2x2"}
TEXT_MODEL = "maskgit-text"
TEXT_STEPS = 8
SHARES = (1.0, 0.5, 0.25)
SCORES = ("norm", "attention", "random")
SHUFFLE_PNG, TEXT_PNG = "gencomp_token_shuffle.png", "gencomp_text_tokens.png"


def _load(name):
    from tokenworks.generate.train import image_generator

    gen = image_generator(name, train_if_missing=False)
    gen.cfg = CFG
    return gen


def _mean_seeds(per):
    m = {k: float(np.mean(v)) for k, v in per.items()}
    return m | {f"{k}_seeds": v for k, v in per.items() if k in ("fd_local", "class_accuracy", "error_rate", "rate", "attribute_accuracy")}


# ---------------------------------------------------------------------------------- P58
@torch.no_grad()
def shuffle_rows(ctx) -> list[dict]:
    from tokenworks.data import load_images
    from tokenworks.generate.evaluate import generation_metrics, sample_images
    from tokenworks.generate.scenes import scene_items
    from tokenworks.generate.train import load_tokenizer
    from tokenworks.registry import get

    try:
        gens = {s: _load(name) for s, name in SHUFFLE_MODELS.items()}
    except FileNotFoundError as e:
        ctx.log(f"skipping Token-Shuffle: {e}")
        return []
    n = 20 if ctx.quick else 250  # scenes per seed (4 items each)
    labels = torch.arange(10).repeat_interleave(n // 10)
    real = load_images("fashion-mnist", "test").take(1000).float()
    rows = []
    for s, gen in gens.items():
        tok = load_tokenizer(gen.tokenizer)
        per: dict[str, list[float]] = {}
        for seed in SEEDS:
            imgs, info = sample_images(gen, tok, labels, steps=1, seed=1000 * seed, flops=seed == 0)
            items = scene_items(imgs, 2)
            for k, v in (generation_metrics(items, labels.repeat_interleave(4), real) | info).items():
                per.setdefault(k, []).append(v)
        m = _mean_seeds(per)
        m["positions"] = getattr(gen, "positions", gen.num_tokens)
        method = gen.registry_name
        rows.append({"family": "CMP", "method": method, "paper": get(method).paper,
                     "params": {"task": "token-shuffle", "shuffle": s, "generator": SHUFFLE_MODELS[s], "tokens": gen.num_tokens, "grid": 14,
                                "cfg": CFG, "scenes": n, "items": 4 * n},
                     "budget": {"tokens": gen.num_tokens, "positions": m["positions"], "gflops_per_image": m.get("gflops_per_image", math.nan)},
                     "metrics": m})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- P27
def _attribute_hits(images, want, cuts):
    """(B, 4) bool: the sample's attribute tertile equals the wanted one (want = 3: not named -> False)."""
    from tokenworks.vision.captions import ATTRIBUTES, image_attributes

    attrs = image_attributes(images)
    got = torch.stack([torch.bucketize(attrs[k].contiguous(), cuts[k].contiguous()) for k in ATTRIBUTES], 1)
    return got == want


def _noun_fix(text, labels, attrs):
    """The leakage fix on the class noun of each caption: its tokens get the noun's plain states."""
    from tokenworks.compress.follow_flow import plain_states, uncontextualize
    from tokenworks.data.images import FASHION_CLASSES
    from tokenworks.generate.text_cond import caption_text
    from tokenworks.vision.captions import item_token_positions

    plain = {c: plain_states(FASHION_CLASSES[c].lower()) for c in range(10)}
    pos, rep = [], []
    for c, a in zip(labels.tolist(), attrs.tolist()):
        pos.append(item_token_positions(caption_text(c, a), FASHION_CLASSES[c].lower()))
        rep.append(plain[c])
    return text.__class__(uncontextualize(text.states, pos, rep), text.mask)


@torch.no_grad()
def text_rows(ctx) -> list[dict]:
    from tokenworks.data import load_images
    from tokenworks.data.images import FASHION_CLASSES
    from tokenworks.generate.evaluate import generation_metrics
    from tokenworks.generate.text_cond import ABSENT, CaptionData, caption_id, caption_table, caption_text
    from tokenworks.generate.train import load_tokenizer
    from tokenworks.models.classifier import image_classifier
    from tokenworks.registry import create
    from tokenworks.vision.captions import BRIGHTNESS, SHAPE, SIZE, TEXTURE, item_token_positions

    try:
        gen = _load(TEXT_MODEL)
    except FileNotFoundError as e:
        ctx.log(f"skipping P27: {e}")
        return []
    tok = load_tokenizer(gen.tokenizer)
    n = 30 if ctx.quick else 1000
    data = CaptionData("test", n)
    labels, attrs = data.labels, data.attrs
    text = caption_table(caption_id(labels, attrs))
    real = load_images("fashion-mnist", "test").take(500 if ctx.quick else 2000).float()
    att = gen.text_attention(text)
    rows = []

    def measure(ctx_text, seeds=SEEDS):
        per: dict[str, list[float]] = {}
        for seed in seeds:
            t0 = time.perf_counter()
            out = gen.generate(ctx_text, steps=TEXT_STEPS, seed=1000 * seed)
            imgs = tok.decode(out.tokens)
            ms = 1000 * (time.perf_counter() - t0) / len(labels)
            g = generation_metrics(imgs, labels, real)
            hits = _attribute_hits(imgs, attrs, data.cuts).float()
            cls_hit = (image_classifier("fashion-mnist")(imgs).argmax(-1) == labels).float()
            err = 1 - (cls_hit + hits.sum(1)) / 5
            for k, v in {"fd_local": g["fd_local"], "class_accuracy": g["class_accuracy"], "attribute_accuracy": float(hits.mean()),
                         "error_rate": float(err.mean()), "ms_per_image": ms}.items():  # fmt: skip
                per.setdefault(k, []).append(v)
        return _mean_seeds(per)

    conds = [(1.0, "none", False)] + [(sh, sc, False) for sh in SHARES[1:] for sc in SCORES] + [(1.0, "none", True)]
    for share, score, fix in ctx.track(conds, "generator-compression: P27 text tokens"):
        sel_mask = text.mask if share == 1.0 else create("follow-the-flow", keep=share, score=score).select(text.states, text.mask, att)
        t = text.with_mask(sel_mask)
        if fix:
            t = _noun_fix(t, labels, attrs)
        m = measure(t) | {"text_tokens": float(text.mask.sum(1).float().mean()), "text_tokens_kept": float(sel_mask.sum(1).float().mean())}
        m["share_kept"] = m["text_tokens_kept"] / m["text_tokens"]
        rows.append({"family": "CMP", "method": "follow-the-flow" if share < 1 or fix else "text-maskgit", "paper": "P27" if share < 1 or fix else None,
                     "params": {"task": "text-tokens", "keep": share, "score": score, "leakage_fix": fix, "generator": TEXT_MODEL, "steps": TEXT_STEPS,
                                "cfg": CFG, "samples": n},
                     "budget": {"text_tokens_kept": m["text_tokens_kept"], "share_kept": m["share_kept"]}, "metrics": m})  # fmt: skip

    # leakage probe: one attribute named (kind cycles over the 4), its own tertile
    kind = torch.arange(n) % 4
    one = torch.full_like(attrs, ABSENT)
    one[torch.arange(n), kind] = attrs[torch.arange(n), kind]
    none = torch.full_like(attrs, ABSENT)
    named, absent = caption_table(caption_id(labels, one)), caption_table(caption_id(labels, none))
    words = (BRIGHTNESS, SIZE, SHAPE, TEXTURE)
    drop = named.mask.clone()
    for i, (c, a) in enumerate(zip(labels.tolist(), one.tolist())):
        k = int(kind[i])
        drop[i, item_token_positions(caption_text(c, a), words[k][a[k]])] = False
    dropped = named.with_mask(drop)
    probes = {"named": named, "dropped": dropped, "dropped-fix": _noun_fix(dropped, labels, one),
              "absent": absent, "absent-fix": _noun_fix(absent, labels, none)}  # fmt: skip
    want = torch.where(torch.arange(4)[None] == kind[:, None], attrs, torch.full_like(attrs, ABSENT))
    rates = {}
    for name, t in ctx.track(list(probes.items()), "generator-compression: P27 leakage"):
        per = []
        for seed in SEEDS:
            imgs = tok.decode(gen.generate(t, steps=TEXT_STEPS, seed=1000 * seed).tokens)
            per.append(float(_attribute_hits(imgs, want, data.cuts).any(1).float().mean()))
        rates[name] = per
        rows.append({"family": "CMP", "method": "follow-the-flow" if name != "named" else "text-maskgit", "paper": "P27" if name != "named" else None,
                     "params": {"task": "text-leakage", "condition": name, "generator": TEXT_MODEL, "steps": TEXT_STEPS, "cfg": CFG, "samples": n},
                     "budget": {}, "metrics": {"rate": float(np.mean(per)), "rate_seeds": per}})  # fmt: skip
    leak = [a - b for a, b in zip(rates["dropped"], rates["absent"])]
    resid = [a - b for a, b in zip(rates["dropped-fix"], rates["absent-fix"])]
    rows.append({"family": "CMP", "method": "follow-the-flow", "paper": "P27",
                 "params": {"task": "text-leakage", "condition": "summary", "generator": TEXT_MODEL, "samples": n, "classes": list(FASHION_CLASSES)},
                 "budget": {}, "metrics": {"leakage": float(np.mean(leak)), "leakage_seeds": leak, "leakage_fixed": float(np.mean(resid)),
                                           "leakage_fixed_seeds": resid, "fix_reduction": float(1 - np.mean(resid) / np.mean(leak)) if np.mean(leak) > 0 else math.nan}})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------- verdicts, plots
def text_verdicts(rows: list[dict]) -> list[str]:
    from bench.verdict import judge

    out = []
    ts = {r["params"]["shuffle"]: r["metrics"] for r in rows if r["params"].get("task") == "token-shuffle"}
    if 1 in ts:
        for s, m in sorted(ts.items()):
            if s == 1:
                continue
            for key, hib in (("fd_local", False), ("class_accuracy", True)):
                v = judge((1.0, m[f"{key}_seeds"]), [(1.0, ts[1][f"{key}_seeds"])], higher_is_better=hib)
                out.append(f"- P58 Token-Shuffle s={s} vs s=1 ({m['positions']} vs {ts[1]['positions']} transformer positions, "
                           f"{m['gflops_per_image'] / ts[1]['gflops_per_image']:.2f}x the GFLOPs, {m['ms_per_image'] / ts[1]['ms_per_image']:.2f}x the time): "
                           f"{key} {m[key]:.3f} vs {ts[1][key]:.3f}: {v.text()}")  # fmt: skip
    tt = {(r["params"]["keep"], r["params"]["score"], r["params"]["leakage_fix"]): r["metrics"] for r in rows if r["params"].get("task") == "text-tokens"}
    full = tt.get((1.0, "none", False))
    if full:
        for (share, score, fix), m in sorted(tt.items()):
            if share == 1.0 and not fix:
                continue
            v = judge((1.0, m["error_rate_seeds"]), [(1.0, full["error_rate_seeds"])], higher_is_better=False)
            what = "leakage fix on the noun, all tokens" if fix else f"keep {share:g} by {score}"
            out.append(f"- P27 {what} vs all text tokens: error rate {m['error_rate']:.3f} vs {full['error_rate']:.3f} "
                       f"(class acc {m['class_accuracy']:.2f} vs {full['class_accuracy']:.2f}): {v.text()}")  # fmt: skip
            if score in ("norm", "attention") and (share, "random", False) in tt:
                ctrl = tt[(share, "random", False)]
                v = judge((1.0, m["error_rate_seeds"]), [(1.0, ctrl["error_rate_seeds"])], higher_is_better=False)
                out.append(f"  - vs random tokens at keep {share:g}: {m['error_rate']:.3f} vs {ctrl['error_rate']:.3f}: {v.text()}")
    lk = next((r["metrics"] for r in rows if r["params"].get("task") == "text-leakage" and r["params"].get("condition") == "summary"), None)
    if lk:
        v = judge((1.0, lk["leakage_fixed_seeds"]), [(1.0, lk["leakage_seeds"])], higher_is_better=False)
        out.append(f"- P27 leakage fix: unnamed-attribute leakage {lk['leakage']:.3f} -> {lk['leakage_fixed']:.3f} with the noun uncontextualized "
                   f"(reduction {lk['fix_reduction']:.0%}; paper 85%): {v.text()}")  # fmt: skip
    return out


def extra_plots(ctx, rows: list[dict], out_dir) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    made = []
    ts = sorted((r for r in rows if r["params"].get("task") == "token-shuffle"), key=lambda r: r["params"]["shuffle"])
    if ts:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, key in zip(axes, ("fd_local", "class_accuracy")):
            x = [r["metrics"]["gflops_per_image"] for r in ts]
            y = [r["metrics"][key] for r in ts]
            err = [np.ptp(r["metrics"][f"{key}_seeds"]) / 2 for r in ts]
            ax.errorbar(x, y, yerr=err, fmt="-o", ms=5)
            for r, xi, yi in zip(ts, x, y):
                ax.annotate(f"s={r['params']['shuffle']} ({r['metrics']['positions']} pos.)", (xi, yi), fontsize=8, xytext=(4, 4), textcoords="offset points")
            ax.set(xscale="log", xlabel="generator GFLOPs per 2x2 scene (cfg 2)", ylabel=key)
            ax.grid(alpha=0.3)
        fig.suptitle("P58 Token-Shuffle on the 14x14 scene grid: quality vs compute (bars: seed range)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / SHUFFLE_PNG, dpi=110)
        plt.close(fig)
        made.append(("P58 Token-Shuffle: fd_local and class accuracy of the scene items vs GFLOPs per scene at s = 1, 2", SHUFFLE_PNG))
    tt = [r for r in rows if r["params"].get("task") == "text-tokens"]
    if tt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        full = next((r for r in tt if r["params"]["keep"] == 1.0 and not r["params"]["leakage_fix"]), None)
        for i, score in enumerate(SCORES):
            rs = sorted((r for r in tt if r["params"]["score"] == score), key=lambda r: r["metrics"]["share_kept"])
            rs = rs + ([full] if full else [])
            for ax, key in zip(axes[:2], ("error_rate", "class_accuracy")):
                ax.errorbar([r["metrics"]["share_kept"] for r in rs], [r["metrics"][key] for r in rs],
                            yerr=[np.ptp(r["metrics"][f"{key}_seeds"]) / 2 for r in rs], fmt="-o", ms=4, color=f"C{i}", label=score)  # fmt: skip
        for ax, key in zip(axes[:2], ("error_rate", "class_accuracy")):
            ax.set(xlabel="share of caption tokens kept", ylabel=key)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        lk = {r["params"]["condition"]: r["metrics"] for r in rows if r["params"].get("task") == "text-leakage" and "rate" in r["metrics"]}
        if lk:
            names = list(lk)
            axes[2].bar(names, [lk[k]["rate"] for k in names], yerr=[np.ptp(lk[k]["rate_seeds"]) / 2 for k in names], color="C7")
            axes[2].set(ylabel="share of samples with the attribute's tertile", title="leakage probe (one attribute)")
            axes[2].tick_params(axis="x", labelsize=7, rotation=20)
        fig.suptitle("P27 text-token redundancy (caption-conditioned MaskGIT, MiniLM token states)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / TEXT_PNG, dpi=110)
        plt.close(fig)
        made.append(("P27: error rate and class accuracy vs share of caption tokens kept (by norm, attention, random); leakage probe", TEXT_PNG))
    return made
