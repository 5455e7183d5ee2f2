"""VIS image tokenizers: ``encode(images) -> ids``, ``decode(ids) -> images``, one interface.

The 2D patch tokenizer is the baseline; the papers' 1D tokenizers build on the same base.
"""

from tokenworks.vision.base import ImageTokenizer
from tokenworks.vision.patch2d import PatchTokenizer2D
from tokenworks.vision.train import TokenizerTrainConfig, evaluate_tokenizer, train_tokenizer

__all__ = ["ImageTokenizer", "PatchTokenizer2D", "TokenizerTrainConfig", "evaluate_tokenizer", "train_tokenizer"]
