"""The token-merger interface: shorten a batch of token sequences by merging adjacent tokens
*within pre-tokens*, embed the merged tokens, prefill a frozen LM with them.

    m = tw.create("dynamic_bpe", merges=256)
    batch = m.merge(input_ids, tokenizer)               # MergedBatch; batch.ids() == input_ids
    embeds = m.embed(batch, model, tw.create("zett"))   # list of (T_i', D) prompt embeddings
    nll = m.continuation_nll(model, batch, continuations, tw.create("zett"))
    text = m.generate(model, tokenizer, prompts, tw.create("zett"), max_new_tokens=32)

A merged token (a *unit*) is a tuple of original ids; a sequence of units flattens back to the
original ids exactly, so merging is reversible by construction.

Word boundaries are the tokenizer's own: each sequence's text (the bytes of its tokens) is run
through the tokenizer's pre-tokenizer (``tokenizers``' ``pre_tokenize_str``), and two adjacent
units may join only when the byte position between them lies strictly inside one pre-token
(for GPT-2-style tokenizers: " licensed" may become one unit, " the" + "," may not). A
boundary inside a multi-byte character is always joinable; a special token never joins.

Merging is vectorized: the batch is one flat tensor of unit ids with a "joinable" flag per
boundary; each step counts the joinable adjacent pairs with ``torch.unique`` over pair keys,
picks a pair (the hook ``select``), and replaces every non-overlapping occurrence (left to
right) with one tensor operation. The cost per merge is a sort of the batch's pairs, with no
Python loop over tokens.

Embeddings: ``unmerged="transfer"`` (the default, the paper's choice: in the official code
every token of the dynamically tokenized batch, merged or not, gets its embedding from the
hypernetwork; only special tokens keep the model's own) or ``unmerged="original"`` (tokens left
alone keep the model's own embedding; only merged units come from the transfer method).
A merger implements one hook, ``select``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from tokenworks.text.transfer import EmbeddingTransfer, lm_embeddings
from tokenworks.text.vocab import backend, token_bytes

__all__ = ["MergedBatch", "TokenMerger", "joinable_boundaries"]

Unit = tuple[int, ...]
UNMERGED = ("transfer", "original")


def _char_byte_offsets(data: bytes) -> tuple[str, list[int]]:
    """``data`` as text for the pre-tokenizer (each invalid byte -> one U+FFFD) and the byte
    offset of every character start (plus the end)."""
    text = data.decode("utf-8", errors="surrogateescape")
    offsets, pos = [0], 0
    chars = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":  # an undecodable byte, escaped
            pos += 1
            chars.append("\ufffd")
        else:
            pos += len(ch.encode("utf-8"))
            chars.append(ch)
        offsets.append(pos)
    return "".join(chars), offsets


def joinable_boundaries(tokenizer, seq: Sequence[int], tb: list[bytes] | None = None, special: set[int] | None = None) -> list[bool]:
    """``out[k]``: may token ``k`` join token ``k + 1`` (the boundary between them lies strictly
    inside one pre-token of the sequence's text under ``tokenizer``'s pre-tokenizer)?"""
    tb = token_bytes(tokenizer) if tb is None else tb
    if special is None:
        special = set(backend(tokenizer).get_added_tokens_decoder())
    n = len(seq)
    if n < 2:
        return [False] * max(n - 1, 0)
    ends, pos = [], 0
    for i in seq:
        pos += len(tb[i])
        ends.append(pos)
    data = b"".join(tb[i] for i in seq)
    pre = backend(tokenizer).pre_tokenizer
    if pre is None:
        cuts: set[int] = set()
    else:
        text, offsets = _char_byte_offsets(data)
        cuts = {offsets[start] for _, (start, _end) in pre.pre_tokenize_str(text)}
    out = []
    for k in range(n - 1):
        a, c = seq[k], seq[k + 1]
        ok = a not in special and c not in special and bool(tb[a]) and bool(tb[c]) and ends[k] not in cuts
        out.append(ok)
    return out


@dataclass
class MergedBatch:
    """Sequences of units (tuples of original ids) and the merges that made them, in order."""

    units: list[list[Unit]]
    merges: list[tuple[Unit, Unit]] = field(default_factory=list)
    special: frozenset[int] = frozenset()  # special-token ids: always the model's own embedding

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

    def all_units(self) -> list[Unit]:
        """Every distinct unit of the batch (merged or not), in first-seen order."""
        return list(dict.fromkeys(u for seq in self.units for u in seq))


class TokenMerger:
    """Base of the batch-level mergers (``kind = "token_merger"``); hook: ``select``."""

    kind: ClassVar[str] = "token_merger"

    merges: int
    unmerged: str

    def __post_init__(self) -> None:
        from tokenworks.checks import check_int

        check_int("merges", self.merges, min=0)
        if self.unmerged not in UNMERGED:
            raise ValueError(f"unmerged must be one of {list(UNMERGED)}, got {self.unmerged!r}")
        self.validate()

    def validate(self) -> None:
        """Check option fields (raise naming the field)."""

    @abstractmethod
    def select(self, counts: torch.Tensor, first: torch.Tensor) -> int | None:
        """Index of the next pair to merge among the batch's distinct joinable adjacent pairs,
        given their ``counts`` (K,) and the flat position of their ``first`` occurrence (K,);
        None to stop."""

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
        special = set(backend(tokenizer).get_added_tokens_decoder()) - {i for i, x in enumerate(tb) if x}
        V = len(tb)
        M = V + self.merges + 1  # unit ids: original ids, then V, V+1, ... for merged units
        table: list[Unit] = []  # unit id - V -> its original ids
        u = torch.tensor([i for seq in seqs for i in seq], dtype=torch.long)
        seq_id = torch.tensor([b for b, seq in enumerate(seqs) for _ in seq], dtype=torch.long)
        # j[k]: may position k join position k + 1 (False at the end of each sequence)
        j = torch.tensor([x for seq in seqs for x in [*joinable_boundaries(tokenizer, seq, tb, special), False][: len(seq)]], dtype=torch.bool)
        done: list[tuple[Unit, Unit]] = []

        def unit(i: int) -> Unit:
            return (i,) if i < V else table[i - V]

        for step in range(self.merges):
            pos = j[:-1].nonzero().squeeze(1) if u.numel() > 1 else u.new_zeros(0)
            if pos.numel() == 0:
                break
            keys = u[pos] * M + u[pos + 1]
            uniq, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
            first = torch.full_like(uniq, u.numel()).scatter_reduce(0, inverse, pos, reduce="amin")
            k = self.select(counts, first)
            if k is None:
                break
            a, c = divmod(int(uniq[k]), M)
            hit = torch.zeros(u.numel(), dtype=torch.bool)
            hit[pos[inverse == k]] = True
            if a == c:  # runs "a a a": keep every other occurrence, from the left of each run
                idx = hit.nonzero().squeeze(1)
                start = torch.ones_like(idx, dtype=torch.bool)
                start[1:] = idx[1:] != idx[:-1] + 1
                run_start = torch.where(start, idx, torch.zeros_like(idx)).cummax(0).values
                hit[idx[(idx - run_start) % 2 == 1]] = False
            at = hit.nonzero().squeeze(1)
            new = V + len(table)
            table.append(unit(a) + unit(c))
            u[at] = new
            j[at] = j[at + 1]
            keep = torch.ones(u.numel(), dtype=torch.bool)
            keep[at + 1] = False
            u, j, seq_id = u[keep], j[keep], seq_id[keep]
            done.append((unit(a), unit(c)))
        units: list[list[Unit]] = [[] for _ in seqs]
        for b, i in zip(seq_id.tolist(), u.tolist()):
            units[b].append(unit(i))
        return MergedBatch(units=units, merges=done, special=frozenset(special))

    @torch.no_grad()
    def embed(self, batch: MergedBatch, model, transfer: EmbeddingTransfer) -> list[torch.Tensor]:
        """Input embeddings (T_i', D) of each merged sequence: a merged unit gets ``transfer``'s
        embedding of its parts; a token left alone gets ``transfer``'s embedding of itself
        (``unmerged="transfer"``, the paper's choice) or the model's own (``"original"``)."""
        if not isinstance(transfer, EmbeddingTransfer):
            raise TypeError(f"transfer must be an EmbeddingTransfer (e.g. tw.create('zett')), got {type(transfer).__name__}")
        src_in, src_out = lm_embeddings(model)
        todo = batch.all_units() if self.unmerged == "transfer" else batch.new_units()
        todo = [u for u in todo if not (len(u) == 1 and u[0] in batch.special)]
        table = {}
        if todo:
            e_new, _ = transfer.embed_parts(todo, src_in, src_out)
            table = {u: e_new[k] for k, u in enumerate(todo)}
        out = []
        for seq in batch.units:
            if not seq:
                out.append(src_in.new_zeros((0, src_in.shape[1])))
                continue
            rows = [table[u] if u in table else src_in[u[0]] for u in seq]
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
