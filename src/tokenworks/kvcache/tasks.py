"""Synthetic long-context tasks for KV-cache policies, written in the reference BPE's tokens.

A *record* is ``@ KEY V1 .. Vn``: the rare token ``@``, one key word and ``value_len`` value
words (keys and values are disjoint sets of single-token English words). Records sit inside
real prose (the ``prose`` corpus, train split for training, test split for evaluation), so
a model must find one record among thousands of prose tokens. Reading a key back
(``@ KEY`` followed by the same value) is an induction pattern: the token after ``@ KEY``
is copied from the earlier record.

- :func:`kv_retrieval`: task (a), many records in several thousand tokens of prose, then a
  query ``@ KEY``; the answer is the value. Every row has exactly ``context_len`` tokens.
- :func:`recurrence_traces`: task (b), variables defined in a short prompt, then a long
  stream in which each variable is read back periodically (its own period), so the
  defining tokens regain importance after long gaps. Targets are the value tokens of the
  read-backs; the stream is fed token by token (teacher forcing).
- :func:`record_stream`: the training mixture's synthetic rows (records and read-backs in
  prose, with per-token loss weights).
- :func:`prose_windows`: held-out prose windows for streaming perplexity (task (c)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import torch

from tokenworks.checks import check_choice, check_int

__all__ = ["TaskVocab", "kv_retrieval", "prose_stream", "prose_windows", "record_stream", "recurrence_traces", "task_vocab"]

MARK = "@"


@dataclass(frozen=True, eq=False)
class TaskVocab:
    """Token ids of the record format: the mark, the key words and the value words."""

    mark: int
    keys: torch.Tensor  # (n_keys,) long
    values: torch.Tensor  # (n_values,) long

    def record(self, key: int, value: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.tensor([self.mark, key]), value])


def task_vocab(tokenizer, *, skip_most_frequent: int = 200) -> TaskVocab:
    """Keys and values: single-token lowercase words (leading space, >= 4 letters), the
    ``skip_most_frequent`` most common ones in prose left out, split alternately."""
    vocab = tokenizer.get_vocab()
    if MARK not in vocab:
        raise ValueError(f"the tokenizer has no single token for the record mark {MARK!r}")
    words = sorted(i for t, i in vocab.items() if re.fullmatch(r"Ġ[a-z]{4,}", t))
    if len(words) < 2 * skip_most_frequent + 64:
        raise ValueError(f"the tokenizer has too few single-token words ({len(words)}) for the task vocabulary")
    # BPE ids grow with merge order, a proxy for frequency: skip the earliest merges.
    words = words[skip_most_frequent:]
    return TaskVocab(mark=vocab[MARK], keys=torch.tensor(words[0::2]), values=torch.tensor(words[1::2]))


@lru_cache(maxsize=4)
def _prose_stream_cached(split: str, tokenizer_id: int, tokenizer) -> torch.Tensor:
    from tokenworks.data import load_prose
    from tokenworks.models import token_stream

    return token_stream(load_prose(split).documents, tokenizer)


def prose_stream(tokenizer, split: str = "test") -> torch.Tensor:
    """The prose corpus split as one 1-D token stream (cached per tokenizer)."""
    check_choice("split", split, ("train", "test"))
    return _prose_stream_cached(split, id(tokenizer), tokenizer)


def _filler(stream: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    if n <= 0:
        return stream[:0]
    start = int(torch.randint(0, stream.numel() - n - 1, (1,), generator=g))
    return stream[start : start + n]


def _values(vocab: TaskVocab, n: int, value_len: int, g: torch.Generator) -> torch.Tensor:
    """(n, value_len) value words; tuples distinct across rows."""
    idx = torch.randint(0, vocab.values.numel(), (n, value_len), generator=g)
    # make the first word distinct across the n records, so each answer is unique from its first token
    first = torch.randperm(vocab.values.numel(), generator=g)[:n]
    idx[:, 0] = first
    return vocab.values[idx]


def _spread(total: int, parts: int, g: torch.Generator) -> list[int]:
    """``parts`` non-negative lengths summing to ``total`` (uniform random cut points)."""
    if parts == 1:
        return [total]
    cuts = torch.sort(torch.randint(0, total + 1, (parts - 1,), generator=g)).values.tolist()
    edges = [0, *cuts, total]
    return [edges[i + 1] - edges[i] for i in range(parts)]


def kv_retrieval(
    tokenizer,
    *,
    n: int,
    context_len: int,
    n_pairs: int,
    value_len: int = 2,
    seed: int = 0,
    split: str = "test",
) -> dict[str, torch.Tensor]:
    """Task (a): ``n`` prompts of exactly ``context_len`` tokens ending in ``@ KEY``.

    Returns ``input_ids`` (n, context_len), ``answers`` (n, value_len) and ``depth`` (n,):
    where in the context the queried record starts, as a fraction of the context.
    """
    check_int("n", n, min=1)
    check_int("n_pairs", n_pairs, min=1)
    check_int("value_len", value_len, min=1)
    record_len = 2 + value_len
    check_int("context_len", context_len, min=n_pairs * record_len + 2 + 8)
    vocab = task_vocab(tokenizer)
    stream = prose_stream(tokenizer, split)
    g = torch.Generator().manual_seed(seed)
    rows, answers, depth = [], [], []
    for _ in range(n):
        keys = vocab.keys[torch.randperm(vocab.keys.numel(), generator=g)[:n_pairs]]
        vals = _values(vocab, n_pairs, value_len, g)
        filler_total = context_len - 2 - n_pairs * record_len
        gaps = _spread(filler_total, n_pairs + 1, g)
        parts, starts, pos = [], [], 0
        for i in range(n_pairs):
            parts.append(_filler(stream, gaps[i], g))
            pos += gaps[i]
            starts.append(pos)
            parts.append(vocab.record(int(keys[i]), vals[i]))
            pos += record_len
        parts.append(_filler(stream, gaps[-1], g))
        q = int(torch.randint(0, n_pairs, (1,), generator=g))
        parts.append(torch.tensor([vocab.mark, int(keys[q])]))
        row = torch.cat(parts)
        assert row.numel() == context_len
        rows.append(row)
        answers.append(vals[q])
        depth.append(starts[q] / context_len)
    return {"input_ids": torch.stack(rows), "answers": torch.stack(answers), "depth": torch.tensor(depth)}


def recurrence_traces(
    tokenizer,
    *,
    n: int,
    prompt_len: int,
    trace_len: int,
    n_vars: int = 6,
    value_len: int = 2,
    min_period: int = 150,
    max_period: int = 400,
    seed: int = 0,
    split: str = "test",
) -> dict[str, torch.Tensor]:
    """Task (b): variables defined in the prompt and read back periodically in the trace.

    Each row is ``prompt_len + trace_len`` tokens: the prompt holds ``n_vars`` records in
    prose; in the trace, variable ``i`` is read back (``@ KEY V1 .. Vn``) every ``period_i``
    tokens (``period_i`` uniform in [min_period, max_period], first read-back after a random
    phase of up to one period), with prose in between. Returns ``input_ids`` (n, T),
    ``targets`` (n, T) bool: positions whose *next* token is a read-back value token (the
    logits at those positions are scored), and ``gap`` (n, T) long: tokens since the same
    variable was last seen (definition or read-back), -1 elsewhere.
    """
    check_int("n", n, min=1)
    check_int("n_vars", n_vars, min=1)
    check_int("value_len", value_len, min=1)
    check_int("min_period", min_period, min=value_len + 3)
    check_int("max_period", max_period, min=min_period)
    record_len = 2 + value_len
    check_int("prompt_len", prompt_len, min=n_vars * record_len + 1)
    check_int("trace_len", trace_len, min=max_period)
    vocab = task_vocab(tokenizer)
    stream = prose_stream(tokenizer, split)
    g = torch.Generator().manual_seed(seed)
    T = prompt_len + trace_len
    rows, targets, gaps_out = [], [], []
    for _ in range(n):
        keys = vocab.keys[torch.randperm(vocab.keys.numel(), generator=g)[:n_vars]]
        vals = _values(vocab, n_vars, value_len, g)
        row = torch.empty(T, dtype=torch.long)
        tgt = torch.zeros(T, dtype=torch.bool)
        gap = torch.full((T,), -1, dtype=torch.long)
        # prompt: records spread in prose
        gaps = _spread(prompt_len - n_vars * record_len, n_vars + 1, g)
        pos, last_seen = 0, {}
        for i in range(n_vars):
            row[pos : pos + gaps[i]] = _filler(stream, gaps[i], g)
            pos += gaps[i]
            row[pos : pos + record_len] = vocab.record(int(keys[i]), vals[i])
            last_seen[i] = pos
            pos += record_len
        row[pos:prompt_len] = _filler(stream, prompt_len - pos, g)
        # trace: schedule read-backs, resolve collisions by pushing later ones forward
        periods = torch.randint(min_period, max_period + 1, (n_vars,), generator=g)
        events = []
        for i in range(n_vars):
            t = int(torch.randint(0, int(periods[i]), (1,), generator=g)) + record_len
            while t + record_len <= trace_len:
                events.append((t, i))
                t += int(periods[i])
        events.sort()
        placed, cursor = [], 0
        for t, i in events:
            t = max(t, cursor)
            if t + record_len > trace_len:
                break
            placed.append((t, i))
            cursor = t + record_len + 1  # at least one prose token between records
        pos = prompt_len
        for t, i in placed:
            start = prompt_len + t
            row[pos:start] = _filler(stream, start - pos, g)
            row[start : start + record_len] = vocab.record(int(keys[i]), vals[i])
            # logits at KEY, V1, ..., V(n-1) predict the value tokens
            tgt[start + 1 : start + 1 + value_len] = True
            gap[start + 1 : start + 1 + value_len] = start - last_seen[i]
            last_seen[i] = start
            pos = start + record_len
        row[pos:T] = _filler(stream, T - pos, g)
        rows.append(row)
        targets.append(tgt)
        gaps_out.append(gap)
    return {"input_ids": torch.stack(rows), "targets": torch.stack(targets), "gap": torch.stack(gaps_out)}


def prose_windows(tokenizer, *, n: int, length: int, seed: int = 0, split: str = "test") -> torch.Tensor:
    """``n`` windows of ``length`` consecutive held-out prose tokens: (n, length)."""
    check_int("n", n, min=1)
    check_int("length", length, min=2)
    stream = prose_stream(tokenizer, split)
    g = torch.Generator().manual_seed(seed)
    return torch.stack([_filler(stream, length, g) for _ in range(n)])


def record_stream(
    vocab: TaskVocab,
    stream: torch.Tensor,
    *,
    length: int,
    n_keys: int,
    reads: int,
    max_gap: int,
    value_len: int,
    g: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training row: prose with ``n_keys`` records and ``reads`` read-backs of them.

    Events (definitions first for each key, read-backs of already defined keys) are
    separated by prose runs of 0..``max_gap`` tokens; the row is cut or prose-padded to
    ``length + 1`` tokens. Returns ``(ids (length + 1,), read_mask (length + 1,))`` where
    ``read_mask`` marks read-back value tokens (the ones only retrieval can predict).
    """
    record_len = 2 + value_len
    keys = vocab.keys[torch.randperm(vocab.keys.numel(), generator=g)[:n_keys]]
    vals = _values(vocab, n_keys, value_len, g)
    # event order: a random interleaving where each key's definition precedes its reads
    read_keys = torch.randint(0, n_keys, (reads,), generator=g).tolist()
    slots = [("def", i) for i in range(n_keys)]
    for k in read_keys:
        slots.append(("read", k))
    order = torch.randperm(len(slots), generator=g).tolist()
    shuffled = [slots[j] for j in order]
    defined, pending, events = set(), [], []
    for kind, k in shuffled:  # move reads of undefined keys after their definition
        if kind == "def":
            events.append(("def", k))
            defined.add(k)
            events.extend(("read", p) for p in pending if p == k)
            pending = [p for p in pending if p != k]
        elif k in defined:
            events.append(("read", k))
        else:
            pending.append(k)
    ids, mask, total = [], [], 0
    for kind, k in events:
        gap = int(torch.randint(0, max_gap + 1, (1,), generator=g))
        ids.append(_filler(stream, gap, g))
        mask.append(torch.zeros(gap, dtype=torch.bool))
        rec = vocab.record(int(keys[k]), vals[k])
        m = torch.zeros(record_len, dtype=torch.bool)
        if kind == "read":
            m[2:] = True
        ids.append(rec)
        mask.append(m)
        total += gap + record_len
        if total > length + 1:
            break
    ids_t, mask_t = torch.cat(ids), torch.cat(mask)
    if ids_t.numel() < length + 1:
        pad = length + 1 - ids_t.numel()
        ids_t = torch.cat([ids_t, _filler(stream, pad, g)])
        mask_t = torch.cat([mask_t, torch.zeros(pad, dtype=torch.bool)])
    return ids_t[: length + 1], mask_t[: length + 1]
