"""Small reference models that tokenworks trains itself on CPU and caches on disk.

- :func:`reference_tokenizer`: byte-level BPE (HF ``tokenizers``) trained on the prose corpus.
- :func:`reference_lm`: a small HF ``LlamaForCausalLM`` trained on the prose corpus.
- :func:`image_classifier`: a small CNN on Fashion-MNIST; its penultimate features give
  :func:`fd_local`, a Frechet distance used in place of FID (it is not FID).

Each looks in the cache (``$TOKENWORKS_CACHE/models``), then in the committed ``assets/``,
and trains (with a progress bar, resumably) only when neither holds a matching copy.
"""

from tokenworks.models.bpe import reference_tokenizer, train_byte_bpe
from tokenworks.models.classifier import (
    ClassifierConfig,
    ImageClassifier,
    fd_local,
    image_classifier,
    train_image_classifier,
)
from tokenworks.models.lm import (
    LMTrainConfig,
    evaluate_lm,
    reference_lm,
    token_stream,
    train_reference_lm,
)
from tokenworks.models.store import find_model, load_or_train

__all__ = [
    "ClassifierConfig",
    "ImageClassifier",
    "LMTrainConfig",
    "evaluate_lm",
    "fd_local",
    "find_model",
    "image_classifier",
    "load_or_train",
    "reference_lm",
    "reference_tokenizer",
    "token_stream",
    "train_byte_bpe",
    "train_image_classifier",
    "train_reference_lm",
]
