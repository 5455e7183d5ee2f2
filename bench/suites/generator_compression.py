"""Suite `generator-compression`: fewer tokens inside generators (CMP). Attention variants of one
class-conditional flow-matching DiT over the continuous latents of ``patch2d-7x7`` (Fashion-MNIST):
full self-attention and (shifted) window attention (baselines), P01 PT-DiT proxy tokens and P03 FIT
interleaved local/global layers, each at about the same parameter count; quality against compute,
and cost against tokens per image.

Models (``tokenworks train gen-<name>``, committed under ``assets/generate/``, d=56, 400 steps of 32
images): ``dit-full-49`` and ``dit-fit-49`` on the native 7x7 latent grid (49 tokens); ``dit-full-196``,
``dit-window-196``, ``dit-ptdit-196`` and ``dit-fit-196`` on the grid nearest-upsampled to 14x14 (196
tokens, decoded by 2x2 average pooling: the same images, 4x the tokens). Depth matches parameters: 5
full/window layers, 3 PT-DiT layers (proxy, cross and window attention each), 2 FIT layers (local,
read, global, write). At 49 tokens the only windows dividing the 7x7 grid are 1 and 7 (= full), so
window attention and PT-DiT are trained at 196 only.

Rows
- ``real-test`` (fd_local of other test images: the floor at this sample size) and
  ``patch2d-7x7-reconstruction`` (the ceiling of any generator over these latents);
- quality (``params.task = "quality"``), per trained model and step count, cfg 2: ``fd_local``, class
  accuracy, precision/recall (bench of :mod:`tokenworks.generate.evaluate`), generator GFLOPs per
  image (``torch.utils.flop_counter``, all steps, guidance included) and the attention share of them
  (FLOPs inside the attention cores), ms per image (CPU, this machine); 3 sampling seeds (spread =
  sampling only; one trained model per variant);
- ``dit`` (``params.task = "held-out-loss"``), per trained model: the flow-matching loss (the
  training objective) on the latents of 500 test images, the same 3 seeded (t, noise) draws for
  every variant: how well each attention variant fits the velocity field, apart from sampling;
- cost (``params.task = "cost"``), per variant and tokens per image L in 49, 196, 784, 3136 (grids 7,
  14, 28, 56; random-init models of the trained recipes; one velocity forward of one image):
  attention and total FLOPs (all L), ms per forward (median of 3 repeats; --quick times L <= 784). PT-DiT and window attention keep their
  windows (7, proxies per 2x2) at every L, as the paper does; FIT's groups grow with L^(1/3) (the
  rectangle dividing the grid whose area is nearest 49 (L / 196)^(1/3)), the schedule under which
  FIT claims L^(4/3), and ``fit-fixed-groups`` keeps 7x7 groups as a control;
- ``cost-exponent``: per variant the least-squares slope of log cost vs log L over L >= 196 (FLOPs:
  exact counts; time: one slope per repeat, so the spread is timing noise).
- Text-side rows (P58 Token-Shuffle, P27 text-token redundancy) come from
  ``bench.suites.generator_compression_text`` when that module is present.
- Verdicts (bench.verdict): each variant's fd_local vs full attention's at equal steps (196 tokens;
  FIT also at 49), with the FLOP ratio beside it; FIT's time exponent vs full attention's.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

NAME = "generator-compression"
DESCRIPTION = """Attention variants inside one flow-matching DiT (full, window, P01 PT-DiT proxy tokens, P03 FIT): fd_local,
class accuracy, attention and total FLOPs, time per image at 49 and 196 tokens; cost vs tokens (49..3136) with fitted
exponents (FIT's L^(4/3) claim); plus P58 Token-Shuffle and P27 text-token rows when present."""

CFG = 2.0
QUALITY = ("dit-full-49", "dit-fit-49", "dit-full-196", "dit-window-196", "dit-ptdit-196", "dit-fit-196")
CONTROL = {"dit-fit-49": "dit-full-49", "dit-window-196": "dit-full-196", "dit-ptdit-196": "dit-full-196", "dit-fit-196": "dit-full-196"}
LENGTHS = (49, 196, 784, 3136)
TEXT_MODULE = "bench.suites.generator_compression_text"


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"samples": 50, "steps": (4,), "seeds": (0, 1, 2), "time_lengths": (49, 196, 784), "repeats": 3}
    return {"samples": 500, "steps": (4, 8, 16), "seeds": (0, 1, 2), "time_lengths": LENGTHS, "repeats": 5}


def fit_group(L: int, base: int = 49, base_L: int = 196) -> tuple[int, int]:
    """FIT's group (height, width) on the sqrt(L) grid: the dividing rectangle whose area is nearest
    (in log) to ``base * (L / base_L)^(1/3)`` (the group size that gives FIT its L^(4/3))."""
    side = math.isqrt(L)
    target = base * (L / base_L) ** (1 / 3)
    divs = [k for k in range(1, side + 1) if side % k == 0]
    return min(((a, b) for a in divs for b in divs if a <= b), key=lambda ab: (abs(math.log(ab[0] * ab[1] / target)), -ab[0]))


def cost_variants() -> dict[str, tuple[int, dict[str, Any], Any]]:
    """variant -> (layers, attention name, options for tokens L: dict or None when the grid does not fit)."""
    return {
        "full-attention": (5, "full-attention", lambda L: {}),
        "window-attention": (5, "window-attention", lambda L: {"window": 7} if math.isqrt(L) % 7 == 0 and L > 49 else None),
        "pt-dit": (3, "pt-dit", lambda L: {"proxy_window": 2, "window": 7} if math.isqrt(L) % 14 == 0 else None),
        "fit": (2, "fit", lambda L: dict(zip(("group", "group_w"), fit_group(L))) | {"latents": 8}),
        "fit-fixed-groups": (2, "fit", lambda L: {"group": 7, "latents": 8}),
    }


def _cost_model(layers: int, attention: str, options: dict, L: int, device=None):
    import tokenworks as tw

    torch.manual_seed(0)
    with torch.device(device or "cpu"):
        return tw.create("dit", num_tokens=L, token_dim=4, d_model=56, heads=4, layers=layers, attention=attention, attention_options=options).eval()


def _slope(xs, ys) -> float:
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


def cost_rows(ctx, sizes) -> list[dict]:
    from tokenworks.generate.attention import attention_flops
    from tokenworks.registry import get

    rows, per = [], {}
    for name, (layers, att, opts_for) in ctx.track(list(cost_variants().items()), "generator-compression: cost vs tokens"):
        for L in LENGTHS:
            opts = opts_for(L)
            if opts is None:
                continue
            gm = _cost_model(layers, att, opts, L, "meta")  # FLOPs without computing
            x, t, y = (torch.zeros(1, L, 4, device="meta"), torch.zeros(1, device="meta"), torch.zeros(1, dtype=torch.long, device="meta"))
            with torch.no_grad():
                _, total, attn = attention_flops(lambda: gm.velocity(x, t, y))
            m = {"attention_gflops": attn / 1e9, "total_gflops": total / 1e9, "params": sum(p.numel() for p in gm.parameters())}
            if L in sizes["time_lengths"]:
                g = _cost_model(layers, att, opts, L)
                xr, tr, yr = torch.randn(1, L, 4), torch.rand(1), torch.zeros(1, dtype=torch.long)
                with torch.no_grad():
                    g.velocity(xr, tr, yr)  # warm-up
                    times = []
                    for _ in range(sizes["repeats"]):
                        t0 = time.perf_counter()
                        g.velocity(xr, tr, yr)
                        times.append(1000 * (time.perf_counter() - t0))
                m |= {"ms_per_forward": statistics.median(times), "ms_per_forward_repeats": times}
            per.setdefault(name, []).append((L, m))
            rows.append({"family": "CMP", "method": att, "paper": get(att).paper,
                         "params": {"task": "cost", "variant": name, "tokens": L, "layers": layers, "d_model": 56, **opts},
                         "budget": {"tokens": L, "gflops_per_forward": m["total_gflops"]}, "metrics": m})  # fmt: skip
    for name, pts in per.items():
        pts = [(L, m) for L, m in pts if L >= 196]
        if len(pts) < 2:
            continue
        Ls = [L for L, _ in pts]
        m = {"attention_flops_exponent": _slope(Ls, [p["attention_gflops"] for _, p in pts]),
             "total_flops_exponent": _slope(Ls, [p["total_gflops"] for _, p in pts])}  # fmt: skip
        timed = [(L, p) for L, p in pts if "ms_per_forward_repeats" in p]
        if len(timed) >= 2:
            reps = len(timed[0][1]["ms_per_forward_repeats"])
            m["time_exponent_repeats"] = [_slope([L for L, _ in timed], [p["ms_per_forward_repeats"][r] for _, p in timed]) for r in range(reps)]
            m["time_exponent"] = _slope([L for L, _ in timed], [p["ms_per_forward"] for _, p in timed])
        att = cost_variants()[name][1]
        rows.append({"family": "CMP", "method": att, "paper": get(att).paper, "params": {"task": "cost-exponent", "variant": name, "tokens": Ls},
                     "budget": {}, "metrics": m})  # fmt: skip
    return rows


def quality_rows(ctx, sizes) -> tuple[list[dict], dict]:
    from tokenworks.data import load_images
    from tokenworks.generate.attention import attention_flops
    from tokenworks.generate.evaluate import generation_metrics, sample_images
    from tokenworks.generate.train import GENERATORS, image_generator, load_tokenizer
    from tokenworks.registry import get

    n = sizes["samples"]
    test = load_images("fashion-mnist", "test")
    x_real = test.take(1000).float()
    labels = torch.arange(10).repeat_interleave(n // 10)
    other = test.float()[-n:]
    rows = [{"family": "GEN", "method": "real-test", "paper": None, "params": {"task": "quality", "samples": n}, "budget": {},
             "metrics": generation_metrics(other, test.labels[-n:], x_real)}]  # fmt: skip
    tok = load_tokenizer("patch2d-7x7")
    rows.append({"family": "VIS", "method": "patch2d-7x7-reconstruction", "paper": None, "params": {"task": "quality", "samples": n}, "budget": {},
                 "metrics": generation_metrics(tok.decode(tok.encode(other)), test.labels[-n:], x_real)})  # fmt: skip
    grid = {}
    for name in ctx.track(list(QUALITY), "generator-compression: quality"):
        try:
            gen = image_generator(name, train_if_missing=False)
        except FileNotFoundError as e:  # not committed: say so, measure the rest
            ctx.log(f"generator-compression: skipping {name}: {e}")
            continue
        gen.cfg = CFG
        _, _, opts = GENERATORS[name]
        rows.append(_held_out_loss_row(gen, name, opts))
        for steps in sizes["steps"]:
            per: dict[str, list[float]] = {}
            for seed in sizes["seeds"]:
                imgs, info = sample_images(gen, tok, labels, steps=steps, seed=1000 * seed, flops=False)
                for k, v in (generation_metrics(imgs, labels, x_real) | info).items():
                    per.setdefault(k, []).append(v)
                if seed == 0 and steps == sizes["steps"][-1]:
                    grid[name] = imgs.reshape(10, -1, *imgs.shape[1:])[:, :5].reshape(-1, *imgs.shape[1:])
            _, total, attn = attention_flops(lambda: gen.generate(labels[:10], steps=steps, seed=0))
            m = {k: float(np.mean(v)) for k, v in per.items()}
            m |= {f"{k}_seeds": v for k, v in per.items() if k in ("fd_local", "class_accuracy")}
            m |= {"gflops_per_image": total / 10 / 1e9, "attention_gflops_per_image": attn / 10 / 1e9, "params": sum(p.numel() for p in gen.parameters())}
            rows.append({"family": "CMP", "method": gen.attention, "paper": get(gen.attention).paper,
                         "params": {"task": "quality", "generator": name, "tokens": gen.num_tokens, "layers": gen.layers, "d_model": gen.d_model,
                                    "steps": steps, "cfg": CFG, "samples": n, **gen.attention_options},
                         "budget": {"tokens": gen.num_tokens, "steps": steps, "gflops_per_image": m["gflops_per_image"]}, "metrics": m})  # fmt: skip
    return rows, grid


HELD_OUT = 500  # test images whose latents give each DiT's held-out flow-matching loss
LOSS_DRAWS = 3  # draws of (t, noise) per image, fixed seeds: the same for every DiT


@torch.no_grad()
def _held_out_loss_row(gen, name: str, opts: dict) -> dict:
    """Row of the ``dit`` generator itself: its flow-matching loss on the latents of held-out test
    images (the objective it was trained on; class labels kept), the same (t, noise) draws for
    every attention variant. A lower loss is a better velocity field, apart from sampling."""
    from tokenworks.generate.train import token_data

    lat, lab = token_data(gen.tokenizer, True, "test", HELD_OUT)
    lat = type(gen).prepare_tokens(lat, opts)
    gen.eval()
    losses = []
    for draw in range(LOSS_DRAWS):
        torch.manual_seed(draw)
        losses.append(float(gen.loss(lat, lab)))
    return {"family": "GEN", "method": "dit", "paper": None,
            "params": {"task": "held-out-loss", "generator": name, "attention": gen.attention, "tokens": gen.num_tokens, "images": len(lat)},
            "budget": {"tokens": gen.num_tokens},
            "metrics": {"flow_matching_loss": float(np.mean(losses)), "flow_matching_loss_draws": losses,
                        "params": sum(p.numel() for p in gen.parameters())}}  # fmt: skip


def run(ctx) -> Any:
    from bench.suites.image_generation import _draw_grid
    from tokenworks.generate.evaluate import image_grid

    sizes = _sizes(ctx.quick)
    rows, grid = quality_rows(ctx, sizes)
    yield from rows
    yield from cost_rows(ctx, sizes)
    if importlib.util.find_spec(TEXT_MODULE) is not None:  # P58 / P27 (the text-side half of the issue)
        text = importlib.import_module(TEXT_MODULE)
        yield from text.shuffle_rows(ctx)
        yield from text.text_rows(ctx)
    Path(ctx.out_dir).mkdir(parents=True, exist_ok=True)
    _draw_grid(grid, Path(ctx.out_dir) / GRID_PNG, image_grid)


GRID_PNG = "generator_compression_samples.png"


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    made = []
    q = [r for r in rows if r["params"].get("task") == "quality" and "generator" in r["params"]]
    if q:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name in dict.fromkeys(r["params"]["generator"] for r in q):
            rs = sorted((r for r in q if r["params"]["generator"] == name), key=lambda r: r["metrics"]["gflops_per_image"])
            ax.errorbar([r["metrics"]["gflops_per_image"] for r in rs], [r["metrics"]["fd_local"] for r in rs],
                        yerr=[(np.ptp(r["metrics"]["fd_local_seeds"]) / 2) for r in rs], fmt="-o" if name.endswith("196") else "--s", ms=4, label=name)  # fmt: skip
        for r in rows:
            if r["method"] in ("real-test", "patch2d-7x7-reconstruction") and r["params"].get("task") == "quality":
                ax.axhline(r["metrics"]["fd_local"], ls=":", lw=0.8, color="grey")
                ax.text(0.01, r["metrics"]["fd_local"], r["method"], fontsize=6, color="grey", transform=ax.get_yaxis_transform(), va="bottom")
        ax.set(xscale="log", xlabel="generator GFLOPs per image (all steps, cfg 2)", ylabel="fd_local (lower is better)",
               title="Quality vs compute per attention variant (points: step counts; bars: seed range)")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "gencomp_fd_vs_flops.png", dpi=110)
        plt.close(fig)
        made.append(("fd_local vs generator GFLOPs per image, per attention variant (solid: 196 tokens, dashed: 49)", "gencomp_fd_vs_flops.png"))
    c = [r for r in rows if r["params"].get("task") == "cost"]
    if c:
        exps = {r["params"]["variant"]: r["metrics"] for r in rows if r["params"].get("task") == "cost-exponent"}
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for i, name in enumerate(dict.fromkeys(r["params"]["variant"] for r in c)):
            rs = sorted((r for r in c if r["params"]["variant"] == name), key=lambda r: r["params"]["tokens"])
            e = exps.get(name, {})
            for ax, key, ek in ((axes[0], "attention_gflops", "attention_flops_exponent"), (axes[1], "ms_per_forward", "time_exponent")):
                pts = [(r["params"]["tokens"], r["metrics"][key]) for r in rs if key in r["metrics"] and r["metrics"][key] > 0]
                if pts:
                    lab = f"{name} (slope {e[ek]:.2f})" if ek in e else name
                    ax.plot(*zip(*pts), "-o", ms=4, color=f"C{i}", label=lab)
        L = np.array([196, 3136])
        for ax in axes:
            ax.set(xscale="log", yscale="log", xlabel="tokens per image L")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        axes[0].set(ylabel="attention GFLOPs per forward", title="Attention FLOPs vs tokens (slopes over L >= 196)")
        axes[1].set(ylabel="ms per forward (CPU)", title="Time vs tokens")
        ref = [r["metrics"]["attention_gflops"] for r in c if r["params"]["variant"] == "full-attention" and r["params"]["tokens"] == 196]
        if ref:
            for p, ls in ((2.0, ":"), (4 / 3, "--")):
                axes[0].plot(L, ref[0] * (L / 196) ** p, ls, color="grey", lw=0.8)
                axes[0].text(L[-1], ref[0] * (L[-1] / 196) ** p, f"L^{p:.2f}", fontsize=7, color="grey")
        fig.tight_layout()
        fig.savefig(out_dir / "gencomp_cost_vs_tokens.png", dpi=110)
        plt.close(fig)
        made.append(("Cost vs tokens per image (log-log, fitted slopes in the legend; grey: L^2 and L^(4/3) through full attention at 196)", "gencomp_cost_vs_tokens.png"))
    if (out_dir / GRID_PNG).is_file():
        made.append(("Samples per attention variant (rows: the 10 classes, cfg 2)", GRID_PNG))
    if importlib.util.find_spec(TEXT_MODULE) is not None:
        text = importlib.import_module(TEXT_MODULE)
        if hasattr(text, "extra_plots"):
            made += list(text.extra_plots(None, rows, out_dir) or [])
    return made


def verdicts(rows: list[dict]) -> list[str]:
    from bench.verdict import judge

    q = [r for r in rows if r["params"].get("task") == "quality" and "generator" in r["params"]]

    def pts(gen, x="steps"):
        return sorted((r["params"]["steps"] if x == "steps" else r["metrics"][x], r["metrics"]["fd_local_seeds"]) for r in q if r["params"]["generator"] == gen)

    def flops(gen, steps):
        return next((r["metrics"]["gflops_per_image"] for r in q if r["params"]["generator"] == gen and r["params"]["steps"] == steps), math.nan)

    out = []
    for gen, ctrl in CONTROL.items():
        for pt in pts(gen):
            if not pts(ctrl):
                continue
            v = judge(pt, pts(ctrl), higher_is_better=False)
            ratio = flops(gen, pt[0]) / flops(ctrl, pt[0])
            out.append(f"- {gen} vs {ctrl} at {pt[0]} steps: fd_local {np.mean(pt[1]):.1f} vs {v.control_at_x:.1f} at {ratio:.2f}x the FLOPs: {v.text()}")
        for pt in pts(gen, "gflops_per_image"):
            if len(pts(ctrl)) > 1:
                v = judge(pt, pts(ctrl, "gflops_per_image"), higher_is_better=False, log_x=True, x_higher_is_better=False)
                out.append(f"- {gen} vs {ctrl}'s curve at {pt[0]:.3f} GFLOPs/image: fd_local {np.mean(pt[1]):.1f} vs {v.control_at_x:.1f}: {v.text()}")
    ex = {r["params"]["variant"]: r["metrics"] for r in rows if r["params"].get("task") == "cost-exponent"}
    if "fit" in ex and "full-attention" in ex:
        a, b = ex["fit"], ex["full-attention"]
        line = (f"- P03 FIT cost exponent (L >= 196, groups ~ L^(1/3)): attention FLOPs {a['attention_flops_exponent']:.2f} vs full attention "
                f"{b['attention_flops_exponent']:.2f} (claim 4/3 vs 2), total FLOPs {a['total_flops_exponent']:.2f} vs {b['total_flops_exponent']:.2f}")  # fmt: skip
        if "time_exponent_repeats" in a and "time_exponent_repeats" in b:
            v = judge((1.0, a["time_exponent_repeats"]), [(1.0, b["time_exponent_repeats"])], higher_is_better=False)
            line += f"; time {a['time_exponent']:.2f} vs {b['time_exponent']:.2f}: {v.text()}"
        out.append(line)
        if "fit-fixed-groups" in ex:
            out.append(f"- FIT with fixed 7x7 groups (control): attention FLOPs exponent {ex['fit-fixed-groups']['attention_flops_exponent']:.2f}")
    for name in ("pt-dit", "window-attention"):
        if name in ex:
            out.append(f"- {name} cost exponent: attention FLOPs {ex[name]['attention_flops_exponent']:.2f}, total {ex[name]['total_flops_exponent']:.2f}"
                       + (f", time {ex[name]['time_exponent']:.2f}" if "time_exponent" in ex[name] else ""))  # fmt: skip
    if importlib.util.find_spec(TEXT_MODULE) is not None:  # P58 / P27 verdicts from the helper module
        text = importlib.import_module(TEXT_MODULE)
        if hasattr(text, "text_verdicts"):
            out += text.text_verdicts(rows)
    return out


def headline(method: str, rows: list[dict]) -> str | None:
    if method == "dit":  # the generator itself: held-out flow-matching loss per attention variant
        ls = [r for r in rows if r["method"] == "dit" and r["params"].get("task") == "held-out-loss"]
        return ("generator-compression: held-out flow-matching loss " + ", ".join(
            f"{r['params']['attention']} {r['metrics']['flow_matching_loss']:.3f} ({r['params']['tokens']})" for r in ls)) if ls else None
    q = [r for r in rows if r["method"] == method and r["params"].get("task") == "quality" and r["params"].get("tokens") == 196]
    if not q:
        return None
    best = min(q, key=lambda r: r["metrics"]["fd_local"])
    m = best["metrics"]
    e = next((r["metrics"] for r in rows if r["method"] == method and r["params"].get("task") == "cost-exponent"
              and r["params"]["variant"] == method), None)  # fmt: skip
    tail = f", attention-FLOP exponent {e['attention_flops_exponent']:.2f}" if e else ""
    return (f"generator-compression (196 tokens): fd_local {m['fd_local']:.1f}, class acc {m['class_accuracy']:.2f} at {best['params']['steps']} steps, "
            f"{m['gflops_per_image']:.2f} GFLOPs/image{tail}")  # fmt: skip


def summary(rows: list[dict]) -> str:
    return "\n".join(verdicts(rows))
