"""Tokenizer metrics on any corpus (P55's measurements), as pure functions of a tokenizer and text.

- ``bytes_per_token``: UTF-8 bytes / tokens (higher = fewer tokens for the same text).
- ``fertility``: tokens per whitespace-separated word.
- ``vocab_use``: share of the (non-special) vocabulary that occurs at least once.
- ``ocr_noise`` + ``boundary_stability``: corrupt text with OCR-like confusions (rn/m, l/1,
  O/0, cl/d, e/c, dropped spaces) and measure the share of the clean text's token boundaries
  *outside* the corrupted spans that the noisy text's tokenization keeps (mapped through the
  alignment). KL3M's claim is that character-level BPE keeps them more often.

Definitions chosen here (P55 gives no formula): a boundary is a character offset between two
tokens (the end of every token but the last; a character split into byte tokens gives one
boundary at its end); a boundary ``b`` lies inside a corrupted span ``[s, e)`` when
``s < b < e``, so the span's edges count as outside; the noise ``rate`` is the probability
that each confusable site (a character or pair with an OCR confusion, or a space) is
corrupted, sites never overlap and are visited left to right.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenworks.checks import check_float, check_int
from tokenworks.text.corpus import check_texts
from tokenworks.text.vocab import backend

__all__ = [
    "OCR_CONFUSIONS",
    "NoisyText",
    "boundary_changes",
    "boundary_stability",
    "bytes_per_token",
    "encode",
    "evaluate_tokenizer",
    "fertility",
    "ocr_noise",
    "stable_boundaries",
    "text_stats",
    "token_boundaries",
    "vocab_use",
]

# Clean substring -> what OCR reads instead (both directions of each confusion).
OCR_CONFUSIONS: dict[str, str] = {
    "rn": "m", "m": "rn",
    "l": "1", "1": "l",
    "O": "0", "0": "O",
    "cl": "d", "d": "cl",
    "e": "c", "c": "e",
    "I": "l",
}  # fmt: skip


def encode(tokenizer, docs: Sequence[str]):
    """``tokenizers.Encoding`` of each document, without special tokens (engine batch call)."""
    return backend(tokenizer).encode_batch(list(docs), add_special_tokens=False)


def _special_ids(tokenizer) -> set[int]:
    return {i for i, a in backend(tokenizer).get_added_tokens_decoder().items() if a.special}


def text_stats(tokenizer, docs: Sequence[str]) -> dict[str, float]:
    """``bytes_per_token``, ``fertility`` and ``vocab_use`` from one encoding pass."""
    docs = check_texts("docs", docs)
    encs = encode(tokenizer, docs)
    n_tokens = sum(len(e.ids) for e in encs)
    n_words = sum(len(d.split()) for d in docs)
    if n_tokens == 0 or n_words == 0:
        raise ValueError("docs produce no tokens or hold no words: expected some non-whitespace text")
    special = _special_ids(tokenizer)
    size = backend(tokenizer).get_vocab_size(with_added_tokens=True) - len(special)
    used = {i for e in encs for i in e.ids} - special
    return {
        "bytes_per_token": sum(len(d.encode("utf-8")) for d in docs) / n_tokens,
        "fertility": n_tokens / n_words,
        "vocab_use": len(used) / max(size, 1),
    }


def bytes_per_token(tokenizer, docs: Sequence[str]) -> float:
    """Total UTF-8 bytes of ``docs`` / total tokens (no special tokens added)."""
    docs = check_texts("docs", docs)
    n_tokens = sum(len(e.ids) for e in encode(tokenizer, docs))
    if n_tokens == 0:
        raise ValueError("docs produce no tokens: expected some text")
    return sum(len(d.encode("utf-8")) for d in docs) / n_tokens


def fertility(tokenizer, docs: Sequence[str]) -> float:
    """Tokens per word, words being the ``str.split()`` pieces of the documents."""
    docs = check_texts("docs", docs)
    n_words = sum(len(d.split()) for d in docs)
    if n_words == 0:
        raise ValueError("docs hold no words: expected some non-whitespace text")
    return sum(len(e.ids) for e in encode(tokenizer, docs)) / n_words


def vocab_use(tokenizer, docs: Sequence[str]) -> float:
    """Share of the vocabulary (special tokens left out) used at least once on ``docs``."""
    docs = check_texts("docs", docs)
    special = _special_ids(tokenizer)
    size = backend(tokenizer).get_vocab_size(with_added_tokens=True) - len(special)
    used = {i for e in encode(tokenizer, docs) for i in e.ids} - special
    return len(used) / max(size, 1)


@dataclass(frozen=True)
class NoisyText:
    """A corrupted copy of ``clean``: ``spans`` are the corrupted ``[start, end)`` ranges in
    clean coordinates, ``replacements`` what each became in ``text``."""

    clean: str
    text: str
    spans: tuple[tuple[int, int], ...]
    replacements: tuple[str, ...]
    _ends: list[int] = field(init=False, repr=False, compare=False)
    _shift: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends, shift, total = [], [], 0
        for (s, e), r in zip(self.spans, self.replacements):
            total += len(r) - (e - s)
            ends.append(e)
            shift.append(total)
        object.__setattr__(self, "_ends", ends)
        object.__setattr__(self, "_shift", shift)

    def inside(self, pos: int) -> bool:
        """Is clean offset ``pos`` strictly inside a corrupted span?"""
        return _strictly_inside(self.spans, self._ends, pos)

    def noisy_spans(self) -> tuple[tuple[int, int], ...]:
        """The corrupted spans in ``text`` coordinates (empty for a dropped character)."""
        return tuple((self.to_noisy(s), self.to_noisy(s) + len(r)) for (s, _), r in zip(self.spans, self.replacements))

    def to_noisy(self, pos: int) -> int:
        """The offset in ``text`` of clean offset ``pos`` (not inside a span)."""
        k = bisect.bisect_right(self._ends, pos)  # spans ending at or before pos
        return pos + (self._shift[k - 1] if k else 0)


def ocr_noise(text: str, rate: float, *, seed: int = 0, drop_spaces: bool = True) -> NoisyText:
    """Corrupt ``text`` like OCR would: each confusable site is replaced with probability
    ``rate`` (see ``OCR_CONFUSIONS``; a space is dropped when ``drop_spaces``)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_float("rate", rate, min=0.0, max=1.0)
    check_int("seed", seed, min=0)
    rng = random.Random(seed)
    out, spans, reps = [], [], []
    i, n = 0, len(text)
    while i < n:
        options = [(k, v) for k, v in OCR_CONFUSIONS.items() if text.startswith(k, i)]
        if drop_spaces and text[i] == " ":
            options.append((" ", ""))
        if options and rng.random() < rate:
            src, dst = options[rng.randrange(len(options))]
            spans.append((i, i + len(src)))
            reps.append(dst)
            out.append(dst)
            i += len(src)
        else:
            out.append(text[i])
            i += 1
    return NoisyText(clean=text, text="".join(out), spans=tuple(spans), replacements=tuple(reps))


def _boundaries(offsets: Sequence[tuple[int, int]], length: int) -> set[int]:
    return {e for _, e in offsets if 0 < e < length}


def token_boundaries(tokenizer, text: str) -> set[int]:
    """Character offsets between consecutive tokens of ``text`` (0 and len(text) excluded)."""
    (enc,) = encode(tokenizer, [text])
    return _boundaries(enc.offsets, len(text))


def stable_boundaries(clean: set[int], noisy: set[int], nt: NoisyText) -> tuple[int, int]:
    """(kept, total): clean boundaries outside the corrupted spans, and how many of them the
    noisy tokenization has at the aligned offset."""
    outside = [b for b in clean if not nt.inside(b)]
    kept = sum(1 for b in outside if nt.to_noisy(b) in noisy)
    return kept, len(outside)


def boundary_changes(tokenizer, noisy: NoisyText | Sequence[NoisyText]) -> dict[str, float]:
    """Both directions of boundary agreement outside the corrupted spans, pooled over documents:
    ``stability`` (share of clean boundaries kept, as ``boundary_stability``), ``precision``
    (share of noisy boundaries outside the noisy spans that are clean boundaries) and
    ``changes_per_error`` ((lost + new boundaries) / corrupted spans)."""
    items = _noisy_items(noisy)
    clean_enc = encode(tokenizer, [x.clean for x in items])
    noisy_enc = encode(tokenizer, [x.text for x in items])
    kept = total = agree = n_noisy = spans = 0
    for x, ce, ne in zip(items, clean_enc, noisy_enc):
        cb, nb = _boundaries(ce.offsets, len(x.clean)), _boundaries(ne.offsets, len(x.text))
        k, t = stable_boundaries(cb, nb, x)
        kept, total = kept + k, total + t
        mapped = {x.to_noisy(b) for b in cb if not x.inside(b)}
        nspans = x.noisy_spans()
        ends = [e for _, e in nspans]
        outside = [q for q in nb if not _strictly_inside(nspans, ends, q)]
        agree += sum(1 for q in outside if q in mapped)
        n_noisy += len(outside)
        spans += len(x.spans)
    lost, new = total - kept, n_noisy - agree
    return {
        "stability": kept / total if total else 1.0,
        "precision": agree / n_noisy if n_noisy else 1.0,
        "changes_per_error": (lost + new) / spans if spans else 0.0,
    }


def _strictly_inside(spans, ends, q: int) -> bool:
    k = bisect.bisect_right(ends, q)
    return k < len(spans) and spans[k][0] < q


def _noisy_items(noisy) -> list[NoisyText]:
    items = [noisy] if isinstance(noisy, NoisyText) else list(noisy)
    if not items or not all(isinstance(x, NoisyText) for x in items):
        raise TypeError("noisy must be a NoisyText or a non-empty list of them (from ocr_noise)")
    return items


def boundary_stability(tokenizer, noisy: NoisyText | Sequence[NoisyText]) -> float:
    """Share of clean token boundaries outside corrupted spans kept under the noise (pooled
    over documents); 1.0 when there is no boundary to keep."""
    items = _noisy_items(noisy)
    clean_enc = encode(tokenizer, [x.clean for x in items])
    noisy_enc = encode(tokenizer, [x.text for x in items])
    kept = total = 0
    for x, ce, ne in zip(items, clean_enc, noisy_enc):
        k, t = stable_boundaries(_boundaries(ce.offsets, len(x.clean)), _boundaries(ne.offsets, len(x.text)), x)
        kept += k
        total += t
    return kept / total if total else 1.0


def evaluate_tokenizer(
    tokenizer, docs: Sequence[str], *, noise_rates: Sequence[float] = (0.02, 0.05, 0.1), seed: int = 0
) -> dict[str, float]:
    """All metrics of this module on ``docs``: bytes/token, fertility, vocab use, and boundary
    stability at each noise rate (keys ``stability@<rate>``)."""
    out = text_stats(tokenizer, docs)
    out["vocab_size"] = float(backend(tokenizer).get_vocab_size(with_added_tokens=True))
    for r in noise_rates:
        noisy = [ocr_noise(d, r, seed=seed + i) for i, d in enumerate(docs)]
        out[f"stability@{r:g}"] = boundary_stability(tokenizer, noisy)
    return out
