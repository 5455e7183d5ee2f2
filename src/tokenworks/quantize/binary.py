"""P20 Instella-T2I (Pushing the Limits of 1D Discrete Latent Space Image Generation): 1D binary
latent tokens.

Mechanism: each token is projected (a linear layer) to ``bits`` logits ``z``; ``p = sigmoid(z)``.
In training a bit is a Bernoulli sample at temperature ``temperature``,
``b ~ Bern(sigmoid(z / temperature))`` (official ``train_temp`` 0.1: a logit of 0.3 already gives
a 95% draw), at inference it is ``p > 0.5``; gradients pass straight through the un-tempered
probability (``b + p - p.detach()``). ``aux_loss`` is the official determinism penalty
``determinism_weight * mean(p * (1 - p))``, which pushes every ``p`` to 0 or 1 so that the
thresholded bits at inference are the bits the decoder was trained on. The bits are projected
back to ``dim`` by a linear layer. A token of ``bits`` bits costs exactly ``bits`` bits.

Official code (``bae/bnl.py`` and ``bae/ae_model.py`` of Instella-T2I): the encoder output *is*
projected, by ``nn.Linear(emb_dim, codebook_size)``, to the bit logits (so the input projection
here is the paper's, not a deviation), and the bits {0, 1} are mapped back by a learned
(bits, dim) matrix; here ``proj_out`` acts on {-1, +1} with a bias, the same family of maps
(``W b = W' (2b - 1) + c`` with ``W' = W / 2``, ``c = W 1 / 2``).

``vector-quantize-pytorch``'s ``BinaryMapper`` is not used: it returns a one-hot vector over all
``2**bits`` codes per token (65,536 floats per token at 16 bits), its straight-through gradient
is a softmax over those codes, and its auxiliary loss keeps the bit entropy *high* (a KL to the
uniform distribution), the opposite of P20's determinism penalty.

Indices: the bits of a token are packed, ``group_bits`` at a time and least significant bit
first, into integers, so ``indices`` has shape (B, N, bits // group_bits) with values in
[0, 2**group_bits). ``bits_of(indices)`` unpacks them to (B, N, bits) in {0, 1}.

Deviations: the weight of the determinism penalty is not in the released code (the tokenizer
training script is not public). With weight 1.0 (the penalty added to the loss as returned) the
``quantizers`` suite's 8-bit patch tokenizer collapsed: at step 360 of 1200 every token of every
image carried the same code (PSNR 10.9 dB, all bits saturated, so the straight-through gradient
through ``sigmoid`` vanished). The default is 0.1, not yet verified on that suite (issue 8). ``balance_weight``
(0 by default) optionally pulls each bit's mean activation toward 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from tokenworks.checks import check_float, check_int
from tokenworks.quantize.base import Quantizer
from tokenworks.registry import register

__all__ = ["BinaryQuantizer"]


@register("binary", paper="P20")
@dataclass(kw_only=True, eq=False, repr=False)
class BinaryQuantizer(Quantizer):
    """P20 binary tokens: tempered Bernoulli in training, threshold at inference,
    straight-through, p(1-p) determinism penalty."""

    dim: int
    bits: int = 16
    group_bits: int | None = None
    temperature: float = 0.1
    determinism_weight: float = 0.1
    balance_weight: float = 0.0

    def validate(self) -> None:
        check_int("bits", self.bits, min=1)
        if self.group_bits is None:
            self.group_bits = min(self.bits, 16)
        check_int("group_bits", self.group_bits, min=1, max=min(self.bits, 30))
        if self.bits % self.group_bits:
            raise ValueError(f"bits ({self.bits}) must be a multiple of group_bits ({self.group_bits})")
        check_float("temperature", self.temperature, min=0.0, min_open=True)
        check_float("determinism_weight", self.determinism_weight, min=0.0)
        check_float("balance_weight", self.balance_weight, min=0.0)

    def build(self) -> None:
        self.proj_in = nn.Linear(self.dim, self.bits)
        self.proj_out = nn.Linear(self.bits, self.dim)
        self.register_buffer("_weights", 2 ** torch.arange(self.group_bits), persistent=False)

    @property
    def codebook_size(self) -> int:
        return 2**self.group_bits

    def index_shape(self, batch: int, tokens: int) -> tuple[int, ...]:
        return (batch, tokens, self.bits // self.group_bits)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Bit probabilities p = sigmoid(z) (B, N, bits) for tokens x (B, N, dim); the
        inference bits are p > 0.5."""
        return torch.sigmoid(self.proj_in(x))

    def quantize(self, x: torch.Tensor):
        logits = self.proj_in(x)  # (B, N, bits)
        p = torch.sigmoid(logits)
        if self.training:
            hard = torch.bernoulli(torch.sigmoid(logits.detach() / self.temperature))
        else:
            hard = (p > 0.5).to(p.dtype)
        b = hard + p - p.detach()  # straight-through: value = hard bits, gradient = dp
        quantized = self.proj_out(2 * b - 1)
        aux = self.determinism_weight * (p * (1 - p)).mean() + self.balance_weight * (p.mean(dim=(0, 1)) - 0.5).pow(2).sum()
        return quantized, self.pack(hard), aux

    def pack(self, bits: torch.Tensor) -> torch.Tensor:
        """(B, N, bits) in {0, 1} -> (B, N, bits // group_bits) integers."""
        groups = rearrange(bits.long(), "b n (g k) -> b n g k", k=self.group_bits)
        return (groups * self._weights).sum(-1)

    def bits_of(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, N, G) packed indices -> (B, N, bits) in {0, 1} (float)."""
        unpacked = (indices.long()[..., None] // self._weights) % 2
        return rearrange(unpacked, "b n g k -> b n (g k)").float()

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 3 or indices.shape[-1] != self.bits // self.group_bits:
            raise ValueError(
                f"indices must have shape (B, N, {self.bits // self.group_bits}), got {tuple(indices.shape)}"
            )
        return self.proj_out(2 * self.bits_of(indices) - 1)
