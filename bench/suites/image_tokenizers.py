"""Suite `image-tokenizers`: 1D latent-token tokenizers from seven papers vs a 2D patch baseline.

Every tokenizer is trained on Fashion-MNIST (train split, 28x28 grey) with one recipe (AdamW,
``STEPS`` steps of batch 64, MSE + the method's own terms) and evaluated on the test split:
PSNR, SSIM, ``fd_local`` (Frechet distance on the project's classifier features; not FID),
codebook usage, bits per image, and the held-out NLL (bits per image) of a small
autoregressive token prior (HF ``LlamaForCausalLM``, ``PRIOR``) trained on the tokenizer's ids
of the first ``PRIOR_IMAGES`` training images, which measures how easy the tokens are to
generate. FlexTok is also decoded from every prefix length; RobusTok and its control get the
perturbed-decode ``fd_local``.

Presets (``PRESETS``) name the method, its options and the recipe. Their trained tokenizers
and token priors are committed (float16) under ``assets/vision/<preset>`` and
``assets/vision/<preset>-prior``; ``tokenworks vision presets`` prints the command that
reproduces each tokenizer, and ``tokenworks vision presets --train --out assets/vision``
trains every missing tokenizer and prior (the exact procedure that made the committed ones;
3-8 CPU minutes per tokenizer, 1-2 per prior, the 196-token prior about 15). Anything
neither cached nor committed with the same recipe fingerprint is trained during the run
(into the cache).

Quick run (``--quick``, used by ``make bench``): 1,000 test images, FlexTok decoded at
1, 2, 4, ..., 32 tokens. Full run: the whole test split, FlexTok at every length 1..32. Both
use the same committed tokenizers and priors.
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import tokenworks as tw
from tokenworks.data import load_fashion_mnist
from tokenworks.vision import PriorConfig, TokenizerTrainConfig, evaluate_tokenizer, perturbed_fd_local, prior_nll_bits
from tokenworks.vision.store import pretrained_prior, pretrained_tokenizer, recipe

NAME = "image-tokenizers"
DESCRIPTION = """1D latent-token image tokenizers (TiTok, FlexTok, Hita, Instella-T2I binary tokens, TexTok,
GigaTok, VA-VAE, RobusTok, DiGIT) and the 2D patch baseline on Fashion-MNIST: reconstruction
(PSNR, SSIM, `fd_local`, a Frechet distance on a classifier trained here, not FID), bits per
image, and the held-out NLL of an autoregressive token prior (bits per image)."""

STEPS = 1500
FSQ = {"levels": [8, 5, 5, 5]}  # 1000 codes, 9.97 bits per token
PERTURB_RATES = (0.1, 0.3)
PRIOR = PriorConfig(hidden_size=64, layers=2, heads=4, intermediate_size=192, steps=600, batch_size=64, lr=3e-3, warmup=30)
PRIOR_IMAGES = 20_000  # training images whose ids train each token prior
GRID_IMAGES = 8
QUICK_TEST = 1000  # test images in the quick run (the full run uses all 10,000)


def prior_data():
    """The images whose token ids train every prior: the first PRIOR_IMAGES training images."""
    train = load_fashion_mnist("train")
    return train.take(min(PRIOR_IMAGES, len(train)))


@dataclass(frozen=True)
class Preset:
    """One trained tokenizer of the suite: registered ``method`` + ``options``; ``row`` is the
    registry name the row reports under (the method whose claim it carries)."""

    method: str
    options: dict[str, Any]
    row: str
    steps: int = STEPS
    note: str = ""
    grid: bool = False  # shown in the reconstruction grid
    extra: tuple[str, ...] = field(default=())

    @property
    def train(self) -> TokenizerTrainConfig:
        return TokenizerTrainConfig(steps=self.steps, batch_size=64, lr=2e-3, warmup=min(50, self.steps), seed=0)


def _titok(k: int, **kw) -> dict:
    return {"num_latents": k, "quantizer": "fsq", "quantizer_options": FSQ, **kw}


_ROBUST_VQ = {"codebook_size": 1024, "dead_code_threshold": 1.0, "anneal_end": STEPS}
_2D = {"width": 32, "latent_dim": 16, "quantizer": "fsq"}

PRESETS: dict[str, Preset] = {
    "patch2d-7x7": Preset("patch2d", {**_2D, "downsample": 4, "quantizer_options": FSQ}, "patch2d", grid=True),
    "patch2d-7x7-81": Preset("patch2d", {**_2D, "downsample": 4, "quantizer_options": {"levels": [3, 3, 3, 3]}}, "patch2d",
                             note="81 codes: equal bits with 32 1D tokens"),  # fmt: skip
    "patch2d-14x14": Preset("patch2d", {**_2D, "downsample": 2, "quantizer_options": FSQ}, "patch2d"),
    "titok-8": Preset("titok", _titok(8), "titok"),
    "titok-16": Preset("titok", _titok(16), "titok", grid=True),
    "titok-32": Preset("titok", _titok(32), "titok"),
    "flextok-32": Preset("flextok", _titok(32), "flextok", grid=True, extra=("prefix",)),
    "flextok-32-nodrop": Preset("flextok", _titok(32, nested_dropout=False), "flextok", note="control: no nested dropout", extra=("prefix",)),
    "hita-16": Preset("hita", {"holistic_tokens": 12, "patch_grid": 2, "quantizer": "fsq", "quantizer_options": FSQ}, "hita", grid=True),
    "binary-16": Preset("titok", {"num_latents": 16, "quantizer": "binary", "quantizer_options": {"bits": 10, "group_bits": 10}}, "binary",
                        note="TiTok with 10-bit binary tokens", grid=True),  # fmt: skip
    "textok-8": Preset("textok", _titok(8), "textok"),
    "textok-16": Preset("textok", _titok(16), "textok", grid=True),
    "textok-32": Preset("textok", _titok(32), "textok"),
    "gigatok-16": Preset("gigatok", _titok(16), "gigatok", grid=True),
    "vavae-7x7": Preset("vavae", {**_2D, "downsample": 4, "quantizer_options": FSQ}, "vavae", grid=True),
    "robustok-16": Preset("titok", {"num_latents": 16, "quantizer": "robustok", "quantizer_options": {**_ROBUST_VQ, "alpha": 1.0, "beta": 0.1, "delta": 8}},
                          "robustok", note="TiTok + RobusTok VQ", grid=True, extra=("perturb",)),  # fmt: skip
    "vq-16": Preset("titok", {"num_latents": 16, "quantizer": "robustok", "quantizer_options": {**_ROBUST_VQ, "beta": 0.0}},
                    "titok", note="control: same VQ, no perturbation", extra=("perturb",)),  # fmt: skip
    "digit-16": Preset("digit", {"grid": 4}, "digit", grid=True),
}


def preset_command(name: str) -> str:
    """The command that trains preset ``name`` into ``assets/vision/<name>``."""
    import json
    import shlex

    p = PRESETS[name]
    t = p.train
    sets = " ".join("--set " + shlex.quote(f"{k}={json.dumps(v, separators=(',', ':'))}") for k, v in p.options.items())
    return (f"tokenworks vision train {p.method} --name {name} --out assets/vision {sets} --steps {t.steps} "
            f"--batch-size {t.batch_size} --lr {t.lr} --warmup {t.warmup} --seed {t.seed}")  # fmt: skip


# ---- samples for the reconstruction grid (kept in the row so that report.py needs only results.json)
def _pack(x: torch.Tensor) -> str:
    return base64.b64encode(zlib.compress((x.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes(), 9)).decode()


def _unpack(s: str, n: int) -> "Any":
    import numpy as np

    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=np.uint8).reshape(n, 28, 28)


def run(ctx) -> Any:
    import tokenworks.metrics as M

    quick = ctx.quick
    test = load_fashion_mnist("test")
    test = test.take(min(QUICK_TEST, len(test))) if quick else test
    x_test = test.float()
    for name in ctx.track(list(PRESETS), "image tokenizers: load/train, evaluate, token prior"):
        p = PRESETS[name]
        info = tw.get(p.row)
        tok = pretrained_tokenizer(name, p.method, p.options, p.train, device=ctx.device)
        ev = evaluate_tokenizer(tok, test, device=ctx.device, return_outputs=True)
        ids_test, recon = ev.pop("ids"), ev.pop("recon")
        prior = pretrained_prior(name, tok, recipe(p.method, p.options, p.train), prior_data(), PRIOR, device=ctx.device)
        nll = prior_nll_bits(prior, ids_test.to(ctx.device), tok.codebook_size)
        tokens_per_image = math.prod(tok.index_shape(1)[1:])
        metrics = {
            "psnr": ev["psnr"], "ssim": ev["ssim"], "fd_local": ev["fd_local"],
            "codebook_usage": ev["codebook_usage"], "bits_per_image": ev["bits_per_image"],
            "prior_nll_bits": float(nll.mean()), "prior_nll_per_token": float(nll.mean()) / tokens_per_image,
        }  # fmt: skip
        if "perturb" in p.extra:
            for rate in PERTURB_RATES:
                metrics[f"perturbed_fd_local@{rate:g}"] = perturbed_fd_local(tok, test, rate=rate, seed=0, ids=ids_test, device=ctx.device)
        row = {
            "family": info.family, "method": p.row, "paper": info.paper,
            "params": {"preset": name, "tokenizer": p.method, "quantizer": tok.quantizer, **({"note": p.note} if p.note else {})},
            "budget": {"tokens": tok.num_tokens, "bits_per_image": round(tok.bits_per_image, 1)},
            "metrics": metrics,
        }  # fmt: skip
        if p.grid:
            row["samples"] = {"n": GRID_IMAGES, "original": _pack(x_test[:GRID_IMAGES]), "recon": _pack(recon[:GRID_IMAGES])}
        yield row
        if "prefix" in p.extra:  # FlexTok: decode every prefix length with the same model
            ks = [k for k in range(1, tok.num_tokens + 1) if not quick or k & (k - 1) == 0 or k == tok.num_tokens]
            for k in ks:
                rec_k = torch.cat([tok.decode(ids_test[i : i + 500].to(ctx.device), keep=k).cpu() for i in range(0, len(ids_test), 500)])
                yield {
                    "family": info.family, "method": p.row, "paper": info.paper,
                    "params": {"preset": name, "tokenizer": p.method, "decoded_prefix": True},
                    "budget": {"tokens": k, "bits_per_image": round(tok.quant.sequence_bits(k), 1)},
                    "metrics": {"psnr": float(M.psnr(rec_k, x_test).mean()), "ssim": float(M.ssim(rec_k, x_test).mean())},
                }  # fmt: skip


# ---- report ------------------------------------------------------------------------------------
def _main_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r["params"].get("decoded_prefix")]


def _by_preset(rows: list[dict]) -> dict[str, dict]:
    return {r["params"]["preset"]: r for r in _main_rows(rows)}


def _prefix(rows: list[dict], preset: str) -> list[tuple[int, float]]:
    return sorted((r["budget"]["tokens"], r["metrics"]["psnr"]) for r in rows if r["params"].get("decoded_prefix") and r["params"]["preset"] == preset)


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    made = []
    main = _main_rows(rows)
    # 1. PSNR vs bits per image, one line per (method, tokenizer) family of presets
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lines: dict[str, list[dict]] = {}
    for r in main:
        key = r["params"]["preset"].rsplit("-", 1)[0] if r["params"]["preset"].split("-")[-1].isdigit() else r["params"]["preset"]
        key = "patch2d" if key.startswith("patch2d") else key
        lines.setdefault(key, []).append(r)
    colors = plt.cm.tab20.colors
    for i, (key, rs) in enumerate(sorted(lines.items())):
        rs = sorted(rs, key=lambda r: r["metrics"]["bits_per_image"])
        ax.plot([r["metrics"]["bits_per_image"] for r in rs], [r["metrics"]["psnr"] for r in rs], "--s" if key == "patch2d" else "-o",
                label=key, color=colors[(2 * i) % 20 + (2 * i // 20) % 2])  # fmt: skip
        for r in rs:
            ax.annotate(str(r["budget"]["tokens"]), (r["metrics"]["bits_per_image"], r["metrics"]["psnr"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set(xscale="log", xlabel="bits per image (log)", ylabel="PSNR (dB)", title="Reconstruction vs bits (labels: tokens per image)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "image_tokenizers_psnr_vs_bits.png", dpi=110)
    plt.close(fig)
    made.append(("PSNR vs bits per image, one line per method (2D baseline dashed; point labels = tokens per image)", "image_tokenizers_psnr_vs_bits.png"))
    # 2. prior NLL vs PSNR
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, r in enumerate(main):
        m = r["metrics"]
        ax.scatter(m["psnr"], m["prior_nll_bits"], s=18, color=plt.cm.tab20.colors[i % 20])
        ax.annotate(r["params"]["preset"], (m["psnr"], m["prior_nll_bits"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set(yscale="log", xlabel="PSNR (dB), higher = better reconstruction", ylabel="prior NLL (bits per image, log), lower = easier to generate",
           title="Reconstruction vs generation: token-prior NLL against PSNR")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "image_tokenizers_nll_vs_psnr.png", dpi=110)
    plt.close(fig)
    made.append(("Held-out NLL of the autoregressive token prior vs reconstruction PSNR, one point per trained tokenizer", "image_tokenizers_nll_vs_psnr.png"))
    # 3. FlexTok PSNR vs kept tokens
    presets = sorted({r["params"]["preset"] for r in rows if r["params"].get("decoded_prefix")})
    if presets:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for preset in presets:
            pts = _prefix(rows, preset)
            ax.plot([k for k, _ in pts], [v for _, v in pts], "-o", ms=3, label=preset)
        ax.set(xscale="log", xlabel="tokens kept (prefix length, log)", ylabel="PSNR (dB)", title="FlexTok: one model, any prefix")
        ax.set_xticks([1, 2, 4, 8, 16, 32], labels=["1", "2", "4", "8", "16", "32"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "image_tokenizers_flextok_prefix.png", dpi=110)
        plt.close(fig)
        made.append(("FlexTok PSNR vs number of kept tokens, with and without nested dropout in training", "image_tokenizers_flextok_prefix.png"))
    # 4. reconstruction grid
    shown = [r for r in main if "samples" in r]
    if shown:
        n = shown[0]["samples"]["n"]
        fig, axes = plt.subplots(len(shown) + 1, n, figsize=(n * 0.8, (len(shown) + 1) * 0.85))
        orig = _unpack(shown[0]["samples"]["original"], n)
        for j in range(n):
            axes[0, j].imshow(orig[j], cmap="gray", vmin=0, vmax=255)
        axes[0, 0].set_ylabel("original", fontsize=6, rotation=0, ha="right", va="center")
        for i, r in enumerate(shown, start=1):
            rec = _unpack(r["samples"]["recon"], n)
            for j in range(n):
                axes[i, j].imshow(rec[j], cmap="gray", vmin=0, vmax=255)
            axes[i, 0].set_ylabel(f"{r['params']['preset']}\n{r['metrics']['psnr']:.1f} dB", fontsize=6, rotation=0, ha="right", va="center")
        for a in axes.flat:
            a.set_xticks([])
            a.set_yticks([])
        fig.subplots_adjust(left=0.2, wspace=0.05, hspace=0.08)
        fig.savefig(out_dir / "image_tokenizers_grid.png", dpi=110)
        plt.close(fig)
        made.append(("Reconstructions of the first test images (originals on top), one row per tokenizer at 16 tokens (2D baselines at 7x7)", "image_tokenizers_grid.png"))
    return made


def _fmt(r: dict) -> str:
    m = r["metrics"]
    return f"PSNR {m['psnr']:.2f} dB, prior NLL {m['prior_nll_bits']:.0f} bits at {r['budget']['tokens']} tokens ({m['bits_per_image']:.0f} bits)"


HEADLINE_PRESET = {"patch2d": "patch2d-7x7", "titok": "titok-32", "flextok": "flextok-32", "hita": "hita-16", "binary": "binary-16",
                   "textok": "textok-16", "gigatok": "gigatok-16", "vavae": "vavae-7x7", "robustok": "robustok-16", "digit": "digit-16"}  # fmt: skip


def headline(method: str, rows: list[dict]) -> str | None:
    by = _by_preset(rows)
    r = by.get(HEADLINE_PRESET.get(method, ""))
    if r is None:
        return None
    text = _fmt(r)
    pts = _prefix(rows, HEADLINE_PRESET[method]) if method == "flextok" else []
    if pts:
        text += f"; from its first token only: {pts[0][1]:.2f} dB"
    if method == "robustok" and "perturbed_fd_local@0.1" in r["metrics"]:
        text += f"; perturbed fd_local@0.1 {r['metrics']['perturbed_fd_local@0.1']:.2f}"
    return text


def _cmp(a: float, b: float, lower_better: bool = False) -> bool:
    return a < b if lower_better else a > b


def summary(rows: list[dict]) -> str:
    """The papers' claims, checked against this run's numbers (whichever way they fall)."""
    by = _by_preset(rows)
    out = ["**Claims at this scale** (measured in this run; `held` / `did not hold` is computed from the rows below):", ""]

    def verdict(ok: bool) -> str:
        return "held" if ok else "did not hold"

    def has(*names: str) -> bool:
        return all(n in by for n in names)

    if has("titok-32", "patch2d-7x7-81"):
        a, b = by["titok-32"]["metrics"], by["patch2d-7x7-81"]["metrics"]
        out.append(f"- P23 TiTok: 32 1D tokens ({a['bits_per_image']:.0f} bits) reach PSNR {a['psnr']:.2f} dB vs {b['psnr']:.2f} dB for the 2D 7x7 grid "
                   f"at {b['bits_per_image']:.0f} bits (49 tokens): {verdict(a['psnr'] >= b['psnr'])} (1D >= 2D at equal bits).")  # fmt: skip
    pts = _prefix(rows, "flextok-32")
    if pts:
        drops = [a - b for (_, a), (_, b) in zip(pts, pts[1:])]
        worst = max([0.0, *drops])
        ctrl = dict(_prefix(rows, "flextok-32-nodrop"))
        s = ", ".join(f"k={k}: {v:.2f}" + (f" (no dropout {ctrl[k]:.2f})" if k in ctrl else "") for k, v in pts)
        out.append(f"- P43 FlexTok: PSNR (dB) by kept tokens {s}. Strictly monotone in k: {verdict(worst == 0)} "
                   f"(largest drop between consecutive lengths {worst:.3f} dB).")  # fmt: skip
    for k in (8, 16, 32):
        if has(f"textok-{k}", f"titok-{k}"):
            a, b = by[f"textok-{k}"]["metrics"], by[f"titok-{k}"]["metrics"]
            out.append(f"- P10 TexTok at {k} tokens: PSNR {a['psnr']:.2f} vs {b['psnr']:.2f} dB (TiTok), fd_local {a['fd_local']:.2f} vs {b['fd_local']:.2f}: "
                       f"{verdict(a['psnr'] > b['psnr'])} (caption conditioning improves reconstruction).")  # fmt: skip
    for method, ref in (("gigatok-16", "titok-16"), ("vavae-7x7", "patch2d-7x7")):
        if has(method, ref):
            a, b = by[method]["metrics"], by[ref]["metrics"]
            paper = by[method]["paper"]
            out.append(f"- {paper} {method} vs {ref}: prior NLL {a['prior_nll_bits']:.1f} vs {b['prior_nll_bits']:.1f} bits/image, PSNR {a['psnr']:.2f} vs {b['psnr']:.2f} dB: "
                       f"{verdict(a['prior_nll_bits'] < b['prior_nll_bits'] and a['psnr'] > b['psnr'] - 1.0)} (lower NLL at a PSNR cost under 1 dB).")  # fmt: skip
    if has("robustok-16", "vq-16"):
        ra, rb = by["robustok-16"]["metrics"], by["vq-16"]["metrics"]
        for rate in PERTURB_RATES:
            key = f"perturbed_fd_local@{rate:g}"
            a, b = ra.get(key), rb.get(key)
            if a is not None and b is not None:
                out.append(f"- P21 RobusTok: perturbed-decode fd_local at rate {rate:g}: {a:.2f} vs {b:.2f} without perturbation training: {verdict(a < b)} "
                           f"(increase over the unperturbed fd_local: {a - ra['fd_local']:+.2f} vs {b - rb['fd_local']:+.2f}).")  # fmt: skip
    if has("hita-16", "titok-16"):
        a, b = by["hita-16"]["metrics"], by["titok-16"]["metrics"]
        out.append(f"- P05 Hita (16 tokens): prior NLL {a['prior_nll_bits']:.1f} vs {b['prior_nll_bits']:.1f} bits/image for TiTok-16, PSNR {a['psnr']:.2f} vs {b['psnr']:.2f} dB: "
                   f"{verdict(a['prior_nll_bits'] < b['prior_nll_bits'])} (easier prior).")  # fmt: skip
    for ref, what in (("vq-16", "a reconstruction-trained VQ TiTok with the same 1024 codes"), ("titok-16", "the FSQ TiTok-16")):
        if has("digit-16", ref):
            a, b = by["digit-16"]["metrics"], by[ref]["metrics"]
            out.append(f"- P22 DiGIT (16 k-means tokens) vs {what}: prior NLL {a['prior_nll_bits']:.1f} vs {b['prior_nll_bits']:.1f} bits/image, "
                       f"PSNR {a['psnr']:.2f} vs {b['psnr']:.2f} dB, codebook usage {a['codebook_usage']:.0%} vs {b['codebook_usage']:.0%}: "
                       f"{verdict(a['prior_nll_bits'] < b['prior_nll_bits'])} (easier prior).")  # fmt: skip
    if has("binary-16", "titok-16"):
        a, b = by["binary-16"]["metrics"], by["titok-16"]["metrics"]
        out.append(f"- P20 binary tokens (16 x 10 bits): PSNR {a['psnr']:.2f} dB vs {b['psnr']:.2f} dB for FSQ at {b['bits_per_image']:.0f} bits.")
    out += ["", "The per-token NLL column is the prior NLL divided by the ids per image; bits per image is log2(codebook) x ids."]
    return "\n".join(out)
