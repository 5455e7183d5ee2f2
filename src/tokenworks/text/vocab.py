"""What each token of a Hugging Face tokenizer stands for, in bytes.

Transfer (P29), dynamic merging (P57) and the metrics need the exact UTF-8 bytes behind a
token id. For byte-level BPE (GPT-2 style) the vocabulary strings are bytes written in the
GPT-2 byte-to-character table; added tokens (KL3M's fixed domain tokens) are plain text;
special tokens stand for no text. Other tokenizers (SentencePiece, WordPiece) are decoded
token by token, which is exact for whole characters only (documented where it matters).
"""

from __future__ import annotations

from functools import cache

__all__ = ["backend", "byte_level_table", "is_byte_level", "token_bytes", "token_to_bytes"]


@cache
def byte_level_table() -> dict[int, str]:
    """The GPT-2 byte -> printable character table used by ``tokenizers``' ByteLevel
    pre-tokenizer (``tokenizers`` does not expose the mapping, only the unordered alphabet;
    tests check this table against the pre-tokenizer itself)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@cache
def _char_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_level_table().items()}


def backend(tokenizer):
    """The ``tokenizers.Tokenizer`` behind a transformers fast tokenizer (or itself)."""
    inner = getattr(tokenizer, "backend_tokenizer", None)
    if inner is not None:
        return inner
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "get_vocab"):
        return tokenizer
    raise TypeError(
        f"tokenizer must be a transformers fast tokenizer or a tokenizers.Tokenizer, got {type(tokenizer).__name__}"
    )


def is_byte_level(tokenizer) -> bool:
    """True when the tokenizer's model works on GPT-2 byte-level characters."""
    b = backend(tokenizer)
    return "ByteLevel" in str(b.pre_tokenizer) or "ByteLevel" in str(b.decoder)


def token_to_bytes(tokenizer, token: str) -> bytes:
    """The bytes a (non-added) vocabulary string of a byte-level tokenizer stands for."""
    table = _char_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError as e:
        raise ValueError(f"token {token!r} is not written in the byte-level alphabet (character {e.args[0]!r})") from None


def token_bytes(tokenizer) -> list[bytes]:
    """``out[i]`` = the UTF-8 bytes token id ``i`` stands for (``b""`` for special tokens and
    unused ids). Covers the whole id range ``max(len(tokenizer), max id + 1)``."""
    b = backend(tokenizer)
    vocab = b.get_vocab(with_added_tokens=True)
    size = max(b.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
    out = [b""] * size
    added = b.get_added_tokens_decoder()  # id -> AddedToken
    byte_level = is_byte_level(tokenizer)
    for tok, i in vocab.items():
        if i in added:
            a = added[i]
            out[i] = b"" if a.special else a.content.encode("utf-8")
        elif byte_level:
            out[i] = token_to_bytes(tokenizer, tok)
        else:
            out[i] = b.decode([i], skip_special_tokens=False).encode("utf-8")
    return out
