"""Generation measurements over the public API: images of a generator, their metrics, grids.

:func:`generation_metrics` compares generated images with real test images in the frozen
Fashion-MNIST classifier's feature space (``fd_local``, improved precision/recall) and scores
class accuracy (the classifier's prediction equals the conditioning label); :func:`sample_images`
generates and decodes through the generator's tokenizer and counts FLOPs per image with
``torch.utils.flop_counter`` (generator and tokenizer decoder separately).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["generation_metrics", "image_grid", "sample_images", "save_png"]


@torch.no_grad()
def generation_metrics(images: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, *, k: int = 3) -> dict[str, float]:
    """images (M, 1, 28, 28) in [0, 1] generated for labels (M,); real (N, 1, 28, 28) test images."""
    from tokenworks.metrics import frechet_distance, precision_recall
    from tokenworks.models.classifier import image_classifier

    clf = image_classifier("fashion-mnist")
    f_gen = torch.cat([clf.features(b) for b in images.split(1000)])
    pred = torch.cat([clf(b).argmax(-1) for b in images.split(1000)])
    f_real = torch.cat([clf.features(b) for b in real.split(1000)])
    p, r = precision_recall(f_real, f_gen, k=k)
    return {"fd_local": frechet_distance(f_real, f_gen), "class_accuracy": float((pred == labels).float().mean()), "precision": p, "recall": r}


@torch.no_grad()
def sample_images(gen, tokenizer, labels, *, steps: int, seed: int = 0, batch_size: int = 250, flops: bool = True):
    """Generate and decode one image per label -> (images, info) with ``nfe``, ``seconds_per_image``
    (generation + decoding), ``gflops_per_image`` (generator, from the first batch) and
    ``decoder_gflops_per_image``."""
    import time

    from tokenworks.metrics import count_flops

    labels = torch.as_tensor(labels).long()
    imgs, nfe, secs = [], 0.0, 0.0
    info: dict[str, float] = {}
    for i, lab in enumerate(labels.split(batch_size)):
        t0 = time.perf_counter()
        if flops and i == 0:
            out, f = count_flops(lambda: gen.generate(lab, steps=steps, seed=seed + i))
            x, fd = count_flops(lambda: gen.decode(out.tokens, tokenizer))
            info["gflops_per_image"] = f / len(lab) / 1e9
            info["decoder_gflops_per_image"] = fd / len(lab) / 1e9
        else:
            out = gen.generate(lab, steps=steps, seed=seed + i)
            x = gen.decode(out.tokens, tokenizer)
        secs += time.perf_counter() - t0
        imgs.append(x)
        nfe = out.nfe
    info |= {"nfe": nfe, "ms_per_image": 1000 * secs / len(labels)}
    return torch.cat(imgs), info


def image_grid(images: torch.Tensor, rows: int, pad: int = 1) -> np.ndarray:
    """Images (M, 1, H, W) in [0, 1], M = rows * cols, row-major -> a uint8 (rows*(H+pad), cols*(W+pad)) grid."""
    m, _, h, w = images.shape
    if rows < 1 or m % rows:
        raise ValueError(f"rows must divide the number of images {m}, got {rows}")
    cols = m // rows
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.uint8) * 255
    x = (images[:, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    for i in range(m):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    return grid


def save_png(grid: np.ndarray, path, scale: int = 3) -> None:
    """Write a uint8 grid as a PNG (nearest-neighbour upscaled), atomically."""
    import io

    from PIL import Image

    from tokenworks.io import atomic_write_bytes

    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
