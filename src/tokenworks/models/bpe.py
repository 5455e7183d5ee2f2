"""The reference byte-level BPE tokenizer, trained with Hugging Face ``tokenizers``.

``tokenizers`` is the BPE engine; this module only sets the recipe: byte-level
pre-tokenization (GPT-2 style regex split, every byte in the initial alphabet, so any text
round-trips exactly), an end-of-text and a padding special token.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenworks.checks import check_int

__all__ = ["EOS", "PAD", "reference_tokenizer", "train_byte_bpe"]

EOS = "<|endoftext|>"
PAD = "<|pad|>"
REFERENCE_VOCAB = 4096


def train_byte_bpe(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: tuple[str, ...] = (EOS, PAD),
    min_frequency: int = 2,
    show_progress: bool = False,
):
    """Train a byte-level BPE on ``texts``; returns a ``transformers.PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    check_int("vocab_size", vocab_size, min=257 + len(special_tokens))
    texts = list(texts)
    if not texts or not any(t.strip() for t in texts):
        raise ValueError("texts must hold at least one non-empty document")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    kwargs = {}
    if EOS in special_tokens:
        kwargs["eos_token"] = EOS
    if PAD in special_tokens:
        kwargs["pad_token"] = PAD
    return PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **kwargs)


def reference_tokenizer(vocab_size: int = REFERENCE_VOCAB, *, train_if_missing: bool = True):
    """The project's byte-level BPE on the prose corpus (train split); cached after the first
    call. The reference LM ships its own copy, so prefer ``reference_lm()[1]`` with it."""
    from transformers import PreTrainedTokenizerFast

    from tokenworks.data import load_prose
    from tokenworks.models.store import load_or_train, write_model_info

    fingerprint = {"recipe": "byte-bpe", "corpus": "prose/train", "vocab_size": vocab_size, "min_frequency": 2}

    def _train(out: Path, _run: Path) -> None:
        tok = train_byte_bpe(load_prose("train").documents, vocab_size, show_progress=True)
        tok.save_pretrained(out)
        write_model_info(out, fingerprint)

    path = load_or_train(
        f"bpe-prose-{vocab_size}", fingerprint, _train, train_if_missing=train_if_missing,
        command="tokenworks train reference-tokenizer",
    )  # fmt: skip
    return PreTrainedTokenizerFast.from_pretrained(str(path))
