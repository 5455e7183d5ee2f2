"""Bits per byte of a causal LM at *equal bytes of context*, for comparing tokenizers.

Scoring windows of a fixed number of *tokens* gives a tokenizer with more bytes per token more
context per prediction (a 256-token window of a legal BPE covers about a third more text than
one of a prose BPE), which mixes context length into a tokenizer comparison. Here the text is
cut into the same windows of at most ``window_bytes`` UTF-8 bytes for every tokenizer; each
window is tokenized on its own, read after the end-of-text token (how the LMs here see the
start of a document), and every one of its tokens is scored, so every tokenizer is scored on
exactly the same bytes with exactly the same text as context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tokenworks.checks import check_int
from tokenworks.text.corpus import check_texts

__all__ = ["bits_per_byte_windows", "byte_windows", "window_token_counts"]


def byte_windows(documents: Sequence[str], window_bytes: int, *, min_fraction: float = 0.5) -> list[str]:
    """Consecutive pieces of each document of at most ``window_bytes`` UTF-8 bytes, cut at
    character boundaries; a document's last piece is kept when it has at least
    ``min_fraction * window_bytes`` bytes."""
    documents = check_texts("documents", documents)
    check_int("window_bytes", window_bytes, min=4)
    out = []
    for d in documents:
        cur, n = [], 0
        for ch in d:
            b = len(ch.encode("utf-8"))
            if n + b > window_bytes:
                out.append("".join(cur))
                cur, n = [], 0
            cur.append(ch)
            n += b
        if cur and n >= min_fraction * window_bytes:
            out.append("".join(cur))
    return out


def window_token_counts(tokenizer, windows: Sequence[str]) -> list[int]:
    """Tokens of each window (without the end-of-text token read before it)."""
    return [len(ids) for ids in tokenizer(list(windows), add_special_tokens=False)["input_ids"]]


@torch.no_grad()
def bits_per_byte_windows(model, tokenizer, windows: Sequence[str], *, max_tokens: int | None = None, batch_size: int = 8) -> dict[str, float]:
    """Bits per byte of ``model`` over ``windows`` (each read after the end-of-text token, all
    of its tokens scored). ``max_tokens``: refuse a window longer than this many tokens (the
    LM's context, end-of-text included)."""
    windows = check_texts("windows", windows)
    check_int("batch_size", batch_size, min=1)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no eos_token: windows are read after the end-of-text token")
    seqs = [[eos, *ids] for ids in tokenizer(windows, add_special_tokens=False)["input_ids"]]
    if max_tokens is not None:
        long = [k for k, s in enumerate(seqs) if len(s) > max_tokens]
        if long:
            raise ValueError(f"windows: {len(long)} window(s) need more than max_tokens={max_tokens} tokens (first: window {long[0]}); use smaller windows")
    device = next(model.parameters()).device
    total, n_tokens = 0.0, 0
    model.eval()
    for start in range(0, len(seqs), batch_size):
        part = seqs[start : start + batch_size]
        T = max(len(s) for s in part)
        x = torch.full((len(part), T), eos, dtype=torch.long)
        mask = torch.zeros((len(part), T), dtype=torch.long)
        for k, s in enumerate(part):
            x[k, : len(s)] = torch.tensor(s)
            mask[k, : len(s)] = 1
        logits = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        total += float((nll * mask[:, 1:].flatten()).sum())
        n_tokens += int(mask[:, 1:].sum())
    n_bytes = sum(len(w.encode("utf-8")) for w in windows)
    return {"bits_per_byte": total / math.log(2) / n_bytes, "tokens": n_tokens, "bytes": n_bytes, "windows": len(windows)}
