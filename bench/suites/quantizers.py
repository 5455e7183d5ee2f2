"""Suite `quantizers`: every registered quantizer as the bottleneck of one 2D patch tokenizer.

The model is the `patch2d` baseline (conv encoder/decoder, 28x28 -> 7x7 = 49 tokens) trained on
Fashion-MNIST with each quantizer at equal code budgets in bits per token (4 and 8 bits; 12 in
the full run). Metrics on the test split: PSNR, SSIM, `fd_local` (Frechet distance on the
project's classifier features; not FID), codebook usage and perplexity, bits per image, and the
collapse checks: distinct codes per image, position entropy (bits), share of tokens on the most
used code; for P20 binary the share of undecided bits (0.1 < p < 0.9).

Trained tokenizers are cached (``$TOKENWORKS_CACHE/models/quantizers/...``); the quick
budgets' checkpoints are committed under ``assets/quantizers/`` (made by
``tokenworks bench quantizers --quick`` followed by ``tokenworks publish 'quantizers/*'``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import tokenworks as tw
from tokenworks.data import load_fashion_mnist
from tokenworks.metrics import distinct_codes_per_image, position_entropy, top_code_share
from tokenworks.models import find_model, load_or_train
from tokenworks.models.store import write_model_info
from tokenworks.vision import ImageTokenizer, TokenizerTrainConfig, evaluate_tokenizer, train_tokenizer

NAME = "quantizers"
DESCRIPTION = """Every registered quantizer as the bottleneck of the same 2D patch tokenizer (49 tokens per
28x28 Fashion-MNIST image), trained with the same recipe at equal code budgets (bits per token);
test-split reconstruction. `fd_local` is a Frechet distance on features of a classifier trained here (not FID)."""

VERSION = 1  # bump when the model or recipe changes (invalidates cached and committed checkpoints)
# bump a quantizer's entry when its own defaults or mechanism change (invalidates only its checkpoints):
# issue 8 made vq collapse-proof, robustok the official alpha/beta/delta scheme, binary tempered with the
# determinism penalty, vat a 2D pyramid (vq_cosine, fsq, lfq, rvq are unchanged); robustok 3: delta the paper's
# share of the codebook (8 was half of the 4-bit codebook: 54% of tokens on one code); vq_kmeans 2: straight-through
# gradients (the rotation trick trapped 58% of the 4-bit model's tokens on a code near the origin)
QUANTIZER_VERSION = {"vq": 2, "robustok": 3, "binary": 3, "vat": 2, "vq_kmeans": 2}  # binary 2: determinism weight 1.0 (collapsed)
STEPS = 1200
WIDTH = 24
LATENT_DIM = 16


def quantizer_options(method: str, bits: int) -> dict[str, Any]:
    """Options that give ``method`` a budget of about ``bits`` bits per token."""
    if method == "robustok":  # delta: the paper's share of the codebook (the default); annealed over the whole training
        return {"codebook_size": 2**bits, "anneal_end": STEPS}
    if method in ("vq", "vq_cosine", "vq_kmeans", "lfq"):
        return {"codebook_size": 2**bits}
    if method == "fsq":
        return {"levels": {4: [4, 4], 8: [8, 6, 5], 12: [8, 8, 8, 8]}[bits]}
    if method == "rvq":
        return {"num_quantizers": 2, "codebook_size": 2 ** (bits // 2)}
    if method == "binary":
        return {"bits": bits}
    if method == "vat":  # 70 indices for the 7x7 grid (scales 1x1, 2x2, 4x4, 7x7): match bits per image
        return {"scales": [1, 2, 4, 7], "codebook_size": 2 ** round(bits * 49 / 70)}
    raise KeyError(f"no budget mapping for quantizer {method!r}; add one to bench/suites/quantizers.py")


def _train_config(device: str) -> TokenizerTrainConfig:
    return TokenizerTrainConfig(steps=STEPS, batch_size=64, lr=2e-3, warmup=50, seed=0, device=device)


def model_fingerprint(method: str, bits: int, device: str = "cpu") -> tuple[dict, dict]:
    """(patch2d options, recipe fingerprint) of the ``method`` model at ``bits`` bits per token."""
    tcfg = _train_config(device)
    model_opts = {"quantizer": method, "quantizer_options": quantizer_options(method, bits), "width": WIDTH, "latent_dim": LATENT_DIM, "downsample": 4}
    fingerprint = {"suite": NAME, "version": VERSION, "model": model_opts, "train": {k: getattr(tcfg, k) for k in ("steps", "batch_size", "lr", "warmup", "seed")}}
    if method in QUANTIZER_VERSION:
        fingerprint["quantizer_version"] = QUANTIZER_VERSION[method]
    return model_opts, fingerprint


def model_path(method: str, bits: int, device: str = "cpu") -> tuple[Path, bool]:
    """The trained patch2d + ``method`` tokenizer at ``bits`` bits per token (committed asset, cache,
    or trained now) and whether it was trained now."""
    tcfg = _train_config(device)
    model_opts, fingerprint = model_fingerprint(method, bits, device)

    def _train(out: Path, run_dir: Path) -> None:
        import torch

        torch.manual_seed(0)
        tok = tw.create("patch2d", **model_opts)
        t0 = time.perf_counter()
        train_tokenizer(tok, load_fashion_mnist("train"), tcfg, ckpt_dir=run_dir, desc=f"patch2d + {method} ({bits} bits/token)")
        seconds = time.perf_counter() - t0
        tok.save_pretrained(out)
        write_model_info(out, fingerprint, train_seconds=seconds)

    name = f"quantizers/{method}-{bits}b"
    trained_now = find_model(name, fingerprint) is None
    return load_or_train(name, fingerprint, _train), trained_now


def run(ctx) -> Any:
    budgets = [4, 8] if ctx.quick else [4, 8, 12]
    test = load_fashion_mnist("test")
    test = test.take(1000) if ctx.quick else test
    methods = [m for m in tw.methods(kind="quantizer")]
    jobs = [(m, b) for m in methods for b in budgets]
    for m, bits in ctx.track(jobs, "quantizers: train/load + evaluate"):
        opts = quantizer_options(m.name, bits)
        path, trained_now = model_path(m.name, bits, ctx.device)
        tok = ImageTokenizer.from_pretrained(path, device=ctx.device)
        metrics = evaluate_tokenizer(tok, test, device=ctx.device, return_outputs=True)
        ids = metrics.pop("ids")
        metrics.pop("recon")
        metrics |= {"distinct_codes_per_image": distinct_codes_per_image(ids), "position_entropy": position_entropy(ids),
                    "top_code_share": top_code_share(ids)}  # fmt: skip
        if m.name == "binary":
            metrics |= _bit_determinism(tok, test, ctx.device)
        yield {
            "family": m.family,
            "method": m.name,
            "paper": m.paper,
            "params": {"quantizer_options": opts, "tokenizer": "patch2d", "width": WIDTH, "latent_dim": LATENT_DIM},
            "budget": {"bits_per_token": round(metrics["bits_per_image"] / 49, 3), "tokens": metrics["tokens"]},
            "metrics": {k: v for k, v in metrics.items() if k != "tokens"} | {"trained_now": trained_now},
        }


def _bit_determinism(tok, test, device: str) -> dict[str, float]:
    """Share of test bits with 0.1 < p < 0.9 for p = sigmoid(z) (thresholded at inference) and for
    the training draw's probability sigmoid(z / temperature)."""
    import torch

    with torch.no_grad():
        z = tok.quant.proj_in(tok.encode_latents(test.float().to(device)))
    undecided = lambda p: float(((p > 0.1) & (p < 0.9)).float().mean())  # noqa: E731
    return {"undecided_bits": undecided(torch.sigmoid(z)), "undecided_bits_at_train_temperature": undecided(torch.sigmoid(z / tok.quant.temperature))}


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    for name, rs in sorted(by.items()):
        rs = sorted(rs, key=lambda r: r["metrics"]["bits_per_image"])
        style = "-o" if rs[0]["paper"] else "--s"
        label = f"{name} ({rs[0]['paper']})" if rs[0]["paper"] else name
        xs = [r["metrics"]["bits_per_image"] for r in rs]
        axes[0].plot(xs, [r["metrics"]["psnr"] for r in rs], style, label=label)
        axes[1].plot(xs, [r["metrics"]["codebook_usage"] for r in rs], style, label=label)
    axes[0].set(xlabel="bits per image", ylabel="PSNR (dB)", title="Rate-distortion (Fashion-MNIST test)")
    axes[1].set(xlabel="bits per image", ylabel="codebook usage", title="Share of codes used", ylim=(0, 1.05))
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fname = "quantizers_rate_distortion.png"
    fig.savefig(Path(out_dir) / fname, dpi=110)
    plt.close(fig)
    return [("PSNR and codebook usage vs bits per image, one line per quantizer (papers solid, baselines dashed)", fname)]


def headline(method: str, rows: list[dict]) -> str | None:
    if not rows:
        return None
    best = max(rows, key=lambda r: r["metrics"]["bits_per_image"])
    m = best["metrics"]
    text = f"PSNR {m['psnr']:.2f} dB, usage {m['codebook_usage']:.0%} at {m['bits_per_image']:.0f} bits/image"
    if "distinct_codes_per_image" in m:
        text += f", {m['distinct_codes_per_image']:.1f} distinct codes/image"
    return text


def summary(rows: list[dict]) -> str:
    lines = []
    budgets = sorted({r["budget"]["bits_per_token"] for r in rows if r["method"] == "vq"})
    for b in budgets:
        rs = [r for r in rows if abs(r["budget"]["bits_per_token"] - b) < 0.5]
        if rs:
            best = max(rs, key=lambda r: r["metrics"]["psnr"])
            lines.append(f"- at ~{b:g} bits/token the best PSNR is `{best['method']}` ({best['metrics']['psnr']:.2f} dB)")
    return "\n".join(lines)
