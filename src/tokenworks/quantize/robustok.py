"""P21 RobusTok (Robust Latent Matters: Boosting Image Generation with Sampling Error): latent
perturbation of VQ tokens during tokenizer training.

Mechanism: an autoregressive generator's sampling errors land on plausible but wrong codes,
mostly codes near the right one. RobusTok trains the tokenizer's decoder on such errors. In a
training forward, for a share ``beta`` of the images of the batch, every token is, with
probability ``alpha``, replaced by a code drawn uniformly among the ``delta`` codes nearest to
the token's *encoder output* (the true, nearest code is one of them, so a draw may keep it);
with probability ``1 - alpha`` it keeps its true code. The other images are quantized as usual.
The perturbation is annealed: ``alpha`` and ``delta`` are multiplied by a ratio that stays 1
until ``anneal_start`` forwards, then falls linearly to ``end_ratio`` at ``anneal_end``
(official code: ``get_random_ratio`` in ``xqgan_train.py`` of github.com/lxa9867/ImageFolder,
``add_perturbation`` in ``latent_perturbation.py``; RobustTok config alpha=1.0, beta=0.1,
delta=100 of 4096 codes, annealed from epoch 40 to 120 of 200 to a ratio of 0.5).
Gradients pass straight through from the perturbed code to the encoder output.

The codebook, assignment, EMA updates, commitment loss, l2-normalised codes and k-means init
are those of :class:`~tokenworks.quantize.vq.VQ` (``vector-quantize-pytorch``); the
perturbation is written here because the library has none. Distances are measured in the
space the assignment uses (l2-normalised inputs and codes for the default cosine codebook,
as the official code does with ``codebook_norm``).

``candidates(latents, delta)`` returns the nearest codes of each encoder output, and
``perturb(indices, rate, latents=...)`` applies the same draw to every token at evaluation
(the perturbed-decode metric, pFID in the paper, ``fd_local`` here). Without ``latents`` the
neighbourhood is that of the token's own code vector (its ``delta`` nearest codes, itself first),
which is what remains when only indices are stored.

Deviations: the schedule is per training forward (``anneal_start``/``anneal_end`` in forwards)
instead of per epoch, and falls continuously to ``end_ratio`` (the official piecewise function
jumps from ``1 - end_ratio`` to ``end_ratio`` at ``anneal_end``; they agree at its default 0.5);
the perturbed images are a random ``floor(beta * B)`` of the batch (the official code takes the
first ones of a shuffled batch); no generator post-training stage.

``delta`` defaults to the paper's *share* of the codebook (100 of 4096 codes, about 2.4%; at least
2, the true code and one neighbour: :func:`paper_delta`), because the codebooks here have 16 to
4096 codes. A fixed 8 (the earlier default) is half of a 16-code (4-bit) codebook: a perturbed
token then lands on almost any code, the decoder learns to ignore the codes' differences and
the tokenizer collapsed (54% of all tokens on one code, 15.5 dB vs 21.6 dB for plain ``vq``
in the quantizers suite at 4 bits per token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenworks.checks import check_float, check_int, check_tensor
from tokenworks.quantize.vq import VQ
from tokenworks.registry import register

__all__ = ["RobustVQ", "paper_delta"]

PAPER_DELTA_SHARE = 100 / 4096  # RobusTok: delta = 100 nearest codes of a 4096-code codebook


def paper_delta(codebook_size: int) -> int:
    """The paper's neighbourhood size scaled to ``codebook_size``: ``round(codebook_size * 100 / 4096)``,
    at least 2 (the true code and one neighbour) and at most ``codebook_size``."""
    check_int("codebook_size", codebook_size, min=2)
    return min(codebook_size, max(2, round(codebook_size * PAPER_DELTA_SHARE)))


@register("robustok", paper="P21")
@dataclass(kw_only=True, eq=False, repr=False)
class RobustVQ(VQ):
    """P21 VQ whose training forward replaces, in a share ``beta`` of the images, each token
    with probability ``alpha`` by one of the ``delta`` codes nearest to its encoder output."""

    alpha: float = 1.0
    beta: float = 0.1
    delta: int | None = None  # None: paper_delta(codebook_size), the paper's share of the codebook
    end_ratio: float = 0.5
    anneal_start: int = 0
    anneal_end: int = 2000

    def validate(self) -> None:
        super().validate()
        check_float("alpha", self.alpha, min=0.0, max=1.0)
        check_float("beta", self.beta, min=0.0, max=1.0)
        if self.delta is not None:
            check_int("delta", self.delta, min=1, max=self.codebook_size)
        check_float("end_ratio", self.end_ratio, min=0.0, max=1.0)
        check_int("anneal_start", self.anneal_start, min=0)
        check_int("anneal_end", self.anneal_end, min=self.anneal_start)

    def build(self) -> None:
        super().build()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def ratio(self, step: int | None = None) -> float:
        """Annealing ratio at training forward ``step`` (default: the current one)."""
        t = int(self.step) if step is None else step
        if t <= self.anneal_start:
            return 1.0
        if t >= self.anneal_end:
            return self.end_ratio
        return 1.0 - (t - self.anneal_start) / (self.anneal_end - self.anneal_start) * (1.0 - self.end_ratio)

    def current_alpha(self) -> float:
        return self.ratio() * self.alpha

    @property
    def neighbours(self) -> int:
        """The neighbourhood size in use: ``delta``, or :func:`paper_delta` of the codebook when it is None."""
        return paper_delta(self.codebook_size) if self.delta is None else self.delta

    def current_delta(self) -> int:
        return max(1, int(self.ratio() * self.neighbours))

    @torch.no_grad()
    def candidates(self, latents: torch.Tensor, delta: int) -> torch.Tensor:
        """(B, N, D) encoder outputs -> (B, N, delta) indices of their ``delta`` nearest codes,
        nearest (the true code) first."""
        check_tensor("latents", latents, ndim=3, floating=True)
        check_int("delta", delta, min=1, max=self.codebook_size)
        return self.distances(latents.float()).topk(delta, dim=-1, largest=False).indices

    @torch.no_grad()
    def perturb(self, indices: torch.Tensor, rate: float, *, latents: torch.Tensor | None = None, delta: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """Each token of ``indices`` (B, N), with probability ``rate``, takes a code drawn
        uniformly among the ``delta`` (default ``self.neighbours``) codes nearest to its encoder
        output ``latents`` (B, N, D), or to its own code vector when ``latents`` is None; the
        true code is among them. Returns new indices (B, N)."""
        check_float("rate", rate, min=0.0, max=1.0)
        check_tensor("indices", indices, ndim=2, floating=False)
        delta = self.neighbours if delta is None else check_int("delta", delta, min=1, max=self.codebook_size)
        if latents is None:
            latents = self.indices_to_codes(indices)
        elif latents.shape[:2] != indices.shape:
            raise ValueError(f"latents must have shape (B, N, D) with (B, N) = {tuple(indices.shape)}, got {tuple(latents.shape)}")
        cand = self.candidates(latents, delta)  # (B, N, delta)
        b, n = indices.shape
        draw = torch.rand(b, n, generator=generator, device="cpu") < rate
        pick = torch.randint(0, delta, (b, n), generator=generator, device="cpu")
        pick = torch.where(draw, pick, 0).to(indices.device)
        drawn = cand.gather(-1, pick[..., None])[..., 0]
        return torch.where(draw.to(indices.device), drawn, indices)

    @torch.no_grad()
    def perturb_batch(self, indices: torch.Tensor, latents: torch.Tensor, *, alpha: float, beta: float, delta: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """The training-time perturbation: floor(beta * B) images chosen at random get
        ``perturb(indices, alpha, latents=latents, delta=delta)``; the others keep ``indices``."""
        check_float("beta", beta, min=0.0, max=1.0)
        b = indices.shape[0]
        chosen = torch.randperm(b, generator=generator, device="cpu")[: int(b * beta)].to(indices.device)
        out = indices.clone()
        if len(chosen):
            out[chosen] = self.perturb(indices[chosen], alpha, latents=latents[chosen], delta=delta, generator=generator)
        return out

    def quantize(self, x: torch.Tensor):
        quantized, indices, loss = super().quantize(x)
        if self.training:
            alpha, delta = self.current_alpha(), self.current_delta()
            self.step += 1
            if alpha > 0 and self.beta > 0 and delta > 1:
                perturbed = self.perturb_batch(indices, x.detach(), alpha=alpha, beta=self.beta, delta=delta)
                changed = (perturbed != indices)[..., None]
                codes = self.decode_indices(perturbed).to(x.dtype)
                quantized = torch.where(changed, x + (codes - x).detach(), quantized)  # straight-through
                indices = perturbed
        return quantized, indices, loss
