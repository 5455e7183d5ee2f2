"""Suite `image-tokenizers`: 1D latent-token tokenizers from nine papers vs a 2D patch baseline
and a linear-PCA baseline.

Every tokenizer is trained on Fashion-MNIST (train split, 28x28 grey) with one recipe (AdamW,
``STEPS`` steps of batch 64, peak lr ``LR`` after ``WARMUP`` warm-up steps, cosine decay to a
tenth; MSE + the method's own terms). The 1D tokenizers share one decoder (a ViT over a 7x7
grid of mask tokens + the tokens, a low-rank linear path, the 2D baseline's conv decoder; see
:mod:`tokenworks.vision.vit`).

The encoder's linear path (``ENCODER_LINEAR_RANK``: each latent token also gets a learned rank-4
linear function of all pixels; measured +2.0 dB on TiTok-32 at 400 steps) is in every preset
with a TiTok latent encoder, all three seeds (``titok-8/16/32/49``, ``textok-16``,
``gigatok-16``, ``flextok-32`` and its no-dropout control, ``binary-16``), so the TiTok rate
curve that TexTok, GigaTok, DiGIT and binary are judged on has one recipe. Exceptions:
- kept without it: ``vq-16`` and ``robustok-16`` (a matched pair; ``vq-16``'s weights are the
  tokenizer of the decode assets, image-AR, caption-VLM and FLASH, which would all need
  retraining), both above PCA;
- not applicable: ``hita-16`` / ``hita-patch-16`` (Hita's own two-stage encoder with a causal
  second stage, no TiTok latent encoder; both above PCA) and ``digit-16`` (its tokens are k-means
  clusters of a *frozen* feature encoder; a learned pixel path would make them reconstruction
  tokens, which is what DiGIT does not do).

Training budget: ``STEPS`` = 1200 steps, where the learning curves have not flattened (the loss
of the last fifth still falls 5-10%). What the plateau costs, measured once on ``titok-16`` seed 0
(its committed options and recipe, only the step count doubled, so the cosine schedule spans
2400 steps): test PSNR 19.62 dB at 1200 steps vs 20.77 dB at 2400 (+1.15 dB, whole test split),
more than every seed spread and than several claim gaps in the table. The verdicts here are
therefore verdicts at this budget; a tokenizer that learns more slowly is penalised by it.
Three presets get ``LONG_STEPS`` = 2400 steps, each for a stated reason (and their
``note`` says it):
- ``flextok-32`` and its no-dropout control (both, so that P43's comparison stays at equal
  steps): nested dropout trains the full 32-token sequence in one draw of six (prefixes 1, 2, 4,
  ..., 32), so at 1200 steps the full length had seen ~200 updates and sat 0.49 dB *below* the
  PCA curve (seed mean 19.86 dB); at 2400 steps seed 0 reaches 20.83 dB, above PCA.
- ``digit-16``: its tokens are k-means clusters fixed before training, so the steps train only
  the pixel decoder (the prior NLL of its ids does not depend on them); at 1200 steps it sat at
  the PCA curve (19.04 dB, -0.03 dB), at 2400 seed 0 reaches 19.37 dB. Its encoder is frozen,
  but the decoder dominates: a training step is 5.46 GFLOPs vs 5.87 for ``titok-16`` (batch 64,
  ``torch.utils.flop_counter``), so it gets ~1.9x the training compute of the TiTok curve it is
  judged on. P22's prior-at-equal-reconstruction verdict is read with that in mind: its PSNR is
  bought with a longer decoder fit that the TiTok points did not get.
Evaluation on the test split: PSNR, SSIM, ``fd_local`` (Frechet
distance on the project's classifier features; not FID), codebook usage, the collapse
statistics ``distinct_codes_per_image`` / ``position_entropy`` / ``top_code_share``, bits per
image, latent scalars per image, and the held-out NLL (bits per image) of a small
autoregressive token prior (HF ``LlamaForCausalLM``, ``PRIOR``) trained on the tokenizer's ids
of the first ``PRIOR_IMAGES`` training images (how easy the tokens are to generate). FlexTok is
also decoded from every prefix length; RobusTok and its control get the perturbed-decode
``fd_local`` (each token, with probability 0.1 / 0.3, swapped for one of the ``PERTURB_DELTA`` codes
nearest to its encoder output).

Baselines: the 2D patch tokenizer at 49 tokens (1000 and 81 codes), and linear PCA with
quantized coefficients (:class:`~tokenworks.vision.QuantizedPCA`) with 4 x tokens components
and the FSQ levels [8, 5, 5, 5], i.e. the bits and latent scalars of 8/16/32/49 FSQ tokens
(and of the 81-code 2D grid). ``psnr_minus_pca`` is each tokenizer's PSNR minus the PCA rate
curve at its bits.

Seeds and verdicts: claim rows (and the control points their verdicts read) are trained with
``SEEDS``; a row's metrics are the seed means, ``*_spread`` the max - min over seeds and
``seeds`` the per-seed values. Each claim is judged by :func:`bench.verdict.judge` on the
control's curve (PSNR vs bits, or prior NLL vs PSNR) interpolated at the method's rate; "held"
only when the gap exceeds the summed seed ranges.

Presets (``PRESETS``) name the method, its options, the recipe and the seeds. Their trained
tokenizers and token priors are committed (float16) under ``assets/vision/<unit>`` and
``assets/vision/<unit>-prior`` (unit = preset, or ``<preset>-s<seed>`` for seed > 0), each with
its loss curve in ``tokenworks.json`` (``assets/vision/learning_curves.png`` plots them, redrawn by
every ``tokenworks vision presets --train``);
``tokenworks vision presets`` prints the command that reproduces each unit, and ``tokenworks
vision presets --train --out assets/vision`` trains every missing unit (the exact procedure that
made the committed ones; 2-6 CPU minutes per tokenizer, 1-2 per prior). Anything neither
cached nor committed with the same recipe fingerprint is trained during the run (into the cache).

Quick run (``--quick``, used by ``make bench``): 500 test images, FlexTok decoded at
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

from bench.verdict import FEW, HELD, NOT_HELD, TIE, interpolate, judge

NAME = "image-tokenizers"
DESCRIPTION = """1D latent-token image tokenizers (TiTok, FlexTok, Hita, Instella-T2I binary tokens, TexTok,
GigaTok, VA-VAE, RobusTok, DiGIT) and the 2D patch baseline on Fashion-MNIST: reconstruction
(PSNR, SSIM, `fd_local`, a Frechet distance on a classifier trained here, not FID), bits per
image, and the held-out NLL of an autoregressive token prior (bits per image)."""

STEPS = 1200
LONG_STEPS = 2 * STEPS  # digit-16 and the flextok-32 pair (see the module docstring)
LR, WARMUP = 2e-3, 100  # AdamW peak, linear warm-up, cosine decay to 0.1 x peak (the training loop's schedule)
FSQ = {"levels": [8, 5, 5, 5]}  # 1000 codes, 9.97 bits per token, 4 latent scalars per token
PERTURB_RATES = (0.1, 0.3)
PERTURB_DELTA = 8  # neighbourhood of the perturbed-decode metric, the same for robustok-16 (its training delta) and vq-16
PRIOR = PriorConfig(hidden_size=64, layers=2, heads=4, intermediate_size=192, steps=600, batch_size=64, lr=3e-3, warmup=30)
PRIOR_IMAGES = 20_000  # training images whose ids train each token prior
GRID_IMAGES = 8
QUICK_TEST = 500  # test images in the quick run (the full run uses all 10,000)
SEEDS = (0, 1, 2)  # claim rows (and the control points their verdicts use) are trained with these seeds


def prior_data():
    """The images whose token ids train every prior: the first PRIOR_IMAGES training images."""
    train = load_fashion_mnist("train")
    return train.take(min(PRIOR_IMAGES, len(train)))


@dataclass(frozen=True)
class Preset:
    """One trained tokenizer of the suite: registered ``method`` + ``options``; ``row`` is the
    registry name the row reports under (the method whose claim it carries); ``seeds`` the
    training seeds (seed s > 0 is stored as ``<preset>-s<s>``)."""

    method: str
    options: dict[str, Any]
    row: str
    steps: int = STEPS
    note: str = ""
    grid: bool = False  # shown in the reconstruction grid
    extra: tuple[str, ...] = field(default=())
    seeds: tuple[int, ...] = (0,)

    def config(self, seed: int = 0) -> TokenizerTrainConfig:
        return TokenizerTrainConfig(steps=self.steps, batch_size=64, lr=LR, warmup=min(WARMUP, self.steps), seed=seed)

    @property
    def train(self) -> TokenizerTrainConfig:
        return self.config(0)


ENCODER_LINEAR_RANK = 4  # the encoder's linear path (tokenworks.vision.vit): rank = the FSQ scalars of a token


def _titok(k: int, linear: bool = False, **kw) -> dict:
    """TiTok options with FSQ tokens; ``linear`` adds the encoder's linear path."""
    return {"num_latents": k, "quantizer": "fsq", "quantizer_options": FSQ, **({"encoder_linear_rank": ENCODER_LINEAR_RANK} if linear else {}), **kw}


_ROBUST_VQ = {"codebook_size": 1024, "dead_code_threshold": 1.0, "anneal_end": STEPS}
_2D = {"width": 32, "latent_dim": 16, "quantizer": "fsq"}

PRESETS: dict[str, Preset] = {
    "patch2d-7x7": Preset("patch2d", {**_2D, "downsample": 4, "quantizer_options": FSQ}, "patch2d", grid=True, seeds=SEEDS),
    "patch2d-7x7-81": Preset("patch2d", {**_2D, "downsample": 4, "quantizer_options": {"levels": [3, 3, 3, 3]}}, "patch2d",
                             note="81 codes: about the bits of 32 1D tokens", seeds=SEEDS),  # fmt: skip
    "titok-8": Preset("titok", _titok(8, linear=True), "titok", seeds=SEEDS),
    "titok-16": Preset("titok", _titok(16, linear=True), "titok", grid=True, seeds=SEEDS),
    "titok-32": Preset("titok", _titok(32, linear=True), "titok", seeds=SEEDS),
    "hita-16": Preset("hita", {"holistic_tokens": 12, "patch_grid": 2, "quantizer": "fsq", "quantizer_options": FSQ}, "hita", grid=True, seeds=SEEDS),
    "hita-patch-16": Preset("hita", {"holistic_tokens": 0, "patch_grid": 4, "quantizer": "fsq", "quantizer_options": FSQ}, "hita",
                            note="control: the same architecture with patch tokens only (4x4), no holistic tokens", seeds=SEEDS),  # fmt: skip
    "textok-16": Preset("textok", _titok(16, linear=True), "textok", grid=True, seeds=SEEDS, note="captions: class + 4 attribute words"),
    "gigatok-16": Preset("gigatok", _titok(16, linear=True), "gigatok", grid=True, seeds=SEEDS),
    "vavae-7x7": Preset("vavae", {**_2D, "downsample": 4, "quantizer_options": FSQ}, "vavae", grid=True, seeds=SEEDS),
    "digit-16": Preset("digit", {"grid": 4}, "digit", steps=LONG_STEPS, grid=True, seeds=SEEDS,
                       note=f"{LONG_STEPS} steps: only its pixel decoder trains (fixed k-means tokens); ~1.9x the TiTok curve's training compute"),
    "flextok-32": Preset("flextok", _titok(32, linear=True), "flextok", steps=LONG_STEPS, grid=True, extra=("prefix",), seeds=SEEDS,
                         note=f"{LONG_STEPS} steps (and its control): nested dropout trains the full length in one draw of six"),
    "flextok-32-nodrop": Preset("flextok", _titok(32, linear=True, nested_dropout=False), "flextok", steps=LONG_STEPS, note="control: no nested dropout", extra=("prefix",), seeds=SEEDS),
    "binary-16": Preset("titok", {"num_latents": 16, "quantizer": "binary", "quantizer_options": {"bits": 10, "group_bits": 10, "determinism_weight": 0.01}, "encoder_linear_rank": ENCODER_LINEAR_RANK},
                        "binary", note="TiTok with 10-bit binary tokens; determinism penalty 0.01 (at 1.0 every token collapsed to one code)",
                        grid=True, seeds=SEEDS),  # fmt: skip
    "titok-49": Preset("titok", _titok(49, linear=True), "titok", note="equal bits and latent scalars with patch2d-7x7", seeds=SEEDS),
    "robustok-16": Preset("titok", {"num_latents": 16, "quantizer": "robustok", "quantizer_options": {**_ROBUST_VQ, "alpha": 1.0, "beta": 0.1, "delta": PERTURB_DELTA}},
                          "robustok", note="TiTok + RobusTok VQ", grid=True, extra=("perturb",), seeds=SEEDS),  # fmt: skip
    "vq-16": Preset("titok", {"num_latents": 16, "quantizer": "robustok", "quantizer_options": {**_ROBUST_VQ, "beta": 0.0}},
                    "titok", note="control: same VQ, no perturbation", extra=("perturb",), seeds=SEEDS),  # fmt: skip
}


def unit_name(preset: str, seed: int) -> str:
    """The asset / cache name of ``preset`` trained with ``seed``."""
    return preset if seed == 0 else f"{preset}-s{seed}"


def units(names: list[str] | None = None) -> list[tuple[str, str, int]]:
    """(unit name, preset, seed) of every trained tokenizer, or of the given preset / unit names."""
    allu = [(unit_name(n, s), n, s) for n, p in PRESETS.items() for s in p.seeds]
    if names is None:
        return allu
    by_unit = {u: (u, n, s) for u, n, s in allu}
    out = []
    for name in names:
        if name in PRESETS:
            out += [u for u in allu if u[1] == name]
        elif name in by_unit:
            out.append(by_unit[name])
        else:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)} (seed s > 0 as <preset>-s<s>)")
    return out


def preset_command(name: str, seed: int = 0) -> str:
    """The command that trains preset ``name`` (with ``seed``) into ``assets/vision/<unit name>``."""
    import json
    import shlex

    p = PRESETS[name]
    t = p.config(seed)
    sets = " ".join("--set " + shlex.quote(f"{k}={json.dumps(v, separators=(',', ':'))}") for k, v in p.options.items())
    return (f"tokenworks vision train {p.method} --name {unit_name(name, seed)} --out assets/vision {sets} --steps {t.steps} "
            f"--batch-size {t.batch_size} --lr {t.lr} --warmup {t.warmup} --seed {t.seed}")  # fmt: skip


def train_unit(unit: str, out: Path, log=print, overwrite: bool = False) -> None:
    """Train one unit (``<preset>`` or ``<preset>-s<seed>``: tokenizer + its token prior) into
    ``out`` unless it is there (or in the cache) with the same recipe."""
    from tokenworks.io import atomic_dir, cache_dir, load_json
    from tokenworks.models.store import find_model
    from tokenworks.vision import ImageTokenizer
    from tokenworks.vision.store import prior_fingerprint, train_and_save, train_prior_and_save

    def trained(path: Path, fp: dict) -> Path | None:
        info = path / "tokenworks.json"
        return path if info.is_file() and load_json(info).get("fingerprint") == fp else None

    found = {u: (n, s) for u, n, s in units()}
    if unit not in found:
        raise ValueError(f"unknown unit {unit!r}; units are <preset> or <preset>-s<seed> for the presets' seeds")
    name, seed = found[unit]
    out = Path(out)
    p = PRESETS[name]
    log(f"{unit}: {preset_command(name, seed)}")
    fp = recipe(p.method, p.options, p.config(seed))
    tok_path = trained(out / unit, fp) or find_model(f"vision/{unit}", fp)
    if tok_path is None:
        with atomic_dir(out / unit, overwrite=overwrite) as tmp:
            train_and_save(tmp, p.method, p.options, p.config(seed), ckpt_dir=cache_dir("runs", "vision", unit))
        tok_path = out / unit
    data = prior_data()
    prior_fp = prior_fingerprint(fp, data, PRIOR)
    if trained(out / f"{unit}-prior", prior_fp) is None and find_model(f"vision/{unit}-prior", prior_fp) is None:
        tok = ImageTokenizer.from_pretrained(tok_path)
        with atomic_dir(out / f"{unit}-prior", overwrite=overwrite) as tmp:
            train_prior_and_save(tmp, unit, tok, fp, data, PRIOR, ckpt_dir=cache_dir("runs", "vision", f"{unit}-prior"))


def train_units(names: list[str] | None, out: Path, log=print, overwrite: bool = False) -> None:
    """Train every missing unit of ``names`` (presets: all their seeds; or unit names) into
    ``out``: what ``tokenworks vision presets --train`` runs, and how ``assets/vision`` is made."""
    for unit, _, _ in units(names):
        train_unit(unit, out, log=log, overwrite=overwrite)
    if any((Path(out) / u / "tokenworks.json").is_file() for u, _, _ in units()):
        flat = plot_learning_curves(Path(out), Path(out) / "learning_curves.png")
        log(f"learning curves of {len(flat)} tokenizers: {Path(out) / 'learning_curves.png'}")


# ---- samples for the reconstruction grid (kept in the row so that report.py needs only results.json)
def _pack(x: torch.Tensor) -> str:
    return base64.b64encode(zlib.compress((x.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes(), 9)).decode()


def _unpack(s: str, n: int) -> "Any":
    import numpy as np

    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=np.uint8).reshape(n, 28, 28)


def latent_scalars(tok) -> int:
    """Latent scalars per image: tokens x the numbers each token's code is made of (FSQ: its
    levels; binary: its bits; VQ: the code vector's dimension)."""
    q = tok.quant
    for attr in ("levels", "bits"):
        v = getattr(q, attr, None)
        if v is not None:
            return tok.num_tokens * (len(v) if isinstance(v, (list, tuple)) else int(v))
    return tok.num_tokens * tok.latent_dim


PCA_POINTS = ((8, FSQ["levels"]), (16, FSQ["levels"]), (32, FSQ["levels"]), (49, FSQ["levels"]), (49, [3, 3, 3, 3]))
SPREAD_KEYS = ("psnr", "ssim", "fd_local", "prior_nll_bits")


def _pca_rows(x_test: torch.Tensor) -> list[dict]:
    """One linear-PCA row per latent size: 4 x tokens components, coefficients quantized with
    the FSQ levels of the tokenizers (equal bits and latent scalars)."""
    import tokenworks.metrics as M
    from tokenworks.vision import QuantizedPCA

    train = load_fashion_mnist("train").float()
    eig = QuantizedPCA.eigenbasis(train)
    rows = []
    for tokens, levels in PCA_POINTS:
        pca = QuantizedPCA(4 * tokens, levels).fit(train, eig=eig)
        rec = pca.reconstruct(x_test)
        ids = pca.encode(x_test)
        rows.append({
            "family": "VIS", "method": "pca", "paper": None,
            "params": {"preset": f"pca-{4 * tokens}" + ("" if levels == FSQ["levels"] else f"-{levels[0]}lv"), "tokenizer": "linear PCA, quantized coefficients",
                       "note": f"{4 * tokens} components, levels {levels} (as {tokens} FSQ tokens)"},
            "budget": {"tokens": tokens, "bits_per_image": round(pca.bits, 1), "latent_scalars": 4 * tokens},
            "metrics": {"psnr": float(M.psnr(rec, x_test).mean()), "ssim": float(M.ssim(rec, x_test).mean()),
                        "bits_per_image": pca.bits, "distinct_codes_per_image": float("nan"), "position_entropy": _entropy_per_position(ids)},
        })  # fmt: skip
    return rows


def _entropy_per_position(ids: torch.Tensor) -> float:
    from tokenworks.metrics.codes import position_entropy

    return position_entropy(ids)


def _evaluate_unit(ctx, name: str, seed: int, test, quick: bool) -> tuple[dict, Any, Any]:
    p = PRESETS[name]
    unit = unit_name(name, seed)
    tok = pretrained_tokenizer(unit, p.method, p.options, p.config(seed), device=ctx.device)
    ev = evaluate_tokenizer(tok, test, device=ctx.device, return_outputs=True)
    ids_test, recon = ev.pop("ids"), ev.pop("recon")
    prior = pretrained_prior(unit, tok, recipe(p.method, p.options, p.config(seed)), prior_data(), PRIOR, device=ctx.device)
    nll = prior_nll_bits(prior, ids_test.to(ctx.device), tok.codebook_size)
    tokens_per_image = math.prod(tok.index_shape(1)[1:])
    metrics = {
        "psnr": ev["psnr"], "ssim": ev["ssim"], "fd_local": ev["fd_local"],
        "codebook_usage": ev["codebook_usage"], "bits_per_image": ev["bits_per_image"],
        "distinct_codes_per_image": ev["distinct_codes_per_image"], "position_entropy": ev["position_entropy"],
        "top_code_share": ev["top_code_share"],
        "prior_nll_bits": float(nll.mean()), "prior_nll_per_token": float(nll.mean()) / tokens_per_image,
    }  # fmt: skip
    if "perturb" in p.extra:
        for rate in PERTURB_RATES:
            metrics[f"perturbed_fd_local@{rate:g}"] = perturbed_fd_local(tok, test, rate=rate, seed=0, ids=ids_test, delta=PERTURB_DELTA, device=ctx.device)
    return metrics, tok, (ids_test, recon)


def run(ctx) -> Any:
    import tokenworks.metrics as M

    quick = ctx.quick
    test = load_fashion_mnist("test")
    test = test.take(min(QUICK_TEST, len(test))) if quick else test
    x_test = test.float()
    pca_rows = _pca_rows(x_test)
    yield from pca_rows
    pca_curve = [(r["metrics"]["bits_per_image"], r["metrics"]["psnr"]) for r in pca_rows if r["params"]["preset"].count("-") == 1]
    for name in ctx.track(list(PRESETS), "image tokenizers: load/train, evaluate, token prior"):
        p = PRESETS[name]
        info = tw.get(p.row)
        per_seed = []
        for seed in p.seeds:
            metrics, tok, outs = _evaluate_unit(ctx, name, seed, test, quick)
            per_seed.append(metrics)
            if seed == p.seeds[0]:
                tok0, (ids_test, recon) = tok, outs
        metrics = {k: sum(m[k] for m in per_seed) / len(per_seed) for k in per_seed[0]}
        for k in SPREAD_KEYS:
            metrics[f"{k}_spread"] = max(m[k] for m in per_seed) - min(m[k] for m in per_seed)
        pca_at = interpolate(pca_curve, metrics["bits_per_image"], log_x=True)
        metrics["psnr_minus_pca"] = metrics["psnr"] - pca_at if not math.isnan(pca_at) else float("nan")
        row = {
            "family": info.family, "method": p.row, "paper": info.paper,
            "params": {"preset": name, "tokenizer": p.method, "quantizer": tok0.quantizer, "seeds": len(p.seeds), **({"note": p.note} if p.note else {})},
            "budget": {"tokens": tok0.num_tokens, "bits_per_image": round(tok0.bits_per_image, 1), "latent_scalars": latent_scalars(tok0)},
            "metrics": metrics,
            "seeds": {k: [m[k] for m in per_seed] for k in SPREAD_KEYS},
        }  # fmt: skip
        for rate in PERTURB_RATES if "perturb" in p.extra else ():  # P21: per-seed rise of fd_local under perturbation
            key = f"perturbed_fd_local@{rate:g}"
            row["seeds"][f"perturbed_rise@{rate:g}"] = [m[key] - m["fd_local"] for m in per_seed]
        if p.grid:
            row["samples"] = {"n": GRID_IMAGES, "original": _pack(x_test[:GRID_IMAGES]), "recon": _pack(recon[:GRID_IMAGES])}
        yield row
        if "prefix" in p.extra:  # FlexTok: decode every prefix length with the same model
            tok = tok0
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
        key = "linear PCA (quantized)" if r["method"] == "pca" else key
        lines.setdefault(key, []).append(r)
    colors = plt.cm.tab20.colors
    for i, (key, rs) in enumerate(sorted(lines.items())):
        rs = sorted(rs, key=lambda r: r["metrics"]["bits_per_image"])
        style = {"patch2d": "--s", "linear PCA (quantized)": ":x"}.get(key, "-o")
        ax.errorbar([r["metrics"]["bits_per_image"] for r in rs], [r["metrics"]["psnr"] for r in rs],
                    yerr=[r["metrics"].get("psnr_spread", 0.0) / 2 for r in rs], fmt=style, capsize=2, ms=4,
                    label=key, color="black" if key.startswith("linear") else colors[(2 * i) % 20 + (2 * i // 20) % 2])  # fmt: skip
        for r in rs:
            ax.annotate(str(r["budget"]["tokens"]), (r["metrics"]["bits_per_image"], r["metrics"]["psnr"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set(xscale="log", xlabel="bits per image (log)", ylabel="PSNR (dB)", title="Reconstruction vs bits (labels: tokens per image)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "image_tokenizers_psnr_vs_bits.png", dpi=110)
    plt.close(fig)
    made.append(("PSNR vs bits per image, one line per method (2D baseline dashed, quantized linear PCA dotted; point labels = tokens per image; bars = seed range)", "image_tokenizers_psnr_vs_bits.png"))
    # 2. prior NLL vs PSNR
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, r in enumerate(r for r in main if "prior_nll_bits" in r["metrics"]):
        m = r["metrics"]
        ax.errorbar(m["psnr"], m["prior_nll_bits"], xerr=m.get("psnr_spread", 0.0) / 2, yerr=m.get("prior_nll_bits_spread", 0.0) / 2,
                    fmt="o", ms=4, capsize=2, color=plt.cm.tab20.colors[i % 20])  # fmt: skip
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
    spread = f" (+-{m['psnr_spread'] / 2:.2f} over {r['params']['seeds']} seeds)" if r["params"].get("seeds", 1) > 1 else ""
    return f"PSNR {m['psnr']:.2f} dB{spread}, prior NLL {m['prior_nll_bits']:.0f} bits at {r['budget']['tokens']} tokens ({m['bits_per_image']:.0f} bits)"


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


def _seeds(r: dict, key: str) -> list[float]:
    return list(r.get("seeds", {}).get(key) or [r["metrics"][key]])


def _curve(by: dict, presets: list[str], x: str, y: str) -> list[tuple[float, list[float]]]:
    """Control curve points (x mean, [y per seed]); x is a metric name or "bits"."""
    out = []
    for n in presets:
        if n in by:
            r = by[n]
            xv = r["metrics"]["bits_per_image"] if x == "bits" else r["metrics"][x]
            out.append((xv, _seeds(r, y)))
    return out


def _budgets(method: str, control: str) -> str:
    """' (<method> trained N steps, <control> M)' when their training budgets differ."""
    a, b = PRESETS.get(method), PRESETS.get(control)
    return f" ({method} trained {a.steps} steps, {control} {b.steps})" if a and b and a.steps != b.steps else ""


def claim_verdicts(rows: list[dict]) -> list[dict]:
    """Every claim's verdict, computed by :func:`bench.verdict.judge` on the control's curve
    (PSNR vs bits, or prior NLL vs PSNR) with the seed spread."""
    by = _by_preset(rows)
    titok = [n for n in ("titok-8", "titok-16", "titok-32") if n in by]
    twod = [n for n in ("patch2d-7x7-81", "patch2d-7x7") if n in by]
    out = []

    def add(claim, paper, method, control, x, y, *, higher=True, log_x=False, what=""):
        if method not in by or not control:
            return
        r = by[method]
        xv = r["metrics"]["bits_per_image"] if x == "bits" else r["metrics"][x]
        v = judge((xv, _seeds(r, y)), _curve(by, control, x, y), higher_is_better=higher, log_x=log_x,
                  x_higher_is_better=True if x == "psnr" else None)  # fmt: skip
        out.append({"paper": paper, "claim": claim, "method": method, "control": control, "x": x, "y": y, "verdict": v, "what": what})

    add("1D tokens reconstruct better than the 2D grid at equal bits", "P23", "titok-32", twod, "bits", "psnr", log_x=True,
        what="PSNR on the 2D rate curve")  # fmt: skip
    if "titok-49" in by and "patch2d-7x7" in by:
        add("1D tokens reconstruct better than 2D at equal bits and equal latent scalars (49 x 4)", "P23", "titok-49", ["patch2d-7x7"], "bits", "psnr",
            what="PSNR at 488 bits, 196 scalars")  # fmt: skip
    add("caption conditioning improves reconstruction at equal tokens", "P10", "textok-16", titok, "bits", "psnr", log_x=True, what="PSNR on the TiTok rate curve")
    add("semantic regularization gives an easier prior at equal reconstruction", "P04", "gigatok-16", titok, "psnr", "prior_nll_bits", higher=False,
        what="prior NLL on TiTok's NLL-vs-PSNR curve")  # fmt: skip
    add("VF alignment gives an easier prior at equal reconstruction", "P46", "vavae-7x7", twod, "psnr", "prior_nll_bits", higher=False,
        what="prior NLL on the 2D NLL-vs-PSNR curve")  # fmt: skip
    add("k-means tokens of frozen features give an easier prior at equal reconstruction", "P22", "digit-16", titok, "psnr", "prior_nll_bits", higher=False,
        what="prior NLL on TiTok's NLL-vs-PSNR curve" + _budgets("digit-16", "titok-16"))  # fmt: skip
    add("holistic tokens give an easier prior than patch tokens at equal token count", "P05", "hita-16", ["hita-patch-16"], "bits", "prior_nll_bits",
        higher=False, what="prior NLL vs the patch-only control at 16 tokens")  # fmt: skip
    add("holistic tokens reconstruct at least as well as patch tokens at equal token count", "P05", "hita-16", ["hita-patch-16"], "bits", "psnr",
        what="PSNR vs the patch-only control at 16 tokens")  # fmt: skip
    add("binary tokens reconstruct like FSQ tokens at equal bits", "P20", "binary-16", titok, "bits", "psnr", log_x=True, what="PSNR on the TiTok rate curve")
    if "robustok-16" in by and "vq-16" in by:
        for rate in PERTURB_RATES:
            key = f"perturbed_rise@{rate:g}"
            ra, rb = by["robustok-16"].get("seeds", {}).get(key), by["vq-16"].get("seeds", {}).get(key)
            if ra and rb:
                # lower rise of fd_local under perturbation is better; same rule as judge(): held only when
                # the gap exceeds the summed seed ranges, and only with >= 3 seeds on each side
                gap = sum(rb) / len(rb) - sum(ra) / len(ra)
                spread = (max(ra) - min(ra)) + (max(rb) - min(rb))
                verdict = FEW if min(len(ra), len(rb)) < 3 else HELD if gap > spread else NOT_HELD if gap < -spread else TIE
                out.append({"paper": "P21", "claim": f"perturbation training makes decoding robust (rate {rate:g})", "method": "robustok-16", "control": ["vq-16"],
                            "x": "bits", "y": key, "verdict": None, "text": f"**{verdict} (gap {gap:+.2f} vs seed spread {spread:.2f})**",
                            "what": f"rise of fd_local when a share {rate:g} of tokens is swapped to encoder-output neighbours: "
                                    f"{sum(ra) / len(ra):+.2f} (robustok, {len(ra)} seeds) vs {sum(rb) / len(rb):+.2f} (vq, {len(rb)} seeds)"})  # fmt: skip
    return out


def summary(rows: list[dict]) -> str:
    """The papers' claims, judged on the control's curve against the seed spread."""
    by = _by_preset(rows)
    out = ["**Claims at this scale** (computed from the rows below by `bench.verdict.judge`: the method's seed mean against the control's "
           "curve interpolated at the method's rate; `held` only when the gap exceeds the summed seed ranges):", ""]  # fmt: skip
    for c in claim_verdicts(rows):
        v = c["verdict"]
        if v is None:
            out.append(f"- {c['paper']} {c['method']} vs {', '.join(c['control'])}: {c['claim']}: {c['text']}; {c['what']}.")
            continue
        unit = " dB" if c["y"] == "psnr" else " bits"
        out.append(f"- {c['paper']} {c['method']} ({v.y:.2f}) vs {', '.join(c['control'])} ({v.control_at_x:.2f} at the method's "
                   f"{'bits' if c['x'] == 'bits' else 'PSNR'} {v.x:.1f}): {c['claim']}: **{v.text(unit)}**; {c['what']}.")  # fmt: skip
    pts = _prefix(rows, "flextok-32")
    if pts:
        drops = [a - b for (_, a), (_, b) in zip(pts, pts[1:])]
        worst = max([0.0, *drops])
        ctrl = dict(_prefix(rows, "flextok-32-nodrop"))
        s = ", ".join(f"k={k}: {v:.2f}" + (f" (no dropout {ctrl[k]:.2f})" if k in ctrl else "") for k, v in pts)
        out.append(f"- P43 FlexTok (prefixes decoded with seed 0's model): PSNR (dB) by kept tokens {s}. Monotone in k: {'held' if worst == 0 else 'did not hold'} "
                   f"(largest drop between consecutive lengths {worst:.3f} dB).")  # fmt: skip
    below = [f"{n} ({r['metrics']['psnr_minus_pca']:+.2f} dB)" for n, r in by.items() if r["metrics"].get("psnr_minus_pca", 1) < 0]
    out.append(f"- Trivial baseline: every tokenizer above linear PCA with quantized coefficients at equal bits (and, for FSQ tokens, equal latent "
               f"scalars): {'yes' if not below else 'no, below: ' + ', '.join(below)}.")  # fmt: skip
    collapsed = [n for n, r in by.items() if r["metrics"].get("distinct_codes_per_image", 2) <= 1 or r["metrics"].get("top_code_share", 0) > 0.5]
    out.append(f"- Positional collapse (distinct codes per image <= 1 or > 50% of tokens on one code): {'none' if not collapsed else ', '.join(collapsed)}.")
    out += ["", "Spreads are max - min over the seeds (`seeds` in params); one-seed rows get no verdict (`too few seeds`). "
            "The per-token NLL column is the prior NLL divided by the ids per image; bits per image is log2(codebook) x ids."]  # fmt: skip
    return "\n".join(out)


# ---- learning curves of the committed tokenizers ------------------------------------------------
def curve_flatness(curve: list[list[float]]) -> float:
    """Relative drop of the training loss over the last fifth of training: (mean loss over
    steps 60-80% - mean over 80-100%) / mean over 80-100%. Near 0 = flattened."""
    n = len(curve)
    a = [v for _, v in curve[int(0.6 * n) : int(0.8 * n)]]
    b = [v for _, v in curve[int(0.8 * n) :]]
    if not a or not b:  # too short a curve to tell
        return float("nan")
    return (sum(a) / len(a) - sum(b) / len(b)) / (sum(b) / len(b))


def plot_learning_curves(asset_dir: Path, out: Path) -> dict[str, float]:
    """One panel per preset: the training loss (10-step means) of each seed, log scale, from
    the ``loss_curve`` each asset's ``tokenworks.json`` keeps. Returns {unit: flatness}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenworks.io import load_json

    asset_dir = Path(asset_dir)
    found = {u: (n, s) for u, n, s in units() if (asset_dir / u / "tokenworks.json").is_file()}
    names = [n for n in PRESETS if any(v[0] == n for v in found.values())]
    cols = 4
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.3 * rows_n), squeeze=False)
    flat = {}
    for ax, name in zip(axes.flat, names):
        for unit, (n, seed) in found.items():
            if n != name:
                continue
            curve = load_json(asset_dir / unit / "tokenworks.json").get("loss_curve")
            if not curve:
                continue
            flat[unit] = curve_flatness(curve)
            ax.plot([s for s, _ in curve], [v for _, v in curve], lw=0.8, label=f"seed {seed}: last-fifth drop {flat[unit]:.1%}")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=8)
        ax.tick_params(which="both", labelsize=6)
        ax.legend(fontsize=5)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"Training loss (MSE + method terms, 10-step means) of the committed tokenizers; {STEPS} steps, lr {LR:g}, warm-up {WARMUP}, cosine", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return flat
