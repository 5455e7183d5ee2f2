"""Suite ``token-compression``: every token reducer at equal budgets inside one ViT (P66's benchmark, ViT half).

Host: the scene ViT trained here (``tokenworks.compress.scene_vit``, committed in
assets/compress/scene-vit): 2 x 2 scenes of Fashion-MNIST items, MNIST digits and empty cells,
196 patch tokens + [CLS], 5 blocks; it predicts the class of every cell (21 classes), so what
is where must survive the reduction. Every registered reducer (``tw.methods(kind=
"token_reducer")``) is attached with ``tw.compress.attach_vit(model, reducer, layer=2)`` (the
patch tokens are reduced before block 2 of 5) at keep ratios of 50, 25, 11 and 5%, plus:

- ``none``: the model untouched (the reference of every ratio); ``cls-only``: every patch token
  dropped before block 2 (the floor: what [CLS] already holds after two blocks);
- ``todre``: both of P63's stages (k-center to the budget, then half of the rest dropped by
  [CLS] relevance before block 4); ``todre-kcenter-only``: stage 1 alone, the control for P63's
  claim that diversity beats attention pruning at high pruning (against ``cls_attention``);
- ``token_correlation`` (P54, adaptive) with ``reference_density`` set to the mean density of
  200 training scenes (so the mean kept ratio lands near the budget), and
  ``token_correlation-fixed``: the same sampling with one ratio for every image, equal to the
  adaptive row's *measured* mean kept ratio (the paper's control: adaptive vs fixed at the same
  mean budget);
- the VLM half (rows with task ``vlm-scene-qa``, method = the registry name): the scene VLM (an HF Llava, assets/compress/
  scene-vlm) answering position / count / exists / side questions; every reducer attached with
  ``tw.compress.attach`` before the LM (layer 0), FastV inside the LM at layer 2, ToDRE with its
  second stage (relevance from the last text token at LM layer 2, half of the rest kept), P59's FFN
  skipping from LM layer 1, and ``token_correlation-fixed`` (P54's control, as above); accuracy
  (mean over 3 draws of held-out QA items, 96 each in ``--quick``, balanced over question types)
  and by question type (pooled), FLOPs, prefill wall time (median of 3) and decode wall time with
  the KV cache (5 decode steps after the prefill, timed inside one ``generate`` by a streamer's
  per-token stamps; median of 3), as ratios to no reduction in the same run; P59's alignment
  score per LM layer for the final model and 3 training snapshots, with its Pearson correlation
  to their accuracy. Verdicts as for the ViT (same rule, on the change of answer accuracy from
  the untouched VLM on the same items; the spread is over the 3 draws of items, one VLM);
- ``mqt`` (P11): one query-transformer resampler (trained inside the frozen ViT with a random
  m in 1..98 per step) run at m = 10, 22, 49, 98 queries in place of the patch tokens, and
  ``mqt-fixed-m``: a resampler trained at each fixed m with the same steps (the paper's
  control); assets/compress/mqt-*.

Metrics per row: ``top1`` (per-cell accuracy on held-out test scenes, mean over 3 disjoint
draws of scenes), ``top1_items`` / ``top1_empty`` (cells holding an item / empty cells),
``tokens_kept`` (mean patch tokens after the first reduction), ``tokens_per_block`` (mean
sequence length over the 5 blocks, [CLS] included, padding slots not), ``gflops`` per scene counted by
``torch.utils.flop_counter`` (the reducer's own similarity matrices included; CPU sdpa counted
with torch's sdpa formula, which FlopCounterMode does not map on CPU), ``flops_ratio`` and
``time_ratio`` (wall time of a 64-scene forward, best of 3, over the untouched model in the same
run; a CPU figure). Verdicts (``bench.verdict.judge``, accuracy on the control's accuracy-vs-
FLOPs curve, both as the change from the untouched model on the same scenes): the spread is over
the 3 draws of test scenes, one trained model, so it measures evaluation noise, not training seeds.
FLOPs are counted one scene at a time (what a per-image system pays); the wall time runs the
64-scene batch, so rows that keep different counts per image (P54) pay for padding there.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import torch

import tokenworks as tw
from bench.verdict import judge
from tokenworks.compress import attach_vit, information_density
from tokenworks.compress.scene_vit import scene_vit, test_scenes
from tokenworks.data.scenes import EMPTY, make_scenes

NAME = "token-compression"
DESCRIPTION = __doc__.split("\n\n", 1)[1]

BUDGETS = (0.5, 0.25, 0.11, 0.05)
LAYER = 2
SEEDS = (1234, 1235, 1236)  # draws of held-out scenes


def _sizes(quick: bool) -> dict[str, int]:
    return dict(scenes=150 if quick else 1000, calib=200, flop_scenes=6 if quick else 32, time_batch=64, time_reps=2 if quick else 5)


def _sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` by torch.utils.flop_counter, with CPU sdpa counted (torch maps only the GPU kernels)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as fc:
        fn()
    return fc.get_total_flops()


def _variants(reference_density: float) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """(row name, registry name, paper, options) for every reducer run."""
    out = []
    for info in tw.methods(kind="token_reducer"):
        if "vit" not in tw.create(info.name).hosts:
            continue
        opts: dict[str, Any] = {}
        if info.name == "todre":
            out.append(("todre-kcenter-only", "todre", info.paper, {}))
            opts = {"relevance_layer": 4, "relevance_keep": 0.5}
        if info.name == "token_correlation":
            opts = {"reference_density": reference_density}
        out.append((info.name, info.name, info.paper, opts))
    return out


@contextmanager
def _reducer(model, reducer):
    """attach_vit for one forward; yields a list filled with (layer, kept per row) per stage."""
    stages: list = []
    with attach_vit(model, reducer, layer=LAYER) as h:
        yield stages
        stages += [(at, k.float()) for (at, _), k in zip(h.stages, h.kept)]


@contextmanager
def _resampler(model, r, m):
    """An MQT resampler with m queries before block LAYER, for one forward."""
    stages: list = []
    h = r.attach(model, m, LAYER)
    try:
        yield stages
    finally:
        h.remove()
    stages.append((LAYER, torch.tensor([float(m)])))


@contextmanager
def _cls_only(model):
    """Every patch token dropped before block LAYER: the floor (what [CLS] already holds)."""
    h = model.blocks[LAYER].register_forward_pre_hook(lambda m, a: (a[0][:, :1], *a[1:]))
    stages: list = []
    try:
        yield stages
    finally:
        h.remove()
    stages.append((LAYER, torch.tensor([0.0])))


@torch.no_grad()
def _evaluate(model, hook, data, sz) -> dict[str, Any]:
    """Accuracy per draw of scenes, tokens held, FLOPs and wall time of one configuration;
    ``hook()`` gives a context manager around one forward (None: the untouched model)."""
    accs, items, empties, kept, per_block = [], [], [], [], []
    depth = len(model.blocks)
    n = model.patch_embed.num_patches

    def run(xb):
        if hook is None:
            return model(xb), []
        with hook() as stages:
            out = model(xb)
        return out, stages

    for x, y in data:
        logits, stages = run(x)
        ok = logits.argmax(-1) == y
        accs.append(float(ok.float().mean()))
        items.append(float(ok[y != EMPTY].float().mean()))
        empties.append(float(ok[y == EMPTY].float().mean()))
        lengths = [float(n)] * depth
        for at, k in stages:
            lengths[at:] = [float(k.mean())] * (depth - at)
        kept.append(float(stages[0][1].mean()) if stages else float(n))
        per_block.append(1 + sum(lengths) / depth)  # + [CLS]
    x0 = data[0][0]
    # FLOPs one scene at a time: what a per-image system pays (a batch pads rows to its longest)
    fx = x0[: sz["flop_scenes"]]
    flops = sum(count_flops(lambda i=i: run(fx[i : i + 1])) for i in range(len(fx))) / len(fx)
    xt = x0[: sz["time_batch"]]
    run(xt)  # warm-up
    times = []
    for _ in range(sz["time_reps"]):
        t0 = time.perf_counter()
        run(xt)
        times.append(time.perf_counter() - t0)
    return {"accs": accs, "top1_items": sum(items) / len(items), "top1_empty": sum(empties) / len(empties),
            "tokens_kept": sum(kept) / len(kept), "tokens_per_block": sum(per_block) / len(per_block),
            "flops": flops, "time": min(times)}  # fmt: skip


@torch.no_grad()
def calibrate_density(model, threshold: float, n: int) -> float:
    """Mean P54 information density of ``n`` training scenes' tokens where the reducer acts."""
    x, _ = make_scenes(n, split="train", generator=torch.Generator().manual_seed(99))
    seen = {}
    hook = model.blocks[LAYER].register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0][:, 1:]))
    model(x)
    hook.remove()
    tokens = seen["x"]
    return float(information_density(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), threshold).mean())


def _row(method, paper, params, budget, res, ref) -> dict:
    accs = res["accs"]
    diffs = [a - b for a, b in zip(accs, ref["accs"])]  # paired with the untouched model on the same scenes
    m = {
        "top1": sum(accs) / len(accs), "top1_items": res["top1_items"], "top1_empty": res["top1_empty"],
        "tokens_kept": res["tokens_kept"], "kept_fraction": res["tokens_kept"] / ref["n"], "tokens_per_block": res["tokens_per_block"],
        "gflops": res["flops"] / 1e9, "flops_ratio": res["flops"] / ref["flops"], "time_ratio": res["time"] / ref["time"],
    }  # fmt: skip
    return {"family": "CMP", "method": method, "paper": paper, "params": params, "budget": {"keep": budget, "layer": LAYER},
            "metrics": {k: round(v, 6) for k, v in m.items()}, "seeds": {"top1": [round(a, 6) for a in accs], "top1_vs_none": [round(d, 6) for d in diffs]}}  # fmt: skip


def run(ctx) -> list[dict]:
    torch.manual_seed(ctx.seed)
    sz = _sizes(ctx.quick)
    model = scene_vit(train_if_missing=True)
    data = [test_scenes(sz["scenes"], seed=s) for s in SEEDS]
    none = _evaluate(model, None, data, sz)
    ref = {"flops": none["flops"], "time": none["time"], "n": model.patch_embed.num_patches, "accs": none["accs"]}
    rows = [_row("none", None, {}, 1.0, none, ref), _row("cls-only", None, {}, 0.0, _evaluate(model, lambda: _cls_only(model), data, sz), ref)]
    rho = calibrate_density(model, tw.create("token_correlation").threshold, sz["calib"])
    variants = _variants(rho)
    for name, reg, paper, opts in ctx.track(variants, "token-compression"):
        for b in BUDGETS:
            red = tw.create(reg, budget=b, **opts)
            res = _evaluate(model, lambda red=red: _reducer(model, red), data, sz)
            rows.append(_row(name, paper, opts, b, res, ref))
            if name == "token_correlation":  # the control: one ratio for all, the adaptive row's measured mean
                frac = round(min(1.0, res["tokens_kept"] / ref["n"]), 4)
                fixed = tw.create(reg, budget=frac, adaptive=False)
                ctl = _evaluate(model, lambda fixed=fixed: _reducer(model, fixed), data, sz)
                rows.append(_row("token_correlation-fixed", paper, {"adaptive": False, "matched_to": b}, b, ctl, ref))
    rows += _mqt_rows(ctx, model, data, sz, ref)
    rows += vlm_rows(ctx)
    ctx.log(f"none: top1 {rows[0]['metrics']['top1']:.3f}; P54 reference density {rho:.3f}")
    return rows


def _mqt_rows(ctx, model, data, sz, ref) -> list[dict]:
    """P11: one MQT resampler at m = 10, 22, 49, 98 queries vs a resampler trained at each fixed m."""
    from tokenworks.compress.mqt import MQT_SIZES, mqt_models

    models = mqt_models(model)
    rows = []
    for m in ctx.track(MQT_SIZES, "MQT"):
        keep = round(m / ref["n"], 4)
        for name, r in (("mqt", models["random"]), ("mqt-fixed-m", models[f"fixed-{m}"])):
            res = _evaluate(model, lambda r=r: _resampler(model, r, m), data, sz)
            rows.append(_row(name, "P11", {"m": m, "max_queries": r.max_queries}, keep, res, ref))
    return rows


# ----------------------------------------------------------------------------- verdicts


def _curve(rows, method, x="gflops", key="top1_vs_none"):
    return [(r["metrics"][x], r["seeds"][key]) for r in rows if r["method"] == method and key in r.get("seeds", {})]


def claim_verdicts(rows: list[dict]) -> list[dict]:
    """P63 (k-center vs [CLS] attention at 11% and 5%), P54 (adaptive vs fixed at equal mean
    tokens), and 'does any method beat plain pooling', each on the control's accuracy-vs-FLOPs curve."""
    rows = [r for r in rows if "task" not in r]  # the ViT half (VLM rows carry task="vlm-scene-qa")
    out = []

    def add(claim, paper, method, control, keep, x="gflops"):
        r = next((r for r in rows if r["method"] == method and r["budget"]["keep"] == keep), None)
        curve = _curve(rows, control, x)
        if r is None or not curve:
            return
        v = judge((r["metrics"][x], r["seeds"]["top1_vs_none"]), curve, log_x=True)
        out.append({"claim": claim, "paper": paper, "method": method, "control": control, "keep": keep, "x": x, "verdict": v})

    for keep in (0.11, 0.05):
        add("greedy k-center beats [CLS]-attention pruning at high pruning", "P63", "todre-kcenter-only", "cls_attention", keep)
        add("greedy k-center beats [CLS]-attention pruning at high pruning", "P63", "todre-kcenter-only", "cls_attention", keep, "tokens_kept")
        add("ToDRE (both stages) beats [CLS]-attention pruning at high pruning", "P63", "todre", "cls_attention", keep)
    for keep in BUDGETS:
        add("an adaptive per-image ratio beats a fixed ratio at the same mean budget", "P54", "token_correlation", "token_correlation-fixed", keep)
    for keep in sorted({r["budget"]["keep"] for r in rows if r["method"] == "mqt"}):
        add("one MQT model matches resamplers trained at each fixed m", "P11", "mqt", "mqt-fixed-m", keep, "tokens_kept")
    names = list(dict.fromkeys(r["method"] for r in rows if r["method"] not in ("none", "cls-only", "spatial_pool") and "task" not in r))
    for name in names:
        add("beats plain spatial pooling", None, name, "spatial_pool", 0.11)
    return out


def vlm_claim_verdicts(rows: list[dict]) -> list[dict]:
    """The same claims on the scene VLM (change of answer accuracy from the untouched model on the same QA items, 3 draws):
    P63 vs [CLS] attention (before the LM) and vs FastV (inside the LM, on tokens kept), P54 adaptive vs fixed at the same
    mean tokens, and every reducer vs plain pooling at 11%."""
    rows = [r for r in rows if r.get("task") == "vlm-scene-qa" and "seeds" in r]
    out = []

    def add(claim, paper, method, control, keep, x="gflops"):
        r = next((r for r in rows if r["method"] == method and r["budget"]["keep"] == keep), None)
        curve = _curve(rows, control, x, "accuracy_vs_none")
        if r is None or not curve:
            return
        v = judge((r["metrics"][x], r["seeds"]["accuracy_vs_none"]), curve, log_x=True)
        out.append({"claim": claim, "paper": paper, "method": method, "control": control, "keep": keep, "x": x, "verdict": v})

    for keep in (0.11, 0.05):
        for method in ("todre-kcenter-only", "todre"):
            add("ToDRE beats attention pruning at high pruning", "P63", method, "cls_attention", keep)
            add("ToDRE beats attention pruning at high pruning", "P63", method, "fastv", keep, "tokens_kept")
    for keep in BUDGETS:
        add("an adaptive per-image ratio beats a fixed ratio at the same mean budget", "P54", "token_correlation", "token_correlation-fixed",
            keep, "tokens_kept")  # fmt: skip
    for name in dict.fromkeys(r["method"] for r in rows if r["method"] not in ("none", "spatial_pool", "fastv", "ima_ffn_skip")):
        add("beats plain spatial pooling", None, name, "spatial_pool", 0.11)
    return out


def _verdict_lines(verdicts) -> list[str]:
    out = []
    for c in verdicts:
        v = c["verdict"]
        at = f"{v.x:.4f} GFLOPs" if c["x"] == "gflops" else f"{v.x:.1f} tokens kept"
        out.append(f"- {c['paper'] or 'baseline'} {c['method']} at keep {c['keep']:.0%} ({v.y:+.3f} at {at}) vs {c['control']} "
                   f"({v.control_at_x:+.3f} at the same {'FLOPs' if c['x'] == 'gflops' else 'tokens'}): {c['claim']}: **{v.text()}**.")  # fmt: skip
    return out


def summary(rows: list[dict]) -> str:
    out = ["**Claims at this scale** (`bench.verdict.judge` on the change of per-cell accuracy from the untouched model on the same "
           "scenes, against the control's curve of that change vs GFLOPs (or tokens kept where said; log scale), interpolated at the method's FLOPs; spread = ranges "
           "over 3 disjoint draws of test scenes with one trained model, so evaluation noise, not training seeds):", ""]  # fmt: skip
    out += _verdict_lines(claim_verdicts(rows))
    vv = vlm_claim_verdicts(rows)
    if vv:
        out += ["", "**Claims on the scene VLM** (same rule on the change of answer accuracy from the untouched VLM on the same "
                "QA items; spread = ranges over 3 draws of held-out QA items, one trained VLM):", ""]  # fmt: skip
        out += _verdict_lines(vv)
    vt = vlm_table(rows)
    return "\n".join(out) + ("\n\n" + vt if vt else "")


def vlm_table(rows: list[dict]) -> str:
    """Markdown: VLM accuracy (overall and by question type), FLOPs and time ratios per method and budget."""
    vr = [r for r in rows if r.get("task") == "vlm-scene-qa" and r["method"] != "vlm/ima-alignment"]  # method = registry name
    if not vr:
        return ""
    head = "| method | keep | accuracy | position | count | exists | side | tokens kept | FLOPs ratio | prefill ratio | decode ratio |"
    out = ["**Scene VLM (HF Llava) QA**", "", head, "|" + "---|" * 11]
    for r in vr:
        m = r["metrics"]
        out.append(f"| {r['method']} | {r['budget']['keep']:.0%} | {m['accuracy']:.3f} | {m.get('acc_position', 0):.2f} | "
                   f"{m.get('acc_count', 0):.2f} | {m.get('acc_exists', 0):.2f} | {m.get('acc_side', 0):.2f} | {m['tokens_kept']:.0f} | "
                   f"{m['flops_ratio']:.2f} | {m['prefill_time_ratio']:.2f} | {m['decode_time_ratio']:.2f} |")  # fmt: skip
    ima = [r for r in rows if r["method"] == "vlm/ima-alignment"]
    if ima:
        out += ["", "**P59 alignment score per LM layer** (hidden state 0 = embeddings; corr = Pearson with accuracy across "
                f"{ima[0]['metrics']['checkpoints']} checkpoints): " + ", ".join(
                    f"L{r['budget']['layer']}: {r['metrics']['alignment_final']:.3f} (corr {r['metrics']['corr_with_accuracy']:+.2f})" for r in ima)]  # fmt: skip
    return "\n".join(out)


def headline(method: str, rows: list[dict]) -> str | None:
    """At keep 11%: the scene ViT's top-1, or, for reducers measured only on the scene VLM (fastv,
    ima_ffn_skip), its QA accuracy; the untouched model's figure when its row is among ``rows``."""
    for task, host, metric in ((None, "scene ViT", "top1"), ("vlm-scene-qa", "scene VLM", "accuracy")):
        part = [r for r in rows if r.get("task") == task]
        r = next((r for r in part if r["method"] == method and r["budget"]["keep"] == 0.11), None)
        if r is None:
            continue
        base = next((b for b in part if b["method"] == "none"), None)
        m = r["metrics"]
        ref = f" (untouched {base['metrics'][metric]:.3f})" if base else ""
        return f"{host}, keep 11%: {metric} {m[metric]:.3f}{ref} at {m['flops_ratio']:.2f}x FLOPs"
    return None


def plots(rows: list[dict], out_dir) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = _vlm_plots(rows, out_dir)
    rows = [r for r in rows if "task" not in r]
    pts = [r for r in rows if r["method"] not in ("none", "cls-only")]
    if not pts:
        return out
    base = next((r for r in rows if r["method"] == "none"), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, name in enumerate(dict.fromkeys(r["method"] for r in pts)):
        mr = sorted((r for r in pts if r["method"] == name), key=lambda r: r["metrics"]["gflops"])
        style = "--" if name in ("spatial_pool", "random_prune") else "-"
        color = plt.cm.tab20(i % 20)  # more methods than the 10 default colours
        axes[0].plot([r["metrics"]["gflops"] for r in mr], [r["metrics"]["top1"] for r in mr], style, marker="o", ms=3, color=color, label=name)
        axes[1].plot([r["metrics"]["tokens_kept"] for r in mr], [r["metrics"]["top1"] for r in mr], style, marker="o", ms=3, color=color, label=name)
    if base is not None:
        axes[0].plot([base["metrics"]["gflops"]], [base["metrics"]["top1"]], "k*", ms=10, label="none")
        for ax in axes:
            ax.axhline(base["metrics"]["top1"], color="k", lw=0.5)
    floor = next((r for r in rows if r["method"] == "cls-only"), None)
    if floor is not None:
        for ax in axes:
            ax.axhline(floor["metrics"]["top1"], color="grey", lw=0.8, ls=":")
        axes[1].text(10, floor["metrics"]["top1"], " cls-only (no patch token after block 2)", fontsize=7, va="bottom")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("GFLOPs per scene (torch.utils.flop_counter)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("patch tokens kept after the first reduction")
    for ax in axes:
        ax.set_ylabel("per-cell top-1 (held-out scenes)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fname = "token_compression_accuracy_vs_flops.png"
    fig.savefig(out_dir / fname, dpi=100)
    plt.close(fig)
    return [("Token compression in the scene ViT: per-cell accuracy vs FLOPs and vs tokens kept, every reducer at keep 50/25/11/5%", fname)] + out


def _vlm_plots(rows, out_dir) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    vlm = [r for r in rows if r.get("task") == "vlm-scene-qa"]
    vr = [r for r in vlm if r["method"] not in ("none", "vlm/ima-alignment")]
    if not vr:
        return []
    base = next((r for r in vlm if r["method"] == "none"), None)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    names = list(dict.fromkeys(r["method"] for r in vr))
    for i, name in enumerate(names):
        mr = sorted((r for r in vr if r["method"] == name), key=lambda r: r["metrics"]["gflops"])
        style = "--" if name in ("spatial_pool", "random_prune") else "-"
        axes[0].plot([r["metrics"]["gflops"] for r in mr], [r["metrics"]["accuracy"] for r in mr], style, marker="o", ms=3,
                     color=plt.cm.tab20(i % 20), label=name)  # fmt: skip
    if base is not None:
        axes[0].plot([base["metrics"]["gflops"]], [base["metrics"]["accuracy"]], "k*", ms=10, label="none")
        axes[0].axhline(base["metrics"]["accuracy"], color="k", lw=0.5)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("GFLOPs per question (torch.utils.flop_counter)")
    axes[0].set_ylabel("answer accuracy (held-out scenes)")
    axes[0].legend(fontsize=7)
    at = [r for r in vr if r["budget"]["keep"] == 0.11]
    types = ("position", "count", "exists", "side")
    w = 0.8 / max(1, len(at))
    for j, r in enumerate(at):
        axes[1].bar([k + j * w for k in range(4)], [r["metrics"].get(f"acc_{t}", 0) for t in types], w, color=plt.cm.tab20(j % 20), label=r["method"])
    if base is not None:
        for k, t in enumerate(types):
            axes[1].plot([k - w / 2, k + 0.8], [base["metrics"].get(f"acc_{t}", 0)] * 2, "k-", lw=1)
    axes[1].set_xticks([k + 0.4 for k in range(4)], types)
    axes[1].set_ylabel("accuracy at keep 11% (black: no reduction)")
    ima = [r for r in rows if r["method"] == "vlm/ima-alignment"]
    if ima:
        keys = [k for k in ima[0]["metrics"] if k.startswith("alignment_") and k != "alignment_final"]
        for k in keys:
            axes[2].plot([r["budget"]["layer"] for r in ima], [r["metrics"][k] for r in ima], marker="o", label=k.split("_", 1)[1])
        axes[2].set_xlabel("LM hidden state (0 = embeddings)")
        axes[2].set_ylabel("P59 alignment: cos(mean visual, mean text)")
        axes[2].legend(fontsize=7, title="checkpoint (step)")
    fig.tight_layout()
    fname = "token_compression_vlm.png"
    fig.savefig(out_dir / fname, dpi=100)
    plt.close(fig)
    return [("Scene VLM (HF Llava): accuracy vs FLOPs per reducer; accuracy by question type at keep 11%; P59 alignment per layer per checkpoint", fname)]


# ----------------------------------------------------------------------------- the VLM half

VLM_VARIANTS = (  # (row name, registry name, LM layer (0: before the LM), options)
    ("random_prune", "random_prune", 0, {}),
    ("spatial_pool", "spatial_pool", 0, {}),
    ("cls_attention", "cls_attention", 0, {}),
    ("tome", "tome", 0, {}),
    ("divprune", "divprune", 0, {}),
    ("todre-kcenter-only", "todre", 0, {}),
    ("todre", "todre", 0, {"relevance_layer": 2, "relevance_keep": 0.5}),
    ("token_correlation", "token_correlation", 0, {}),
    ("fastv", "fastv", 2, {}),
    ("ima_ffn_skip", "ima_ffn_skip", 1, {}),
)
VLM_PAPERS = {"todre": "P63", "todre-kcenter-only": "P63", "token_correlation": "P54", "ima_ffn_skip": "P59"}


VLM_SEEDS = (4321, 4322, 4323)  # draws of held-out QA items (test-split scenes)


def _vlm_sizes(quick: bool) -> dict[str, int]:
    return dict(items=96 if quick else 600, flop_items=1 if quick else 8, time_batch=8 if quick else 32, reps=3 if quick else 5,
                new_tokens=6, align_items=40 if quick else 200)  # fmt: skip


class _StepClock:
    """A ``generate`` streamer that stamps the time of every step: the first ``put`` is the prompt, the second the
    first new token (so after the prefill); the time from there to the last token is the decode with the KV cache."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def put(self, value) -> None:
        self.stamps.append(time.perf_counter())

    def end(self) -> None:
        pass


@torch.no_grad()
def _vlm_eval(model, attach_fn, data, sz) -> dict[str, Any]:
    """Accuracy per draw of QA items (and by question type, pooled), tokens kept, FLOPs, prefill and decode time."""
    from tokenworks.compress.scene_vlm import accuracy_by_type

    kept, skipped, accs, all_pred = [], 0, [], []

    def fwd(p, i):
        if attach_fn is None:
            return model(input_ids=i, pixel_values=p).logits[:, -1], None
        with attach_fn() as h:
            out = model(input_ids=i, pixel_values=p).logits[:, -1]
        return out, h

    for px, ids, ans, _ in data:
        preds = []
        for p, i in zip(px.split(60), ids.split(60)):
            logits, h = fwd(p, i)
            preds.append(logits.argmax(-1))
            if h is not None:  # P59 keeps every token (its counts are FFN calls)
                ffn_only = all(getattr(r, "skips_ffn", False) for _, r in h.stages)
                kept.append(h.kept[0].float().mean() if h.kept and not ffn_only else torch.tensor(float(h.state.n_img)))
                skipped += h.state.ffn_skipped
        pred = torch.cat(preds)
        accs.append(float((pred == ans).float().mean()))
        all_pred.append(pred)
    acc = accuracy_by_type(torch.cat(all_pred), torch.cat([d[2] for d in data]), torch.cat([d[3] for d in data]))
    px, ids = data[0][0], data[0][1]
    f = sum(count_flops(lambda k=k: fwd(px[k : k + 1], ids[k : k + 1])) for k in range(sz["flop_items"])) / sz["flop_items"]
    tp, ti = px[: sz["time_batch"]], ids[: sz["time_batch"]]

    def prefill_time():
        t0 = time.perf_counter()
        fwd(tp, ti)
        return time.perf_counter() - t0

    def decode_time():
        clock = _StepClock()
        kw = dict(input_ids=ti, pixel_values=tp, max_new_tokens=sz["new_tokens"], min_new_tokens=sz["new_tokens"], do_sample=False,
                  streamer=clock)  # fmt: skip
        if attach_fn is None:
            model.generate(**kw)
        else:
            with attach_fn():
                model.generate(**kw)
        return clock.stamps[-1] - clock.stamps[1]  # new_tokens - 1 decode steps, each one forward on the KV cache

    prefill_time(), decode_time()  # warm-up
    prefill = sorted(prefill_time() for _ in range(sz["reps"]))[sz["reps"] // 2]
    decode = sorted(decode_time() for _ in range(sz["reps"]))[sz["reps"] // 2]
    n_items = sum(len(d[2]) for d in data)
    return {"acc": acc, "accs": accs, "tokens_kept": float(torch.stack(kept).mean()) if kept else 196.0, "flops": f,
            "prefill": prefill, "decode": decode, "ffn_skipped": skipped / n_items}  # fmt: skip


def _vlm_row(method, paper, params, budget, res, ref) -> dict:
    m = {"accuracy": sum(res["accs"]) / len(res["accs"]), **{f"acc_{k}": v for k, v in res["acc"].items() if k != "all"},
         "tokens_kept": res["tokens_kept"], "gflops": res["flops"] / 1e9, "flops_ratio": res["flops"] / ref["flops"],
         "prefill_time_ratio": res["prefill"] / ref["prefill"], "decode_time_ratio": res["decode"] / ref["decode"],
         "ffn_skipped_per_item": res["ffn_skipped"]}  # fmt: skip
    diffs = [a - b for a, b in zip(res["accs"], ref["accs"])]  # paired with the untouched model on the same items
    return {"family": "CMP", "task": "vlm-scene-qa", "method": method, "paper": paper, "params": params,
            "budget": {"keep": budget, "layer": params.get("layer", 0)}, "metrics": {k: round(v, 6) for k, v in m.items()},
            "seeds": {"accuracy": [round(a, 6) for a in res["accs"]], "accuracy_vs_none": [round(d, 6) for d in diffs]}}  # fmt: skip


def vlm_rows(ctx) -> list[dict]:
    """Every reducer on the scene VLM (HF Llava) at 50/25/11/5% (3 draws of QA items), + P59's alignment per layer."""
    from tokenworks.compress.scene_vlm import held_out_qa, scene_vlm

    sz = _vlm_sizes(ctx.quick)
    model = scene_vlm(train_if_missing=True)
    data = [held_out_qa(sz["items"], seed=s) for s in VLM_SEEDS]
    none = _vlm_eval(model, None, data, sz)
    rows = [_vlm_row("none", None, {}, 1.0, none, none)]
    rho = _vlm_density(model, tw.create("token_correlation").threshold)
    for name, reg, layer, opts in ctx.track(VLM_VARIANTS, "token-compression (VLM)"):
        if name == "token_correlation":
            opts = {"reference_density": rho}
        for b in BUDGETS:
            red = tw.create(reg, budget=b, **opts)
            res = _vlm_eval(model, lambda red=red, layer=layer: tw.compress.attach(model, red, layer=layer), data, sz)
            rows.append(_vlm_row(name, VLM_PAPERS.get(name), {**opts, "layer": layer}, b, res, none))
            if name == "token_correlation":  # P54's control: one ratio for every image, the adaptive row's measured mean
                frac = round(min(1.0, res["tokens_kept"] / 196), 4)
                fixed = tw.create(reg, budget=frac, adaptive=False)
                ctl = _vlm_eval(model, lambda fixed=fixed, layer=layer: tw.compress.attach(model, fixed, layer=layer), data, sz)
                rows.append(_vlm_row("token_correlation-fixed", "P54", {"adaptive": False, "matched_to": b, "layer": layer}, b, ctl, none))
    rows += _ima_rows(model, sz)
    ctx.log(f"VLM none: accuracy {none['acc']['all']:.3f} ({none['acc']})")
    return rows


@torch.no_grad()
def _vlm_density(model, threshold: float, n: int = 60) -> float:
    """Mean P54 density of the projected visual tokens of ``n`` training scenes (P54's reference)."""
    from tokenworks.compress.scene_vlm import qa_batch

    px, ids, _, _ = qa_batch(n, split="train", generator=torch.Generator().manual_seed(98))
    seen = {}
    h = model.model.multi_modal_projector.register_forward_hook(lambda m, a, out: seen.setdefault("x", out))
    model(input_ids=ids, pixel_values=px)
    h.remove()
    x = seen["x"]
    return float(information_density(x, torch.ones(x.shape[:2], dtype=torch.bool), threshold).mean())


def _ima_rows(model, sz) -> list[dict]:
    """P59: alignment score per LM layer for the final model and each training snapshot, and its
    correlation (Pearson, across the checkpoints) with their accuracy on the same QA items."""
    from tokenworks.compress.ima import alignment_scores
    from tokenworks.compress.scene_vlm import held_out_qa, load_scene_vlm, scene_vlm_dir, vlm_accuracy

    path = scene_vlm_dir(train_if_missing=False)
    steps = sorted(int(p.stem.split("-")[1]) for p in path.glob("ckpt-*.safetensors"))
    px, ids, _, _ = held_out_qa(sz["align_items"], seed=99)
    models = [(s, load_scene_vlm(path, snapshot=s)) for s in steps] + [("final", model)]
    scores, accs = [], []
    for _, m in models:
        scores.append(alignment_scores(m, px, ids))
        accs.append(vlm_accuracy(m, sz["items"])["all"])
    S, A = torch.stack(scores), torch.tensor(accs)
    rows = []
    for layer in range(S.shape[1]):
        s = S[:, layer]
        corr = float(torch.corrcoef(torch.stack([s, A]))[0, 1]) if len(A) > 2 and float(s.std()) > 0 else float("nan")
        rows.append({"family": "ANA", "task": "vlm-scene-qa", "method": "vlm/ima-alignment", "paper": "P59", "params": {},
                     "budget": {"keep": 1.0, "layer": layer},
                     "metrics": {"alignment_final": round(float(s[-1]), 6), "corr_with_accuracy": round(corr, 6),
                                 "checkpoints": len(A), **{f"alignment_{k}": round(float(v), 6) for (k, _), v in zip(models, s)},
                                 **{f"accuracy_{k}": round(float(a), 6) for (k, _), a in zip(models, A)}}})  # fmt: skip
    return rows
