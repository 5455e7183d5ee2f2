"""Metrics as pure functions: images (PSNR, SSIM, Frechet distance), codes, text."""

from tokenworks.metrics.codes import (
    code_histogram,
    codebook_perplexity,
    codebook_usage,
    distinct_codes_per_image,
    position_entropy,
    top_code_share,
)
from tokenworks.metrics.image import frechet_distance, gaussian_stats, psnr, ssim
from tokenworks.metrics.text import bits_per_byte

__all__ = [
    "bits_per_byte",
    "code_histogram",
    "codebook_perplexity",
    "codebook_usage",
    "distinct_codes_per_image",
    "frechet_distance",
    "gaussian_stats",
    "position_entropy",
    "psnr",
    "ssim",
    "top_code_share",
]
