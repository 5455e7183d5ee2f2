"""VIS image tokenizers: ``encode(images) -> ids``, ``decode(ids) -> images``, one interface.

The 2D patch tokenizer is the baseline; the papers' tokenizers share the same base
(:class:`ImageTokenizer`): TiTok (P23), FlexTok (P43), Hita (P05), TexTok (P10), GigaTok (P04),
VA-VAE (P46), DiGIT (P22); P20 binary tokens and P21 RobusTok are quantizers that any of them
takes (``quantizer="binary"`` / ``"robustok"``). :mod:`tokenworks.vision.prior` measures how
well an autoregressive prior models a tokenizer's tokens; :class:`QuantizedPCA` is the linear
baseline; :mod:`tokenworks.metrics.codes` holds the per-image code statistics.
"""

from tokenworks.vision.base import ImageTokenizer
from tokenworks.vision.digit import DiGIT
from tokenworks.vision.flextok import FlexTok
from tokenworks.vision.gigatok import GigaTok
from tokenworks.vision.hita import Hita
from tokenworks.vision.patch2d import PatchTokenizer2D
from tokenworks.vision.pca import QuantizedPCA
from tokenworks.vision.prior import PriorConfig, build_prior, prior_nll_bits, train_token_prior
from tokenworks.vision.textok import TexTok
from tokenworks.vision.titok import TiTok
from tokenworks.vision.train import (
    TokenizerTrainConfig,
    encode_dataset,
    evaluate_tokenizer,
    perturbed_fd_local,
    train_tokenizer,
)
from tokenworks.vision.vavae import VAVAE

__all__ = [
    "VAVAE",
    "DiGIT",
    "FlexTok",
    "GigaTok",
    "Hita",
    "ImageTokenizer",
    "PatchTokenizer2D",
    "PriorConfig",
    "QuantizedPCA",
    "TexTok",
    "TiTok",
    "TokenizerTrainConfig",
    "build_prior",
    "encode_dataset",
    "evaluate_tokenizer",
    "perturbed_fd_local",
    "prior_nll_bits",
    "train_token_prior",
    "train_tokenizer",
]
