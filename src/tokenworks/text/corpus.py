"""Text input for the tokenizer recipes and metrics: checked document lists and text folders.

Every recipe and metric takes a list of documents (``str``). ``check_texts`` rejects what
would otherwise fail deep inside the engine or give a meaningless number (an empty corpus,
non-strings, only whitespace, lone surrogates that no UTF-8 engine can encode);
``read_text_folder`` reads a folder of UTF-8 files strictly
and names the file and byte offset of the first invalid byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_SURROGATE = re.compile("[\ud800-\udfff]")

__all__ = ["check_texts", "read_text_folder"]


def check_texts(name: str, texts: Iterable[str] | str, *, allow_blank: bool = False) -> list[str]:
    """``texts`` as a list of documents; raises naming ``name`` if it is empty or not text."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{name} must be a list of documents (str), got a single {type(texts).__name__}; wrap it in a list")
    try:
        out = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of str, got {type(texts).__name__}") from None
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")
        bad = _SURROGATE.search(t)
        if bad is not None:  # not Unicode text: UTF-8 (and so the tokenizers engine) cannot encode it
            raise ValueError(
                f"{name}[{i}] holds a lone surrogate U+{ord(bad.group()):04X} at character {bad.start()}: "
                "expected valid Unicode text (decode bytes with errors='replace' first)"
            )
    if not out:
        raise ValueError(f"{name} is empty: expected at least one document")
    if not allow_blank and not any(t.strip() for t in out):
        raise ValueError(f"{name} holds {len(out)} document(s), all empty or whitespace: expected some text")
    return out


def read_text_folder(folder: str | Path, pattern: str = "**/*.txt") -> list[str]:
    """The UTF-8 text of every file under ``folder`` matching ``pattern``, in sorted path order.

    Raises ``FileNotFoundError`` for a missing folder, ``ValueError`` naming the file and the
    byte offset for a file that is not valid UTF-8, and ``ValueError`` when no file matches or
    every matching file is empty.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {str(folder)!r} does not exist or is not a directory")
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"folder {str(folder)!r} holds no file matching {pattern!r}: expected text files")
    texts = []
    for p in files:
        data = p.read_bytes()
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(
                f"file {str(p)!r} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}): "
                "convert it to UTF-8 first (e.g. `iconv -t utf-8`)"
            ) from None
    if not any(t.strip() for t in texts):
        raise ValueError(f"folder {str(folder)!r}: all {len(files)} file(s) matching {pattern!r} are empty")
    return texts
