"""P55 KL3M Tokenizers: character-level BPE (kl3m-004-char), tokens of at most 3 characters.

Mechanism: a byte-level BPE whose merges may never build a token longer than ``max_chars``
byte-level characters (``tokenizers``' ``max_token_length``), trained on domain text at small
vocabularies (4k / 8k / 16k). Because every token is short, an OCR error (rn -> m, l -> 1, a
dropped space) changes only the few tokens it touches and the token boundaries elsewhere stay
where they were, which makes error-correction pairs easy to align.

Deviations from the paper and why:
- The limit is on byte-level characters, i.e. UTF-8 *bytes*, as in KL3M's own training script
  (a ByteLevel BPE): ASCII text gets tokens of at most 3 characters; a non-ASCII character
  counts its 2-4 bytes. (``tokenizers`` counts ``max_token_length`` one higher than the
  longest token it builds, so the engine gets ``max_chars + 1``, as KL3M's script does.)
- No NFKC normalization, so any text round-trips exactly (KL3M normalizes with NFKC).
- On a corpus too small to hold ``vocab_size`` distinct tokens of <= 3 bytes the vocabulary
  stays smaller; the benchmark reports the size reached. No power-of-two padding by default
  (KL3M's padding tokens are whitespace runs, most of them longer than 3 characters).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenworks.checks import check_int
from tokenworks.registry import register
from tokenworks.text.byte_bpe import byte_level_engine
from tokenworks.text.recipe import EOS, PAD, Engine, TokenizerRecipe

__all__ = ["KL3MCharBPE"]


@register("kl3m_char_bpe", paper="P55")
@dataclass(kw_only=True)
class KL3MCharBPE(TokenizerRecipe):
    """KL3M character BPE: byte-level BPE with tokens of at most ``max_chars`` bytes."""

    vocab_size: int = 4096
    max_chars: int = 3
    min_frequency: int = 2
    special_tokens: tuple[str, ...] = (EOS, PAD)
    pad_to_power_of_two: bool = False

    def validate(self) -> None:
        check_int("max_chars", self.max_chars, min=1, max=16)

    def engine(self) -> Engine:
        from tokenizers import pre_tokenizers

        return Engine(
            byte_level_engine(),
            {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet(), "max_token_length": self.max_chars + 1},
            padding_tokens=[w * k for k in range(2, self.max_chars + 1) for w in (" ", "\n", "\t")],
        )
