"""Suite `motion`: motion as tokens on real motion capture (CMU BVH + DeepMimic clips).

Data: :mod:`tokenworks.data.motion` (18 clips on one 15-joint skeleton at 20 fps; windows at each
clip's natural length, 16-48 frames; the last 20% of every clip is test). Models (trained once by
``tokenworks train motion-tokenizer | motion-classifier | motion-generator --name N``, committed
under ``assets/motion/``): the conv + FSQ tokenizer (4 frames per token), the label classifier whose
features give motion ``fd_local`` (Frechet distance on our own classifier's features, not FID),
and five generators over the tokens conditioned on the MiniLM embedding of the label's text.

Rows
- ``motion-tokenizer``: test MPJPE (mm, positions rebuilt from features in the window's heading
  frame, root integrated from its velocity so drift counts; and root-relative), bits per second, fd_local of the reconstructions; ``real-test`` / ``real-train``: the
  classifier's accuracy on real test windows and the fd_local of real train windows (the floor).
- per generator and steps: fd_local against the real test windows, label accuracy of the
  classifier on generated motions, diversity (mean feature distance of random pairs; real test
  for reference), length error (frames, for AR and BAMM, which predict the end; MMM and M2DM are
  given the length; references: each label's median train length, and a length drawn from all
  train lengths ignoring the label), network evaluations and milliseconds per motion. Generated motions follow the
  test windows' labels (and lengths where given), repeated 3 times (312 motions; once with --quick), three sampling seeds (spread = sampling only:
  one trained model per method).
- ``mmm-edit``: in-betweening, prefix and suffix completion of the test tokens (2 tokens kept at
  each kept end): kept tokens equal (fraction, must be 1), MPJPE at the kept frames between the
  edited and the original decoded motion (global: the root is integrated from the regenerated
  velocities, so a kept suffix inherits the drift of a new prefix; root-relative: the poses
  themselves, which differ only through the decoder's temporal context), fd_local of the edits.
- Verdict: M2DM's importance schedule vs the same network trained with the uniform schedule, fd at
  equal steps (bench.verdict, sampling seeds).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

NAME = "motion"
DESCRIPTION = """Motion tokens on CMU BVH + DeepMimic clips: conv+FSQ tokenizer (MPJPE, bits/s); AR (T2M-GPT style), P16 MMM,
P15 BAMM and P41 M2DM (importance vs uniform schedule) generators: motion fd_local, label accuracy, diversity, length
error, MMM editing, network evaluations and time per motion."""

SEEDS = (0, 1, 2)
REPEATS = 3  # each seed generates the test windows' label (and length) list this many times (1 with --quick)
STEPS = {"mmm": (1, 2, 4, 8), "bamm": (1, 2, 4), "m2dm": (1, 2, 4, 8), "m2dm-uniform": (1, 2, 4, 8), "ar": (1,)}
PAPER = {"ar": None, "mmm": "P16", "bamm": "P15", "m2dm": "P41", "m2dm-uniform": None}
STRIP_LABELS = ("walk", "kick", "jump")


def _features(clf, x, lengths):
    with torch.no_grad():
        return clf.features(x, lengths), clf(x, lengths).argmax(-1)


def _diversity(f: torch.Tensor, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, len(f), (2, 300), generator=g)
    return float((f[a] - f[b]).norm(dim=-1).mean())


def run(ctx) -> Any:
    from tokenworks.data.motion import FPS, LABELS, load_motion
    from tokenworks.metrics.image import frechet_distance
    from tokenworks.motion import edit_mask
    from tokenworks.motion.train import GENERATORS, decode_tokens, motion_classifier, motion_generator, motion_tokenizer, token_dataset

    seeds = SEEDS  # generation is fast: three sampling seeds in both modes
    tok = motion_tokenizer(device=ctx.device)
    clf = motion_classifier(device=ctx.device)
    test = load_motion("test")
    x_test, len_test, lab_test = torch.tensor(test.features), torch.tensor(test.lengths), torch.tensor(test.labels)
    f_test, pred_test = _features(clf, x_test, len_test)
    train = load_motion("train")
    f_train, _ = _features(clf, torch.tensor(train.features), torch.tensor(train.lengths))
    yield {"family": "VIS", "method": "real-test", "paper": None, "params": {"windows": len(test)}, "budget": {},
           "metrics": {"label_accuracy": float((pred_test == lab_test).float().mean()), "diversity": _diversity(f_test, 0),
                       "fd_local": 0.0}}  # fmt: skip
    yield {"family": "VIS", "method": "real-train", "paper": None, "params": {"windows": len(train)}, "budget": {},
           "metrics": {"fd_local": frechet_distance(f_train, f_test), "diversity": _diversity(f_train, 0)}}  # fmt: skip

    t_tok, t_len, t_lab = token_dataset(tok, "test")
    rec = decode_tokens(tok, t_tok.clamp_min(0), t_len)
    f_rec, pred_rec = _features(clf, rec, len_test)
    from tokenworks.motion.train import evaluate_tokenizer

    used = int(torch.unique(t_tok[t_tok >= 0]).numel())
    yield {"family": "VIS", "method": "motion-tokenizer", "paper": None,
           "params": {"quantizer": tok.config.quantizer, **tok.config.quantizer_options, "frames_per_token": 4, "fps": FPS},
           "budget": {"bits_per_second": tok.bits_per_second(FPS)},
           "metrics": {"mpjpe_mm": 1000 * evaluate_tokenizer(tok, test.features, test.lengths),
                       "mpjpe_root_relative_mm": 1000 * evaluate_tokenizer(tok, test.features, test.lengths, relative=True),
                       "bits_per_second": tok.bits_per_second(FPS),
                       "fd_local": frechet_distance(f_rec, f_test), "label_accuracy": float((pred_rec == lab_test).float().mean()),
                       "codes_used_test": used, "codebook_size": tok.codebook_size}}  # fmt: skip

    strips: dict[str, dict[str, np.ndarray]] = {"real": {}}
    for lab in STRIP_LABELS:
        i = int(np.nonzero(test.labels == list(LABELS).index(lab))[0][0]) if (test.labels == list(LABELS).index(lab)).any() else None
        if i is not None:
            strips["real"][lab] = test.features[i, : test.lengths[i]]
    # the best a label-only length predictor can do: each label's median train length (several
    # clips share a label with different natural lengths)
    med = {int(c): float(np.median(train.lengths[train.labels == c])) for c in np.unique(train.labels)}
    median_err = float(np.mean([abs(med[int(c)] - float(n)) for c, n in zip(test.labels, test.lengths)]))
    # ...and one that ignores the label: a length drawn from all train lengths
    marginal_err = float(np.mean([np.abs(train.lengths - float(n)).mean() for n in test.lengths]))
    gens = {}
    for name in ctx.track(list(GENERATORS), "motion: load/train generators"):
        gens[name] = motion_generator(name, device=ctx.device)
    reps = 1 if ctx.quick else REPEATS
    g_lab, g_len = t_lab.repeat(reps), t_len.repeat(reps)
    for name, gen in gens.items():
        predicts_end = name in ("ar", "bamm")
        for steps in STEPS[name]:
            per_seed: dict[str, list[float]] = {}
            for seed in seeds:
                out = gen.generate(g_lab, lengths=None if predicts_end else g_len, steps=steps, seed=seed)
                feats = decode_tokens(tok, out.tokens.clamp(0, tok.codebook_size - 1), out.lengths)
                f_gen, pred = _features(clf, feats, out.lengths * 4)
                vals = {"fd_local": frechet_distance(f_gen, f_test), "label_accuracy": float((pred == g_lab).float().mean()),
                        "diversity": _diversity(f_gen, seed), "nfe": out.nfe, "ms_per_motion": 1000 * out.seconds}  # fmt: skip
                if predicts_end:
                    vals["length_error_frames"] = float((out.lengths - g_len).abs().float().mean() * 4)
                    vals["length_error_label_median_frames"] = median_err
                    vals["length_error_ignoring_label_frames"] = marginal_err
                    vals["mean_length_frames"] = float(out.lengths.float().mean() * 4)
                for k, v in vals.items():
                    per_seed.setdefault(k, []).append(v)
                if seed == seeds[0] and steps == STEPS[name][-1]:
                    strips[name] = {}
                    for lab in STRIP_LABELS:
                        idx = torch.nonzero(g_lab == list(LABELS).index(lab))[:, 0]
                        if len(idx):
                            j = int(idx[0])
                            strips[name][lab] = feats[j, : int(out.lengths[j]) * 4].numpy()
            metrics = {k: float(np.mean(v)) for k, v in per_seed.items()}
            metrics |= {f"{k}_seeds": v for k, v in per_seed.items() if k in ("fd_local", "length_error_frames")}
            metrics["length_given"] = not predicts_end
            yield {"family": "GEN", "method": "motion-ar" if name == "ar" else name, "paper": PAPER[name],
                   "params": {"steps": steps, **({"importance": gen.importance} if hasattr(gen, "importance") else {})},
                   "budget": {"steps": steps, "nfe": metrics["nfe"]}, "metrics": metrics}  # fmt: skip

    # MMM editing on the test tokens (motions of at least 6 tokens)
    mmm = gens["mmm"]
    sel = torch.nonzero(t_len >= 6)[:, 0]
    toks, lens, labs = t_tok[sel].clamp_min(0), t_len[sel], t_lab[sel]
    orig = decode_tokens(tok, toks, lens)
    from tokenworks.data.motion import features_to_positions

    for task in ("inbetween", "prefix", "suffix"):
        keep = edit_mask(lens, toks.shape[1], task, 2)
        per: dict[str, list[float]] = {}
        for seed in seeds:
            t0 = time.perf_counter()
            out = mmm.edit(toks, keep, labs, lengths=lens, steps=8, seed=seed)
            secs = (time.perf_counter() - t0) / len(sel)
            ed = decode_tokens(tok, out, lens)
            frames = keep.repeat_interleave(4, 1)
            pe, po = features_to_positions(ed), features_to_positions(orig)
            err = (pe - po).norm(dim=-1).mean(-1)[frames]
            err_rel = ((pe - pe[..., :1, :]) - (po - po[..., :1, :])).norm(dim=-1).mean(-1)[frames]
            f_ed, pred = _features(clf, ed, lens * 4)
            for k, v in {"kept_tokens_equal": float((out[keep] == toks[keep]).float().mean()), "mpjpe_kept_frames_mm": 1000 * float(err.mean()),
                         "mpjpe_kept_frames_root_relative_mm": 1000 * float(err_rel.mean()),
                         "fd_local": frechet_distance(f_ed, f_test[sel] if len(sel) > 2 else f_test),
                         "label_accuracy": float((pred == labs).float().mean()), "ms_per_motion": 1000 * secs}.items():  # fmt: skip
                per.setdefault(k, []).append(v)
        yield {"family": "GEN", "method": "mmm-edit", "paper": "P16", "params": {"task": task, "kept_tokens_per_end": 2, "steps": 8},
               "budget": {"steps": 8}, "metrics": {k: float(np.mean(v)) for k, v in per.items()} | {"motions": len(sel)}}  # fmt: skip
    Path(ctx.out_dir).mkdir(parents=True, exist_ok=True)
    draw_strips(strips, Path(ctx.out_dir) / STRIPS_PNG)


STRIPS_PNG = "motion_strips.png"


def verdicts(rows: list[dict]) -> list[str]:
    from bench.verdict import judge

    def curve(method, importance):
        return sorted((r["params"]["steps"], r["metrics"]["fd_local_seeds"]) for r in rows
                      if r["method"] == method and r["params"].get("importance") == importance)  # fmt: skip

    data, uni = curve("m2dm", "data"), curve("m2dm-uniform", "uniform")
    out = []
    for (s, ys) in data:
        v = judge((s, ys), uni, higher_is_better=False)
        out.append(f"- M2DM importance schedule vs uniform at {s} steps: fd_local {np.mean(ys):.2f} vs {v.control_at_x:.2f}: {v.text()}")
    return out


def _draw(ax, feat: np.ndarray, n: int = 6, color: str = "k") -> None:
    from tokenworks.data.motion import PARENTS, features_to_positions

    pos = features_to_positions(feat)
    idx = np.linspace(0, len(pos) - 1, n).round().astype(int)
    for k, i in enumerate(idx):
        p = pos[i]
        shift = k * 1.2 - p[0, 2]
        for j, par in enumerate(PARENTS):
            if par >= 0:
                ax.plot([p[j, 2] + shift, p[par, 2] + shift], [p[j, 1], p[par, 1]], color=color, lw=1.2)
    ax.set_aspect("equal")
    ax.axis("off")


def draw_strips(strips: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(strips)
    fig, axes = plt.subplots(len(names), len(STRIP_LABELS), figsize=(4 * len(STRIP_LABELS), 1.4 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, lab in enumerate(STRIP_LABELS):
            ax = axes[i, j]
            if lab in strips[name]:
                _draw(ax, strips[name][lab], color="k" if name == "real" else "C0")
            else:
                ax.axis("off")
            if i == 0:
                ax.set_title(lab, fontsize=9)
            if j == 0:
                ax.text(-0.02, 0.5, name, transform=ax.transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, imp, style in (("mmm", None, "-o"), ("bamm", None, "-s"), ("m2dm", "data", "-^"), ("m2dm-uniform", "uniform", "--^"), ("motion-ar", None, "*")):
        rs = sorted((r for r in rows if r["method"] == method and r["params"].get("importance") == imp), key=lambda r: r["params"]["steps"])
        if not rs:
            continue
        label = method if imp is None else f"m2dm ({'importance' if imp == 'data' else 'uniform'} schedule)"
        axes[0].plot([r["params"]["steps"] for r in rs], [r["metrics"]["fd_local"] for r in rs], style, label=label, ms=9 if style == "*" else 5)
        axes[1].plot([r["metrics"]["nfe"] for r in rs], [r["metrics"]["fd_local"] for r in rs], style, label=label, ms=9 if style == "*" else 5)
    real = [r for r in rows if r["method"] == "real-train"]
    tok = [r for r in rows if r["method"] == "motion-tokenizer"]
    for ax in axes:
        if real:
            ax.axhline(real[0]["metrics"]["fd_local"], color="grey", ls=":", lw=0.8, label="real train windows")
        if tok:
            ax.axhline(tok[0]["metrics"]["fd_local"], color="grey", ls="--", lw=0.8, label="tokenizer reconstruction")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0].set(xlabel="decoding steps (BAMM: refinement iterations)", ylabel="motion fd_local (lower is better)", title="fd_local vs steps")
    axes[1].set(xlabel="network evaluations per motion", title="fd_local vs network evaluations")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "motion_fd_vs_steps.png", dpi=110)
    plt.close(fig)
    out.append(("Motion fd_local vs decoding steps and network evaluations per generator (AR: one point, L+1 evaluations)", "motion_fd_vs_steps.png"))
    if (Path(out_dir) / STRIPS_PNG).is_file():  # drawn by run() (it needs the models' outputs)
        out.append(("Stick-figure strips (side view, 6 frames over the motion) per method and label; first row: real test windows", STRIPS_PNG))
    return out


def headline(method: str, rows: list[dict]) -> str | None:
    rs = [r for r in rows if r["method"] == method and "fd_local" in r["metrics"]]
    if not rs:
        return None
    best = min(rs, key=lambda r: r["metrics"]["fd_local"])
    m = best["metrics"]
    if method == "motion-tokenizer":
        return f"motion: MPJPE {m['mpjpe_mm']:.0f} mm at {m['bits_per_second']:.0f} bits/s"
    return f"motion: fd_local {m['fd_local']:.2f}, label accuracy {m.get('label_accuracy', math.nan):.2f} at {best['params'].get('steps')} steps"


def summary(rows: list[dict]) -> str:
    return "\n".join(verdicts(rows))
