"""Suite `vat-3d`: P06 VAT in its own 3D setting, point clouds from real meshes.

Data: the OFF meshes of CGAL (``libcgal-demo``) and assimp-testmodels
(:mod:`tokenworks.data.pointclouds`; 112 train / 28 test meshes, split by mesh). A tokenizer
(:class:`tokenworks.shapes.PointCloudTokenizer`: set encoder -> Gaussian latent tokens ->
quantizer -> query decoder to 256 points) is trained on random 256-point surface samples of the
train meshes; on the test meshes it encodes a 256-point sample and is scored against a fresh
2048-point sample of the same surface: Chamfer distance (squared L2, x1000) and F-score at
0.05 (shapes scaled into the unit ball), vs the bytes of the token indices.

Rows at equal bytes (8-bit codes, 7 / 31 indices):
- ``vat`` (P06): 4 / 16 Gaussian tokens, 1D residual scales [1, 2, 4] / [1, 2, 4, 8, 16];
- ``vq-single-scale``: the same model with one VQ index per token (7 / 31 tokens, same
  256-code collapse-proof codebook, no Gaussian, no scales);
- ``random-subset``: floor(bytes / 3) input points kept with 8-bit coordinates (3 bytes each);
- ``input-256``: the 256-point input itself (float32, 3 kB), the sampling floor of the metrics;
- ``vat-prefix``: a VAT model's tokens decoded from their first k scales only (fewer bytes; the
  decoder was trained on full codes only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

NAME = "vat-3d"
DESCRIPTION = """P06 VAT on point clouds sampled from CGAL / assimp meshes (split by mesh): Chamfer distance
(x1000) and F-score@0.05 against a fresh 2048-point surface sample, vs bytes of token indices, against a
single-scale VQ and a random subset of the points at the same bytes."""

VERSION = 1
WIDTH, LATENT_DIM, POINTS, STEPS, BATCH = 32, 8, 256, 400, 16
BUDGETS = {7: [1, 2, 4], 31: [1, 2, 4, 8, 16]}  # bytes -> VAT scales (8-bit codes)


def _model_options(method: str, nbytes: int) -> dict[str, Any]:
    base = {"latent_dim": LATENT_DIM, "width": WIDTH, "num_points": POINTS}
    if method == "vat":
        scales = BUDGETS[nbytes]
        return base | {"num_tokens": scales[-1], "quantizer": "vat",
                       "quantizer_options": {"scales": scales, "layout": "1d", "codebook_size": 256}}  # fmt: skip
    return base | {"num_tokens": nbytes, "quantizer": "vq", "quantizer_options": {"codebook_size": 256}}


def _random_subset(inputs: torch.Tensor, nbytes: int, seed: int) -> torch.Tensor:
    k = max(1, nbytes // 3)
    g = torch.Generator().manual_seed(seed)
    pick = torch.rand(inputs.shape[:2], generator=g).argsort(1)[:, :k]
    kept = inputs[torch.arange(inputs.shape[0])[:, None], pick]
    return ((kept.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # 8-bit coordinates


def run(ctx) -> Any:
    from tokenworks.data import load_pointclouds
    from tokenworks.metrics import chamfer_distance, f_score
    from tokenworks.models import load_or_train
    from tokenworks.models.store import write_model_info
    from tokenworks.shapes import PointCloudTokenizer, evaluate_pointcloud_tokenizer, train_pointcloud_tokenizer

    pool = load_pointclouds("train", points=2048, seed=0).points
    inputs = load_pointclouds("test", points=POINTS, seed=1).points
    targets = load_pointclouds("test", points=2048, seed=2).points
    jobs = [(m, b) for b in BUDGETS for m in ("vat", "vq-single-scale")]
    for method, nbytes in ctx.track(jobs, "vat-3d: train/load + evaluate"):
        opts = _model_options(method, nbytes)
        fingerprint = {"suite": NAME, "version": VERSION, "model": opts, "train": {"steps": STEPS, "batch": BATCH, "points": POINTS, "seed": 0}}
        timing: dict[str, float] = {}

        def _train(out: Path, run_dir: Path) -> None:
            torch.manual_seed(0)
            tok = PointCloudTokenizer(**opts)
            t0 = time.perf_counter()
            train_pointcloud_tokenizer(tok, pool, steps=STEPS, batch_size=BATCH, points=POINTS, seed=0, ckpt_dir=run_dir, device=ctx.device)
            timing["train_seconds"] = time.perf_counter() - t0
            tok.save_pretrained(out)
            write_model_info(out, fingerprint, train_seconds=timing["train_seconds"])

        path = load_or_train(f"vat-3d/{method}-{nbytes}B", fingerprint, _train)
        tok = PointCloudTokenizer.from_pretrained(path, device=ctx.device)
        metrics = evaluate_pointcloud_tokenizer(tok, inputs, targets, device=ctx.device)
        yield {
            "family": "VIS", "method": "vat" if method == "vat" else method, "paper": "P06" if method == "vat" else None,
            "params": {"tokens": opts["num_tokens"], "quantizer": opts["quantizer"], **opts["quantizer_options"]},
            "budget": {"bytes": metrics["bytes"]},
            "metrics": metrics | {"trained_now": bool(timing)},
        }  # fmt: skip
        if method == "vat":  # coarse-to-fine: the same tokens decoded from their first k scales
            for k in range(1, len(BUDGETS[nbytes])):
                pm = evaluate_pointcloud_tokenizer(tok, inputs, targets, levels=k, device=ctx.device)
                yield {"family": "VIS", "method": "vat-prefix", "paper": None,
                       "params": {"model_bytes": nbytes, "levels": k, **opts["quantizer_options"]},
                       "budget": {"bytes": pm["bytes"]}, "metrics": pm}  # fmt: skip
    for nbytes in BUDGETS:
        sub = _random_subset(inputs, nbytes, seed=0)
        yield {"family": "VIS", "method": "random-subset", "paper": None, "params": {"points": sub.shape[1], "coordinate_bits": 8},
               "budget": {"bytes": float(3 * sub.shape[1])},
               "metrics": {"chamfer_x1000": 1000 * float(chamfer_distance(sub, targets).mean()), "f_score": float(f_score(sub, targets).mean()),
                           "bytes": float(3 * sub.shape[1])}}  # fmt: skip
    yield {"family": "VIS", "method": "input-256", "paper": None, "params": {"points": POINTS}, "budget": {"bytes": float(POINTS * 12)},
           "metrics": {"chamfer_x1000": 1000 * float(chamfer_distance(inputs, targets).mean()), "f_score": float(f_score(inputs, targets).mean()),
                       "bytes": float(POINTS * 12)}}  # fmt: skip


def plots(rows: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r["method"] != "input-256":
            by.setdefault(r["method"], []).append(r)
    for name, rs in sorted(by.items()):
        rs = sorted(rs, key=lambda r: r["metrics"]["bytes"])
        style = "-o" if rs[0]["paper"] else "--s"
        xs = [r["metrics"]["bytes"] for r in rs]
        axes[0].plot(xs, [r["metrics"]["chamfer_x1000"] for r in rs], style, label=f"{name} ({rs[0]['paper']})" if rs[0]["paper"] else name)
        axes[1].plot(xs, [r["metrics"]["f_score"] for r in rs], style)
    floor = [r for r in rows if r["method"] == "input-256"]
    if floor:
        axes[0].axhline(floor[0]["metrics"]["chamfer_x1000"], color="grey", lw=0.8, ls=":", label="256 input points (floor)")
        axes[1].axhline(floor[0]["metrics"]["f_score"], color="grey", lw=0.8, ls=":")
    axes[0].set(xlabel="bytes per shape", ylabel="Chamfer (x1000, lower is better)", title="Point clouds from meshes (test meshes)", yscale="log")
    axes[1].set(xlabel="bytes per shape", ylabel="F-score@0.05", title="F-score vs bytes", ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fname = "vat_3d_rate_distortion.png"
    fig.savefig(Path(out_dir) / fname, dpi=110)
    plt.close(fig)
    return [("Chamfer distance and F-score vs bytes per shape: VAT, a single-scale VQ and a random subset of the points", fname)]


def headline(method: str, rows: list[dict]) -> str | None:
    rs = [r for r in rows if r["method"] == method]
    if not rs:
        return None
    best = max(rs, key=lambda r: r["metrics"]["bytes"])
    m = best["metrics"]
    return f"3D: Chamfer x1000 {m['chamfer_x1000']:.1f}, F-score {m['f_score']:.2f} at {m['bytes']:.0f} bytes/shape"


def summary(rows: list[dict]) -> str:
    lines = []
    for b in sorted({r["metrics"]["bytes"] for r in rows if r["method"] == "vat"}):
        at = {r["method"]: r["metrics"] for r in rows if abs(r["metrics"]["bytes"] - b) < 1.5}
        if "vat" in at and "vq-single-scale" in at:
            v, q = at["vat"], at["vq-single-scale"]
            better = v["chamfer_x1000"] < q["chamfer_x1000"]
            lines.append(f"- at {b:g} bytes: VAT Chamfer x1000 {v['chamfer_x1000']:.1f} vs single-scale VQ {q['chamfer_x1000']:.1f} "
                         f"(F-score {v['f_score']:.2f} vs {q['f_score']:.2f}): VAT {'better' if better else 'not better'} (one seed)")  # fmt: skip
    return "\n".join(lines)
