"""TXT: tokenizers trained here and moving a trained LM onto a new tokenizer.

- Recipes on Hugging Face ``tokenizers`` (``kind="text_tokenizer"``): ``byte_bpe`` (baseline
  general BPE), ``kl3m_domain_bpe`` and ``kl3m_char_bpe`` (P55 KL3M).
- LM variants (``kind="lm_variant"``, :mod:`tokenworks.text.lm_variant`): how a causal LM holds
  its tokens -- ``standard_lm`` (baseline), ``lexinvariant`` (P28), ``metadata_prefix`` (P47),
  ``caft`` (P69); their trained checkpoints come from :mod:`tokenworks.text.variant_lm`.
- A small masked diffusion LM (:mod:`tokenworks.text.diffusion_lm`) and its samplers
  (``kind="diffusion_sampler"``, family KV, :mod:`tokenworks.text.freecache`): ``freecache``
  and ``guided_diffusion`` (P61), baselines ``mdlm_sampler``, ``llada_confidence``, ``dkv_cache``.
- Word-pooled tokens (``kind="word_lm"``, :mod:`tokenworks.text.word_pooled`): ``word_pooled_lm``
  (P44) and the baselines ``byte_lm`` and ``subword_lm``.
- Metrics for any tokenizer on any corpus: bytes per token, fertility, vocabulary use,
  boundary stability under OCR-like noise (``tokenworks.text.metrics``).
"""

from tokenworks.text.byte_bpe import ByteBPE
from tokenworks.text.corpus import check_texts, read_text_folder
from tokenworks.text.dynamic_bpe import DynamicBPE
from tokenworks.text.diffusion_lm import DiffusionLM, DLMConfig, diffusion_lm, from_causal_lm, masked_diffusion_loss
from tokenworks.text.word_pooled import ByteLM, SubwordLM, WordPooledLM, join_words, split_words
from tokenworks.text.freecache import ConfidenceUnmasking, DiffusionSampler, DKVCache, FreeCache, GuidedDiffusion, MDLMSampler
from tokenworks.text.lexinvariant import Lexinvariant, random_tables
from tokenworks.text.metadata_prefix import MetadataPrefix
from tokenworks.text.caft import CAFT, CAFTModel
from tokenworks.text.lm_variant import LMVariant, StandardLM, next_token_loss, per_position_nll, train_variant
from tokenworks.text.kl3m_char import KL3MCharBPE
from tokenworks.text.kl3m_domain import KL3MDomainBPE, kl3m_custom_tokens, legal_fixed_tokens
from tokenworks.text.metrics import (
    NoisyText,
    boundary_changes,
    boundary_stability,
    bytes_per_token,
    evaluate_tokenizer,
    fertility,
    ocr_noise,
    text_stats,
    token_boundaries,
    vocab_use,
)
from tokenworks.text.hypernet import HypernetConfig, ZettHypernetwork
from tokenworks.text.mean_init import MeanInit
from tokenworks.text.merging import MergedBatch, TokenMerger
from tokenworks.text.random_init import RandomInit
from tokenworks.text.recipe import Engine, TokenizerRecipe, load_tokenizer
from tokenworks.text.transfer import EmbeddingTransfer, decompose
from tokenworks.text.vocab import token_bytes
from tokenworks.text.zett import HypernetTrainConfig, ZeTT, reference_hypernet, train_hypernet

__all__ = [
    "ByteLM",
    "SubwordLM",
    "WordPooledLM",
    "join_words",
    "split_words",
    "ConfidenceUnmasking",
    "DiffusionLM",
    "DiffusionSampler",
    "DKVCache",
    "DLMConfig",
    "FreeCache",
    "GuidedDiffusion",
    "MDLMSampler",
    "diffusion_lm",
    "from_causal_lm",
    "masked_diffusion_loss",
    "CAFT",
    "CAFTModel",
    "LMVariant",
    "MetadataPrefix",
    "Lexinvariant",
    "StandardLM",
    "next_token_loss",
    "per_position_nll",
    "random_tables",
    "train_variant",
    "ByteBPE",
    "DynamicBPE",
    "EmbeddingTransfer",
    "Engine",
    "HypernetConfig",
    "HypernetTrainConfig",
    "KL3MCharBPE",
    "KL3MDomainBPE",
    "MeanInit",
    "MergedBatch",
    "NoisyText",
    "RandomInit",
    "TokenMerger",
    "TokenizerRecipe",
    "ZeTT",
    "ZettHypernetwork",
    "boundary_changes",
    "boundary_stability",
    "bytes_per_token",
    "check_texts",
    "decompose",
    "evaluate_tokenizer",
    "fertility",
    "kl3m_custom_tokens",
    "legal_fixed_tokens",
    "load_tokenizer",
    "ocr_noise",
    "read_text_folder",
    "reference_hypernet",
    "text_stats",
    "token_boundaries",
    "token_bytes",
    "train_hypernet",
    "vocab_use",
]
