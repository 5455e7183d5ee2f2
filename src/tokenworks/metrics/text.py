"""Text metrics."""

from __future__ import annotations

import math

__all__ = ["bits_per_byte"]


def bits_per_byte(total_nll_nats: float, n_bytes: int) -> float:
    """Bits per UTF-8 byte from a summed negative log-likelihood in nats: comparable across
    tokenizers, unlike per-token perplexity."""
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be > 0, got {n_bytes}")
    if not math.isfinite(total_nll_nats) or total_nll_nats < 0:
        raise ValueError(f"total_nll_nats must be a finite non-negative number, got {total_nll_nats}")
    return total_nll_nats / math.log(2) / n_bytes
