"""The token-merger interface: shorten a batch of token sequences by merging adjacent tokens
*within words*, embed the merged tokens, prefill a frozen LM with them.

    m = tw.create("dynamic_bpe", merges=256)
    batch = m.merge(input_ids, tokenizer)               # MergedBatch; batch.ids() == input_ids
    embeds = m.embed(batch, model, tw.create("zett"))   # list of (T_i', D) prompt embeddings
    nll = m.continuation_nll(model, batch, continuations, tw.create("zett"))
    text = m.generate(model, tokenizer, prompts, tw.create("zett"), max_new_tokens=32)

A merged token (a *unit*) is a tuple of original ids; a sequence of units flattens back to the
original ids exactly, so merging is reversible by construction. Two adjacent units may join
only inside a word: the last byte of the left unit and the first byte of the right one are
both word bytes (ASCII letters and digits, or any byte of a non-ASCII character), so a unit
never spans a space or punctuation. The base does the mechanics -- word bytes, pair counts,
applying a merge left to right, embeddings (a one-token unit keeps the model's own embedding;
longer units come from an ``EmbeddingTransfer``: the ZeTT hypernetwork or the mean), prefill
and scoring; a merger implements one hook, ``select(counts)``: the next pair to merge.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from tokenworks.text.transfer import EmbeddingTransfer, lm_embeddings
from tokenworks.text.vocab import token_bytes

__all__ = ["MergedBatch", "TokenMerger", "word_byte"]

Unit = tuple[int, ...]


def word_byte(b: int) -> bool:
    """ASCII letter or digit, or any byte of a non-ASCII UTF-8 character."""
    return b >= 0x80 or (0x30 <= b <= 0x39) or (0x41 <= b <= 0x5A) or (0x61 <= b <= 0x7A)


@dataclass
class MergedBatch:
    """Sequences of units (tuples of original ids) and the merges that made them, in order."""

    units: list[list[Unit]]
    merges: list[tuple[Unit, Unit]] = field(default_factory=list)

    def ids(self) -> list[list[int]]:
        """The original ids (merging undone)."""
        return [[i for u in seq for i in u] for seq in self.units]

    @property
    def lengths(self) -> list[int]:
        return [len(seq) for seq in self.units]

    @property
    def original_lengths(self) -> list[int]:
        return [sum(len(u) for u in seq) for seq in self.units]

    @property
    def reduction(self) -> float:
        """1 - merged length / original length, over the whole batch."""
        orig = sum(self.original_lengths)
        return 1.0 - sum(self.lengths) / orig if orig else 0.0

    def new_units(self) -> list[Unit]:
        """The distinct merged units (more than one original id), in first-seen order."""
        return list(dict.fromkeys(u for seq in self.units for u in seq if len(u) > 1))


class TokenMerger:
    """Base of the batch-level mergers (``kind = "token_merger"``); hook: ``select``."""

    kind: ClassVar[str] = "token_merger"

    merges: int

    def __post_init__(self) -> None:
        from tokenworks.checks import check_int

        check_int("merges", self.merges, min=0)
        self.validate()

    def validate(self) -> None:
        """Check option fields (raise naming the field)."""

    @abstractmethod
    def select(self, counts: dict[tuple[Unit, Unit], int]) -> tuple[Unit, Unit] | None:
        """The next pair to merge among the joinable adjacent pairs of the batch (with their
        counts), or None to stop."""

    # ---- mechanics -----------------------------------------------------------------------
    def merge(self, input_ids, tokenizer) -> MergedBatch:
        """Merge up to ``merges`` pairs over the batch ``input_ids`` (list of id lists, or a
        (B, T) tensor) of ``tokenizer``'s ids."""
        seqs = _as_lists(input_ids)
        tb = token_bytes(tokenizer)
        for b, seq in enumerate(seqs):
            bad = [i for i in seq if i < 0 or i >= len(tb)]
            if bad:
                raise ValueError(f"input_ids[{b}] holds ids outside the tokenizer's range [0, {len(tb)}): {bad[:5]}")
        first = {i: (word_byte(x[0]) if x else False) for i, x in enumerate(tb)}
        last = {i: (word_byte(x[-1]) if x else False) for i, x in enumerate(tb)}
        units: list[list[Unit]] = [[(i,) for i in seq] for seq in seqs]
        done: list[tuple[Unit, Unit]] = []

        def joinable(a: Unit, c: Unit) -> bool:
            return last[a[-1]] and first[c[0]]

        for _ in range(self.merges):
            counts: Counter = Counter()
            for seq in units:
                for a, c in zip(seq, seq[1:]):
                    if joinable(a, c):
                        counts[(a, c)] += 1
            pair = self.select(dict(counts)) if counts else None
            if pair is None:
                break
            if pair not in counts:
                raise AssertionError(f"{type(self).__name__}.select returned a pair not in the batch: {pair}")
            a, c = pair
            joined = a + c
            for k, seq in enumerate(units):
                out, j = [], 0
                while j < len(seq):
                    if j + 1 < len(seq) and seq[j] == a and seq[j + 1] == c:
                        out.append(joined)
                        j += 2
                    else:
                        out.append(seq[j])
                        j += 1
                units[k] = out
            done.append(pair)
        return MergedBatch(units=units, merges=done)

    @torch.no_grad()
    def embed(self, batch: MergedBatch, model, transfer: EmbeddingTransfer) -> list[torch.Tensor]:
        """Input embeddings (T_i', D) of each merged sequence: a one-token unit keeps the model's
        embedding, a merged unit gets ``transfer``'s embedding of its parts."""
        if not isinstance(transfer, EmbeddingTransfer):
            raise TypeError(f"transfer must be an EmbeddingTransfer (e.g. tw.create('zett')), got {type(transfer).__name__}")
        src_in, src_out = lm_embeddings(model)
        new = batch.new_units()
        table = {}
        if new:
            e_new, _ = transfer.embed_parts(new, src_in, src_out)
            table = {u: e_new[k] for k, u in enumerate(new)}
        out = []
        for seq in batch.units:
            if not seq:
                out.append(src_in.new_zeros((0, src_in.shape[1])))
                continue
            rows = [table[u] if len(u) > 1 else src_in[u[0]] for u in seq]
            out.append(torch.stack(rows))
        return out

    @torch.no_grad()
    def continuation_nll(
        self, model, batch: MergedBatch, continuations, transfer: EmbeddingTransfer, *, batch_size: int = 16
    ) -> tuple[float, int]:
        """(summed NLL in nats, number of tokens) of ``continuations`` (original ids) read after
        each merged prompt, teacher-forced with the original embeddings."""
        conts = _as_lists(continuations)
        if len(conts) != len(batch.units):
            raise ValueError(f"continuations must have one sequence per prompt ({len(batch.units)}), got {len(conts)}")
        src_in, _ = lm_embeddings(model)
        prompts = self.embed(batch, model, transfer)
        device = src_in.device
        rows = []  # (embeddings (T' + C - 1, D), continuation ids (C,))
        for p, c in zip(prompts, conts):
            if not c:
                continue
            if p.shape[0] == 0:
                raise ValueError("every prompt needs at least one token to condition a continuation on")
            c_ids = torch.tensor(c, dtype=torch.long, device=device)
            rows.append((torch.cat([p, src_in[c_ids[:-1]]]), c_ids))
        total, n = 0.0, 0
        for start in range(0, len(rows), batch_size):  # left-padded batches, positions from the mask
            part = rows[start : start + batch_size]
            T = max(e.shape[0] for e, _ in part)
            x = src_in.new_zeros((len(part), T, src_in.shape[1]))
            mask = torch.zeros((len(part), T), dtype=torch.long, device=device)
            for k, (e, _) in enumerate(part):
                x[k, T - e.shape[0] :] = e
                mask[k, T - e.shape[0] :] = 1
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            logits = model(inputs_embeds=x, attention_mask=mask, position_ids=pos).logits  # (b, T, V)
            for k, (_, c_ids) in enumerate(part):
                lg = logits[k, T - c_ids.numel() :].float()  # the last C positions predict the continuation
                total += torch.nn.functional.cross_entropy(lg, c_ids, reduction="sum").item()
                n += c_ids.numel()
        return total, n

    @torch.no_grad()
    def generate(self, model, tokenizer, prompts: Sequence[str], transfer: EmbeddingTransfer, **generate_kwargs) -> list[str]:
        """Greedy (or any ``generate`` option) continuation of ``prompts``: the prompts are merged
        over the batch and prefilled as embeddings, generation continues with the original
        tokenizer through ``model.generate(inputs_embeds=...)``."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if any(len(i) == 0 for i in ids):
            raise ValueError("every prompt must hold some text")
        embeds = self.embed(self.merge(ids, tokenizer), model, transfer)
        T = max(e.shape[0] for e in embeds)
        D = embeds[0].shape[1]
        x = embeds[0].new_zeros((len(embeds), T, D))
        mask = torch.zeros((len(embeds), T), dtype=torch.long, device=x.device)
        for k, e in enumerate(embeds):  # left padding
            x[k, T - e.shape[0] :] = e
            mask[k, T - e.shape[0] :] = 1
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        out = model.generate(inputs_embeds=x, attention_mask=mask, **generate_kwargs)
        return tokenizer.batch_decode(out, skip_special_tokens=True)


def _as_lists(input_ids) -> list[list[int]]:
    if isinstance(input_ids, torch.Tensor):
        if input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError(f"input_ids must be a (B, T) integer tensor, got {tuple(input_ids.shape)} {input_ids.dtype}")
        return input_ids.tolist()
    if isinstance(input_ids, (str, bytes)) or not isinstance(input_ids, Sequence) or not input_ids:
        raise TypeError("input_ids must be a non-empty list of id lists or a (B, T) tensor")
    out = []
    for b, seq in enumerate(input_ids):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
            raise TypeError(f"input_ids[{b}] must be a list of ints, got {type(seq).__name__}")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in seq):
            raise TypeError(f"input_ids[{b}] must hold only ints")
        out.append(list(seq))
    return out
