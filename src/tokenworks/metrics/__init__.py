"""Metrics as pure functions: images (PSNR, SSIM, Frechet distance), generation (precision/recall, FLOPs), codes, point clouds, text."""

from tokenworks.metrics.codes import (
    code_histogram,
    codebook_perplexity,
    codebook_usage,
    distinct_codes_per_image,
    position_entropy,
    top_code_share,
)
from tokenworks.metrics.generation import count_flops, knn_radii, precision_recall
from tokenworks.metrics.image import frechet_distance, gaussian_stats, psnr, ssim
from tokenworks.metrics.points import chamfer_distance, f_score
from tokenworks.metrics.text import bits_per_byte

__all__ = [
    "bits_per_byte",
    "chamfer_distance",
    "code_histogram",
    "count_flops",
    "codebook_perplexity",
    "codebook_usage",
    "distinct_codes_per_image",
    "f_score",
    "frechet_distance",
    "gaussian_stats",
    "knn_radii",
    "position_entropy",
    "precision_recall",
    "psnr",
    "ssim",
    "top_code_share",
]
