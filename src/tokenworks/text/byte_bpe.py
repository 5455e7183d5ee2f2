"""Baseline: general byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level variant, Radford
et al. 2019), the recipe of the reference tokenizer, on Hugging Face ``tokenizers``.

GPT-2 regex pre-tokenization, every byte in the initial alphabet (any text round-trips),
an end-of-text and a padding token, no normalization, no fixed tokens. Trained on prose it is
the "general" tokenizer that P55's domain and character BPEs are compared with at equal
vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.registry import register
from tokenworks.text.recipe import EOS, PAD, Engine, TokenizerRecipe

__all__ = ["ByteBPE", "byte_level_engine"]


def byte_level_engine(*, lowercase: bool = False):
    """An untrained byte-level BPE ``tokenizers.Tokenizer`` (GPT-2 regex pre-tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


@register("byte_bpe", family="TXT", cite="Sennrich et al. 2016 BPE; Radford et al. 2019 byte-level BPE (GPT-2)")
@dataclass(kw_only=True)
class ByteBPE(TokenizerRecipe):
    """Baseline general byte-level BPE of ``vocab_size`` entries (specials included)."""

    vocab_size: int = 4096
    min_frequency: int = 2
    special_tokens: tuple[str, ...] = (EOS, PAD)
    pad_to_power_of_two: bool = False

    def engine(self) -> Engine:
        from tokenizers import pre_tokenizers

        return Engine(byte_level_engine(), {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()})
