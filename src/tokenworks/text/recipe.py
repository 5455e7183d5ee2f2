"""The tokenizer-recipe interface shared by every TXT tokenizer trained here.

    recipe = tw.create("kl3m_domain_bpe", vocab_size=4096)
    tok = recipe.train(documents)          # -> transformers.PreTrainedTokenizerFast
    tok.save_pretrained(out)               # tokenizer.json that transformers and tokenizers load

Hugging Face ``tokenizers`` is the BPE engine; a recipe only configures it. A recipe is a
``@dataclass(kw_only=True)`` whose fields are its options, with one hook, ``engine()``, that
returns the untrained ``tokenizers.Tokenizer`` (model, normalizer, pre-tokenizer, decoder),
the trainer options and the fixed tokens to add. The base does the mechanics: input checks,
the alphabet check, training, adding fixed tokens, padding the vocabulary (to a power of two
when asked), the special tokens and the ``transformers`` wrapper.

Every recipe here is byte-level (every byte in the initial alphabet), so any text round-trips
exactly: ``tok.decode(tok.encode(t)) == normalize(t)``, where ``normalize`` is the identity
for cased recipes and lower-casing for uncased ones.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokenworks.checks import check_int
from tokenworks.text.corpus import check_texts

__all__ = ["EOS", "PAD", "Engine", "TokenizerRecipe", "load_tokenizer"]

EOS = "<|endoftext|>"
PAD = "<|pad|>"
BYTE_ALPHABET = 256


@dataclass
class Engine:
    """What a recipe hands the base: an untrained ``tokenizers.Tokenizer``, keyword options of
    ``tokenizers.trainers.BpeTrainer`` (``vocab_size`` is set by the base), and fixed tokens
    added after training (``tokenizers.AddedToken``; they count in the vocabulary)."""

    tokenizer: Any
    trainer_options: dict[str, Any] = field(default_factory=dict)
    fixed_tokens: list[Any] = field(default_factory=list)
    padding_tokens: Any = field(default_factory=list)  # an iterable of strings, shortest first


class TokenizerRecipe:
    """Base of the BPE recipes (``kind = "text_tokenizer"``)."""

    kind: ClassVar[str] = "text_tokenizer"
    #: ``transformers`` role -> special token, set on the wrapper when the token is in ``special_tokens``
    ROLES: ClassVar[dict[str, str]] = {"eos_token": EOS, "pad_token": PAD}

    vocab_size: int
    min_frequency: int
    special_tokens: tuple[str, ...]
    pad_to_power_of_two: bool

    def __post_init__(self) -> None:
        check_int("min_frequency", self.min_frequency, min=1)
        if isinstance(self.special_tokens, str) or not all(isinstance(s, str) and s for s in self.special_tokens):
            raise TypeError(f"special_tokens must be a list of non-empty strings, got {self.special_tokens!r}")
        self.special_tokens = tuple(self.special_tokens)
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError(f"special_tokens must not repeat, got {self.special_tokens!r}")
        if not isinstance(self.pad_to_power_of_two, bool):
            raise TypeError(f"pad_to_power_of_two must be a bool, got {self.pad_to_power_of_two!r}")
        self.validate()
        check_int("vocab_size", self.vocab_size, min=1)
        if self.vocab_size < self.min_vocab_size:
            raise ValueError(
                f"vocab_size must be >= {self.min_vocab_size} (the {BYTE_ALPHABET}-byte alphabet + "
                f"{len(self.special_tokens)} special + {self.min_vocab_size - BYTE_ALPHABET - len(self.special_tokens)} "
                f"fixed tokens), got {self.vocab_size}"
            )

    # ---- hook ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Check the recipe's own option fields (raise naming the field)."""

    @abstractmethod
    def engine(self) -> Engine:
        """The untrained engine: model, normalizer, pre-tokenizer, decoder, trainer options."""

    # ---- mechanics -----------------------------------------------------------------------
    @property
    def n_fixed(self) -> int:
        return 0

    @property
    def min_vocab_size(self) -> int:
        return BYTE_ALPHABET + len(self.special_tokens) + self.n_fixed

    def normalize(self, text: str) -> str:
        """What ``decode(encode(text))`` gives back (the identity unless the recipe normalizes)."""
        normalizer = self.engine().tokenizer.normalizer
        return text if normalizer is None else normalizer.normalize_str(text)

    def train(self, texts, *, show_progress: bool = False):
        """Train on ``texts`` (a list of documents); returns a ``PreTrainedTokenizerFast``."""
        from tokenizers import trainers
        from transformers import PreTrainedTokenizerFast

        texts = check_texts("texts", texts)
        eng = self.engine()
        tok = eng.tokenizer
        n_fixed = len(eng.fixed_tokens)
        bpe_size = self.vocab_size - n_fixed  # specials are counted inside the trainer's vocab_size
        trainer = trainers.BpeTrainer(
            vocab_size=bpe_size,
            min_frequency=self.min_frequency,
            special_tokens=list(self.special_tokens),
            show_progress=show_progress,
            **eng.trainer_options,
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        if eng.fixed_tokens:
            tok.add_tokens(eng.fixed_tokens)
        if self.pad_to_power_of_two:
            target = 1 << math.ceil(math.log2(tok.get_vocab_size(with_added_tokens=True)))
            self._pad(tok, target, eng.padding_tokens)
        kwargs = {role: t for role, t in self.ROLES.items() if t in self.special_tokens}
        return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **kwargs)

    @staticmethod
    def _pad(tok, target: int, candidates) -> None:
        """KL3M's power-of-two padding: add whitespace-run tokens (not yet in the vocabulary)
        until the vocabulary has ``target`` entries."""
        from tokenizers import AddedToken

        vocab = tok.get_vocab(with_added_tokens=True)
        need = target - len(vocab)
        extra = []
        for c in candidates:
            if need <= 0:
                break
            if c not in vocab:
                extra.append(AddedToken(c, normalized=False))
                need -= 1
        if need > 0:
            raise ValueError(f"cannot pad the vocabulary to {target}: {need} padding candidates short")
        if extra:
            tok.add_tokens(extra)

    def options(self) -> dict[str, Any]:
        """The recipe's options (JSON-serializable), for fingerprints and file metadata."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if not k.startswith("_")}


def load_tokenizer(path):
    """A ``PreTrainedTokenizerFast`` from a directory written by ``save_pretrained`` or from a
    ``tokenizer.json`` file (JSON only; no code is run)."""
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if path.is_file():
        if path.suffix != ".json":
            raise ValueError(f"tokenizer file must be a tokenizer.json, got {str(path)!r}")
        return PreTrainedTokenizerFast(tokenizer_file=str(path), clean_up_tokenization_spaces=False)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer at {str(path)!r}: expected a tokenizer.json file or a folder holding one")
    return PreTrainedTokenizerFast.from_pretrained(str(path))
