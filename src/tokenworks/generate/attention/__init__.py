"""Attention variants for the DiT generator (CMP inside generators): ``full-attention`` and
``window-attention`` (baselines), ``pt-dit`` (P01 proxy tokens), ``fit`` (P03 interleaved
local/global layers); one module each, :mod:`~tokenworks.generate.attention.base` holds the
DiT layer mechanics and the shared attention pieces."""

from tokenworks.generate.attention.base import Attention, Core, DiTAttention, attention_flops, sincos_2d, window_attention
from tokenworks.generate.attention.fit import FIT
from tokenworks.generate.attention.full import FullAttention
from tokenworks.generate.attention.pt_dit import PTDiT, select_proxies
from tokenworks.generate.attention.window import WindowAttention

__all__ = ["FIT", "Attention", "Core", "DiTAttention", "FullAttention", "PTDiT", "WindowAttention", "attention_flops",
           "select_proxies", "sincos_2d", "window_attention"]  # fmt: skip
