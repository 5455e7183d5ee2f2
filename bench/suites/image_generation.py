"""Suite `image-generation`: class-conditional Fashion-MNIST generation over the project's image
tokenizers, every generator at equal guidance (cfg 2) and two or three step counts.

Models (trained once by ``tokenworks train gen-<name>``, committed under ``assets/generate/``,
d=96, 2 layers, 700 steps (xAR and its control 500) on 20k training images): raster AR, MaskGIT and P07 ENAT over the ids
of ``patch2d-7x7`` (2D grid, 49 tokens, FSQ 1000 codes); MaskGIT over ``titok-32`` (1D, 32
tokens, the same 1000 codes: 1D vs 2D at ~2/3 the bits) and over ``titok-49`` (1D, 49 tokens:
1D vs 2D at equal bits and equal latent scalars); MAR, P25 Hi-MAR and P32 xAR (+ its
teacher-forced control) over the pre-rounding FSQ latents of ``patch2d-7x7``.

Rows
- ``real-test`` (fd_local of as many other test images as a row has samples: the floor at this sample size),
  ``<tokenizer>-reconstruction`` (the ceiling a generator over that tokenizer can reach) and
  ``random-ids`` (uniform random ids decoded: the trivial baseline).
- per generator and steps: fd_local against the test images, class accuracy of the samples,
  improved precision/recall (k=3) in the classifier's feature space, generator GFLOPs per image
  (``torch.utils.flop_counter``, guidance included; decoder separately), network evaluations
  and ms per image (CPU wall time, this machine). Labels: each class equally; 1000 samples per
  row in the full run, 100 with --quick, 3 sampling seeds in both (spread = sampling only: one
  trained model per method, so a verdict's spread understates the training spread).
- ``xar-exposure``: xAR and its teacher-forced control generating each cell from the real
  previous cells of test images vs free-running: exposure bias = fd(free) - fd(teacher-forced).
- ``himar-pivots``: Hi-MAR's dense tokens generated from the test images' true pivots vs from
  the pivots of other test images of the same class: latent MSE to the true tokens.
- Verdicts (bench.verdict, sampling seeds): ENAT vs MaskGIT fd_local at equal FLOPs; Hi-MAR vs
  MAR at equal steps; xAR's exposure gap vs the control's; MaskGIT over 1D ``titok-49`` vs over 2D
  ``patch2d-7x7`` at equal steps, bits (488) and latent scalars (196): do 1D tokens generate better
  (TiTok's claim)?
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

NAME = "image-generation"
DESCRIPTION = """Class-conditional Fashion-MNIST generation over project tokenizers: raster AR, MaskGIT, MAR (flow head)
baselines, P07 ENAT, P25 Hi-MAR, P32 xAR (+ teacher-forced control): fd_local, class accuracy, precision/recall,
GFLOPs, NFE and time per image; 1D (TiTok) vs 2D tokens; xAR exposure bias; Hi-MAR pivots."""

CFG = 2.0
STEPS = {"ar-patch2d": (49,), "maskgit-patch2d": (4, 8, 12), "enat-patch2d": (4, 8, 12), "maskgit-titok32": (4, 8, 12),
         "maskgit-titok49": (4, 8, 12), "mar-patch2d": (4, 8, 16), "himar-patch2d": (4, 8, 16), "xar-patch2d": (4, 8), "xar-tf-patch2d": (4, 8)}  # fmt: skip
QUICK_STEPS = {"ar-patch2d": (49,), "maskgit-patch2d": (4, 8), "enat-patch2d": (4, 8), "maskgit-titok32": (8,),
               "maskgit-titok49": (8,), "mar-patch2d": (8,), "himar-patch2d": (8,), "xar-patch2d": (4,), "xar-tf-patch2d": (4,)}  # fmt: skip
GRID_PNG = "generation_samples.png"


def _seeds(ctx):
    return (0, 1, 2)  # sampling seeds; --quick too, so that its verdicts have a spread


def run(ctx) -> Any:
    from tokenworks.data import load_images
    from tokenworks.generate.evaluate import generation_metrics, image_grid, sample_images
    from tokenworks.generate.latents import decode_latents, encode_latents
    from tokenworks.generate.train import GENERATORS, image_generator, load_tokenizer

    n = 100 if ctx.quick else 1000
    test = load_images("fashion-mnist", "test")
    real = test.take(2000 if not ctx.quick else 1000)
    x_real = real.float()
    labels = torch.arange(10).repeat_interleave(n // 10)
    # references: the floor, the tokenizers' ceilings, the trivial baseline
    other = test.float()[-n:]
    yield {"family": "GEN", "method": "real-test", "paper": None, "params": {"samples": n}, "budget": {},
           "metrics": generation_metrics(other, test.labels[-n:], x_real)}  # fmt: skip
    for tok_name in ("patch2d-7x7", "titok-32", "titok-49"):
        tok = load_tokenizer(tok_name)
        rec = tok.decode(tok.encode(other))
        yield {"family": "VIS", "method": f"{tok_name}-reconstruction", "paper": None,
               "params": {"tokenizer": tok_name, "tokens": tok.num_tokens, "samples": n}, "budget": {"bits_per_image": tok.bits_per_image},
               "metrics": generation_metrics(rec, test.labels[-n:], x_real) | {"bits_per_image": tok.bits_per_image}}  # fmt: skip
    tok = load_tokenizer("patch2d-7x7")
    rnd = tok.decode(torch.randint(0, tok.codebook_size, (n, tok.num_tokens), generator=torch.Generator().manual_seed(0)))
    yield {"family": "GEN", "method": "random-ids", "paper": None, "params": {"tokenizer": "patch2d-7x7", "samples": n}, "budget": {},
           "metrics": generation_metrics(rnd, labels, x_real)}  # fmt: skip

    steps_for = QUICK_STEPS if ctx.quick else STEPS
    gens = {}
    for name in ctx.track([n for n in GENERATORS if n in STEPS], "image-generation: load generators"):  # not the DiTs of generator-compression
        gens[name] = image_generator(name, device="cpu")
        gens[name].cfg = CFG
    grid = {}
    for name, gen in gens.items():
        method, tok_name, _ = GENERATORS[name]
        tok = load_tokenizer(tok_name)
        for steps in steps_for[name]:
            per: dict[str, list[float]] = {}
            for seed in _seeds(ctx):
                imgs, info = sample_images(gen, tok, labels, steps=steps, seed=1000 * seed, flops=seed == 0)
                for k, v in (generation_metrics(imgs, labels, x_real) | info).items():
                    per.setdefault(k, []).append(v)
                if seed == 0 and steps == steps_for[name][-1]:
                    grid[name] = imgs.reshape(10, -1, *imgs.shape[1:])[:, :6].reshape(-1, *imgs.shape[1:])
            m = {k: float(np.mean(v)) for k, v in per.items()}
            m |= {f"{k}_seeds": v for k, v in per.items() if k in ("fd_local", "class_accuracy")}
            yield {"family": "GEN", "method": method, "paper": _paper(method),
                   "params": {"generator": name, "tokenizer": tok_name, "steps": steps, "cfg": CFG, "samples": n,
                              **({"noisy_context": gen.noisy_context} if method == "xar" else {})},
                   "budget": {"steps": steps, "nfe": m["nfe"], "gflops_per_image": m.get("gflops_per_image", math.nan),
                              "bits_per_image": tok.bits_per_image},
                   "metrics": m}  # fmt: skip

    # xAR exposure bias: teacher-forced (real previous cells) vs free-running
    tok = load_tokenizer("patch2d-7x7")
    sel = torch.cat([torch.nonzero(test.labels == c)[: n // 10, 0] for c in range(10)])
    z_real = encode_latents(tok, test.float()[sel])
    lab_sel = test.labels[sel]
    for name in ("xar-patch2d", "xar-tf-patch2d"):
        gen = gens[name]
        per = {}
        for seed in _seeds(ctx):
            tf = decode_latents(tok, gen.teacher_forced(z_real, lab_sel, steps=4, seed=seed))
            free = decode_latents(tok, gen.generate(lab_sel, steps=4, seed=seed).tokens)
            a, b = generation_metrics(tf, lab_sel, x_real), generation_metrics(free, lab_sel, x_real)
            for k, v in {"fd_teacher_forced": a["fd_local"], "fd_free_running": b["fd_local"], "exposure_gap": b["fd_local"] - a["fd_local"],
                         "acc_teacher_forced": a["class_accuracy"], "acc_free_running": b["class_accuracy"]}.items():  # fmt: skip
                per.setdefault(k, []).append(v)
        yield {"family": "GEN", "method": "xar-exposure", "paper": "P32", "params": {"generator": name, "noisy_context": gen.noisy_context, "steps": 4, "samples": len(sel)},
               "budget": {"steps": 4}, "metrics": {k: float(np.mean(v)) for k, v in per.items()} | {"exposure_gap_seeds": per["exposure_gap"]}}  # fmt: skip

    # Hi-MAR: dense tokens from true pivots vs pivots of another image of the same class
    hm = gens["himar-patch2d"]
    piv = hm.pivots(z_real)
    per_class = len(sel) // 10  # sel is ordered by class: roll within each class
    other_piv = piv.reshape(10, per_class, *piv.shape[1:]).roll(1, 1).reshape(piv.shape)
    per = {}
    for seed in _seeds(ctx):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            hm.eval()
            true_d, _ = hm.dense_given_pivots(lab_sel, piv, 8, g)
            other_d, _ = hm.dense_given_pivots(lab_sel, other_piv, 8, g)
        for k, v in {"latent_mse_true_pivots": float((true_d - z_real).pow(2).mean()), "latent_mse_other_pivots": float((other_d - z_real).pow(2).mean())}.items():
            per.setdefault(k, []).append(v)
    yield {"family": "GEN", "method": "himar-pivots", "paper": "P25", "params": {"steps": 8, "samples": len(sel)}, "budget": {},
           "metrics": {k: float(np.mean(v)) for k, v in per.items()} | {f"{k}_seeds": v for k, v in per.items()}}  # fmt: skip

    Path(ctx.out_dir).mkdir(parents=True, exist_ok=True)
    _draw_grid(grid, Path(ctx.out_dir) / GRID_PNG, image_grid)


def _paper(method: str):
    from tokenworks.registry import get

    return get(method).paper


def _draw_grid(grid: dict, path: Path, image_grid) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not grid:
        return
    fig, axes = plt.subplots(1, len(grid), figsize=(2.6 * len(grid), 4.6))
    for ax, (name, imgs) in zip(np.atleast_1d(axes), grid.items()):
        ax.imshow(image_grid(imgs, 10), cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    gen_rows = [r for r in rows if "generator" in r["params"] and "gflops_per_image" in r["metrics"]]
    for name in dict.fromkeys(r["params"]["generator"] for r in gen_rows):
        rs = sorted((r for r in gen_rows if r["params"]["generator"] == name), key=lambda r: r["metrics"]["gflops_per_image"])
        ax.plot([r["metrics"]["gflops_per_image"] for r in rs], [r["metrics"]["fd_local"] for r in rs], "-o", label=name, ms=4)
    for r in rows:
        if r["method"] in ("real-test", "patch2d-7x7-reconstruction", "titok-32-reconstruction", "titok-49-reconstruction"):
            ax.axhline(r["metrics"]["fd_local"], ls=":", lw=0.8, color="grey")
            ax.text(0.01, r["metrics"]["fd_local"], r["method"], fontsize=6, color="grey", transform=ax.get_yaxis_transform(), va="bottom")
    ax.set(xscale="log", xlabel="generator GFLOPs per image (guidance included)", ylabel="fd_local (lower is better)",
           title="Quality vs compute (one line per generator, points = step counts)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "generation_fd_vs_flops.png", dpi=110)
    plt.close(fig)
    out = [("fd_local vs generator GFLOPs per image (one line per generator; grey: real test floor, tokenizer ceilings)", "generation_fd_vs_flops.png")]
    if (Path(out_dir) / GRID_PNG).is_file():
        out.append(("Samples per generator (rows: the 10 classes, cfg 2, the largest step count)", GRID_PNG))
    return out


def verdicts(rows: list[dict]) -> list[str]:
    from bench.verdict import judge

    def curve(gen, x="gflops_per_image"):
        return sorted((r["metrics"][x] if x != "steps" else r["params"]["steps"], r["metrics"]["fd_local_seeds"])
                      for r in rows if r["params"].get("generator") == gen)  # fmt: skip

    out = []
    for pt in curve("enat-patch2d"):
        v = judge(pt, curve("maskgit-patch2d"), higher_is_better=False, log_x=True)
        out.append(f"- P07 ENAT vs MaskGIT at {pt[0]:.3f} GFLOPs/image: fd_local {np.mean(pt[1]):.1f} vs MaskGIT's curve {v.control_at_x:.1f}: {v.text()}")
    for pt in curve("himar-patch2d", "steps"):
        v = judge(pt, curve("mar-patch2d", "steps"), higher_is_better=False)
        out.append(f"- P25 Hi-MAR vs MAR at {pt[0]} steps: fd_local {np.mean(pt[1]):.1f} vs {v.control_at_x:.1f}: {v.text()}")
    for pt in curve("maskgit-titok49", "steps"):
        v = judge(pt, curve("maskgit-patch2d", "steps"), higher_is_better=False)
        out.append(f"- P23 1D tokens (titok-49) vs 2D (patch2d-7x7) under MaskGIT at {pt[0]} steps, equal bits and latent scalars: "
                   f"fd_local {np.mean(pt[1]):.1f} vs {v.control_at_x:.1f}: {v.text()}")  # fmt: skip
    ex = {r["params"]["generator"]: r["metrics"] for r in rows if r["method"] == "xar-exposure"}
    if len(ex) == 2:
        a, b = ex["xar-patch2d"], ex["xar-tf-patch2d"]
        v = judge((1.0, a["exposure_gap_seeds"]), [(1.0, b["exposure_gap_seeds"])], higher_is_better=False)
        out.append(f"- P32 xAR noisy context vs teacher-forced control, exposure gap (fd free - fd teacher-forced): {a['exposure_gap']:.1f} vs {b['exposure_gap']:.1f}: {v.text()}")
    return out


def headline(method: str, rows: list[dict]) -> str | None:
    rs = [r for r in rows if r["method"] == method and "fd_local" in r["metrics"] and "generator" in r["params"]]
    rs = [r for r in rs if r["params"].get("noisy_context") is not False] or rs  # xAR: the paper's noisy-context model, not its control
    if not rs:
        return None
    best = min(rs, key=lambda r: r["metrics"]["fd_local"])
    m = best["metrics"]
    return (f"image-generation: fd_local {m['fd_local']:.1f}, class acc {m['class_accuracy']:.2f} at {best['params']['steps']} steps, "
            f"{m.get('gflops_per_image', math.nan):.2f} GFLOPs/image ({best['params']['generator']})")  # fmt: skip


def summary(rows: list[dict]) -> str:
    return "\n".join(verdicts(rows))
