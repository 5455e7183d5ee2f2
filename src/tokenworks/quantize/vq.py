"""Baseline: vector quantization (VQ-VAE) through ``vector-quantize-pytorch``, collapse-proof by default.

A thin adapter: nearest-code assignment, EMA codebook updates, commitment loss, k-means
initialisation, dead-code restarts and the straight-through gradient all come from
``VectorQuantize``. The default ``vq`` is the recipe that keeps every position of an image on
its own code (see issue 8: a Euclidean EMA codebook with random init put 91% of all tokens on
code 0, 1.3 distinct codes per image):

- **l2-normalised codes and inputs** (``cosine=True``; ``use_cosine_sim``): the assignment
  depends on the direction of a token only, so a codebook cannot be won by the one code whose
  norm happens to sit near the mean of all tokens (TiTok's and ViT-VQGAN's VQ, Yu et al. 2022);
- **k-means initialisation** on the first training batch (``kmeans_init=True``): codes start on
  the data, spread over its clusters, instead of at random points far from every token;
- **dead-code restarts** (``dead_code_threshold=2``): a code whose EMA count falls below the
  threshold is re-seeded from a token of the current batch (Jukebox, Dhariwal et al. 2020).

Gradient estimator (``rotation_trick``): ``vector-quantize-pytorch`` passes gradients through the
codebook with the rotation trick (Fifty et al. 2024) by default, which rotates the gradient and
scales it by ||code|| / ||token||; ``rotation_trick=False`` is the straight-through estimator of
VQ-VAE and Jukebox. ``vq`` and ``vq_cosine`` keep the library's default; ``vq_kmeans`` uses the
straight-through estimator, as the papers it stands for do: with the rotation trick a Euclidean
codebook that has a code near the origin traps tokens there, since the decoder's gradient of a
token on that code is scaled by its tiny norm ratio (measured on the 4-bit quantizers-suite
model: 58% of all tokens on one code of norm 0.008, 73% of the tokens of non-blank patches,
gradient scale 0.12 for them) while the commitment loss keeps pulling them in.

Three registered presets differ only in these defaults: ``vq`` (l2-normalised, k-means init,
restarts), ``vq_cosine`` (l2-normalised codes, random init, no restarts) and ``vq_kmeans``
(Euclidean, k-means init and restarts, straight-through gradients). A plain VQ-VAE codebook is ``tw.create("vq", dim=D, cosine=False, kmeans_init=False,
dead_code_threshold=0)``.

Note: with ``kmeans_init`` the codebook is all zeros until the first forward, which runs
k-means on that forward's tokens (in training and in eval mode alike); a codebook written by
hand (a frozen k-means codebook) needs ``kmeans_init=False``.

:func:`kmeans` is the project's public Lloyd's k-means (used to fit frozen codebooks, e.g.
DiGIT's). It is written here rather than imported because ``vector-quantize-pytorch``'s
``kmeans`` is not part of its public API (not exported, signature changed across versions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int, check_tensor
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["VQ", "CosineVQ", "KMeansVQ", "kmeans"]


@torch.no_grad()
def kmeans(samples: torch.Tensor, k: int, *, iters: int = 25, cosine: bool = False,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Lloyd's k-means of ``samples`` (M, D) into ``k`` clusters.

    Initialisation: ``k`` distinct rows drawn at random (``generator``; the global RNG if None).
    Each iteration assigns every sample to its nearest centroid (Euclidean, or largest cosine
    similarity with ``cosine=True``, in which case samples and centroids are l2-normalised) and
    moves each centroid to the mean of its samples; a centroid left without samples keeps its
    place. Returns ``(centroids (k, D), counts (k,))``, counts from the last assignment.
    """
    check_tensor("samples", samples, ndim=2, floating=True)
    check_int("k", k, min=1, max=samples.shape[0])
    check_int("iters", iters, min=0)
    x = samples.float()
    if cosine:
        x = torch.nn.functional.normalize(x, dim=-1)
    pick = torch.randperm(x.shape[0], generator=generator, device="cpu")[:k].to(x.device)
    centroids = x[pick].clone()  # (k, D)

    def assign(c: torch.Tensor) -> torch.Tensor:
        return (x @ c.T).argmax(-1) if cosine else torch.cdist(x, c).argmin(-1)  # (M,)

    for _ in range(iters):
        buckets = assign(centroids)
        counts = torch.bincount(buckets, minlength=k)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, buckets, x)
        means = sums / counts.clamp_min(1)[:, None]
        if cosine:
            means = torch.nn.functional.normalize(means, dim=-1)
        centroids = torch.where((counts > 0)[:, None], means, centroids)
    counts = torch.bincount(assign(centroids), minlength=k)
    return centroids.to(samples.dtype), counts


@register("vq", family="VIS", cite="van den Oord et al. 2017 (VQ-VAE), EMA codebook of Razavi et al. 2019")
@dataclass(kw_only=True, eq=False, repr=False)
class VQ(Quantizer):
    """Baseline VQ: each token -> its nearest of ``codebook_size`` codes (by default on the unit
    sphere, k-means initialised, dead codes restarted)."""

    dim: int
    codebook_size: int = 512
    decay: float = 0.95
    commitment_weight: float = 0.25
    cosine: bool = True
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_threshold: float = 2.0
    rotation_trick: bool = True  # False: the straight-through estimator

    def validate(self) -> None:
        check_int("codebook_size", self.codebook_size, min=2)
        check_float("decay", self.decay, min=0.0, max=1.0, max_open=True)
        check_float("commitment_weight", self.commitment_weight, min=0.0)
        check_int("kmeans_iters", self.kmeans_iters, min=1)
        check_float("dead_code_threshold", self.dead_code_threshold, min=0.0)
        for name in ("cosine", "kmeans_init", "rotation_trick"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def build(self) -> None:
        from vector_quantize_pytorch import VectorQuantize

        self.vq = VectorQuantize(
            dim=self.dim,
            codebook_size=self.codebook_size,
            decay=self.decay,
            commitment_weight=self.commitment_weight,
            use_cosine_sim=self.cosine,
            kmeans_init=self.kmeans_init,
            kmeans_iters=self.kmeans_iters,
            threshold_ema_dead_code=self.dead_code_threshold,
            rotation_trick=None if self.rotation_trick else False,  # None: the library's default (rotation when dim > 1)
        )

    def quantize(self, x: torch.Tensor):
        quantized, indices, loss = self.vq(x)
        return quantized, indices, loss.sum()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.vq.get_output_from_indices(indices)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) code vectors as used for the nearest-neighbour search."""
        cb = self.vq.codebook
        return torch.nn.functional.normalize(cb, dim=-1) if self.cosine else cb

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) tokens -> (..., K) squared distances to every code in the space the
        assignment uses (l2-normalised tokens and codes when ``cosine``)."""
        x = torch.nn.functional.normalize(x, dim=-1) if self.cosine else x
        cb = self.codebook.to(x.dtype)
        return x.pow(2).sum(-1, keepdim=True) - 2 * x @ cb.T + cb.pow(2).sum(-1)


@register("vq_cosine", family="VIS", cite="Yu et al. 2022 (ViT-VQGAN): l2-normalized codes")
@dataclass(kw_only=True, eq=False, repr=False)
class CosineVQ(VQ):
    """Baseline VQ with cosine similarity only (random init, no dead-code restarts)."""

    cosine: bool = True
    kmeans_init: bool = False
    dead_code_threshold: float = 0.0


@register("vq_kmeans", family="VIS", cite="k-means codebook init + dead-code restarts (Dhariwal et al. 2020, Jukebox)")
@dataclass(kw_only=True, eq=False, repr=False)
class KMeansVQ(VQ):
    """Baseline Euclidean VQ whose codebook starts from k-means on the first batch; codes used
    less than ``dead_code_threshold`` times (EMA count) are re-seeded from the batch; gradients
    pass straight through (VQ-VAE, Jukebox)."""

    cosine: bool = False
    kmeans_init: bool = True
    dead_code_threshold: float = 1.0
    rotation_trick: bool = False
