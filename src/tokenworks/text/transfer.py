"""The embedding-transfer interface: move a trained causal LM onto a new tokenizer.

    tr = tw.create("zett")                       # or "mean_init", "random_init"
    new_model = tr.transfer(model, source_tokenizer, target_tokenizer)
    emb_in, emb_out = tr.embeddings(model, source_tokenizer, target_tokenizer)

Each token of the target vocabulary is *decomposed* into the source tokenizer's ids (its
exact bytes tokenized by the source tokenizer's BPE model); a method maps decompositions to
embeddings through one hook, ``predict(parts, source_in, source_out)``. The base does the
mechanics: decompositions, special tokens (copied from the source special token with the same
text, else the same role -- end of text, padding, beginning, unknown -- else the mean source
embedding), tied or untied output embeddings, and a new model with resized embeddings and the
target's special-token ids. Any Hugging Face causal LM whose input (and output) embeddings
are ``nn.Embedding``/``nn.Linear`` works; a bias on the output layer is set to zero for every
target token (no method here predicts biases).

Decomposition caveat: for a byte-level source tokenizer the decomposition is exact for every
token (even a partial UTF-8 character); for any other source tokenizer the token's text is
re-encoded, which is exact for whole characters only.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch

from tokenworks.text.vocab import backend, byte_level_table, is_byte_level, token_bytes

__all__ = ["EmbeddingTransfer", "decompose", "lm_embeddings", "special_source_ids"]

_ROLES = ("eos_token", "pad_token", "bos_token", "unk_token")


def lm_embeddings(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input embeddings (V, D), output embeddings (V, D) or None when tied)."""
    emb_in = model.get_input_embeddings()
    if emb_in is None or not hasattr(emb_in, "weight") or emb_in.weight.ndim != 2:
        raise TypeError(f"model must have a 2-D input embedding matrix, got {type(emb_in).__name__}")
    emb_out = model.get_output_embeddings()
    w_in = emb_in.weight
    if emb_out is None or emb_out.weight is w_in or emb_out.weight.data_ptr() == w_in.data_ptr():
        return w_in, None
    if emb_out.weight.shape != w_in.shape:
        raise ValueError(f"output embeddings {tuple(emb_out.weight.shape)} do not match input embeddings {tuple(w_in.shape)}")
    return w_in, emb_out.weight


def _special_ids(tokenizer) -> set[int]:
    return {i for i, a in backend(tokenizer).get_added_tokens_decoder().items() if a.special}


def special_source_ids(source_tokenizer, target_tokenizer) -> dict[int, int | None]:
    """Target special-token id -> the source id whose embedding it takes (None: the mean)."""
    src_vocab = backend(source_tokenizer).get_vocab(with_added_tokens=True)
    src_special = _special_ids(source_tokenizer)
    tgt = backend(target_tokenizer)
    out: dict[int, int | None] = {}
    for i, a in tgt.get_added_tokens_decoder().items():
        if not a.special:
            continue
        j = src_vocab.get(a.content)
        if j is not None and j in src_special:
            out[i] = j
            continue
        out[i] = None
        for role in _ROLES:
            if getattr(target_tokenizer, role, None) == a.content and getattr(source_tokenizer, role, None) is not None:
                out[i] = src_vocab.get(getattr(source_tokenizer, role))
                break
    return out


def decompose(source_tokenizer, target_tokenizer) -> list[tuple[int, ...]]:
    """``parts[i]``: the source ids that spell target token ``i`` (``()`` for special tokens and
    ids that stand for no text)."""
    tb = token_bytes(target_tokenizer)
    special = _special_ids(target_tokenizer)
    src = backend(source_tokenizer)
    if is_byte_level(source_tokenizer):
        table = byte_level_table()
        model = src.model

        def split(b: bytes) -> tuple[int, ...]:
            return tuple(t.id for t in model.tokenize("".join(table[x] for x in b)))
    else:
        def split(b: bytes) -> tuple[int, ...]:
            return tuple(src.encode(b.decode("utf-8", errors="replace"), add_special_tokens=False).ids)

    return [() if (i in special or not b) else split(b) for i, b in enumerate(tb)]


class EmbeddingTransfer:
    """Base of the transfer methods (``kind = "embedding_transfer"``); one hook, ``predict``."""

    kind: ClassVar[str] = "embedding_transfer"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check option fields (raise naming the field)."""

    @abstractmethod
    def predict(
        self, parts: Sequence[tuple[int, ...]], source_in: torch.Tensor, source_out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings (N, D) (and output embeddings (N, D) when ``source_out`` is given) for N
        non-empty decompositions into source ids."""

    # ---- mechanics -----------------------------------------------------------------------
    def embed_parts(
        self, parts: Sequence[tuple[int, ...]], source_in: torch.Tensor, source_out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``predict`` with checks: every decomposition non-empty and within the source vocabulary."""
        V = source_in.shape[0]
        for k, p in enumerate(parts):
            if len(p) == 0:
                raise ValueError(f"parts[{k}] is empty: every new token needs at least one source id")
            if min(p) < 0 or max(p) >= V:
                raise ValueError(f"parts[{k}] = {tuple(p)} has ids outside the source vocabulary [0, {V})")
        if not parts:
            d = source_in.shape[1]
            empty = source_in.new_zeros((0, d))
            return empty, (None if source_out is None else empty.clone())
        with torch.no_grad():
            e_in, e_out = self.predict(list(parts), source_in.detach(), None if source_out is None else source_out.detach())
        if e_in.shape != (len(parts), source_in.shape[1]):
            raise AssertionError(f"{type(self).__name__}.predict returned shape {tuple(e_in.shape)}")
        return e_in.to(source_in.dtype), (None if e_out is None else e_out.to(source_in.dtype))

    @torch.no_grad()
    def embeddings(self, model, source_tokenizer, target_tokenizer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Input embeddings (V', D) for the target vocabulary, and output embeddings (V', D) for an
        untied model (None when the model ties them)."""
        source_in, source_out = lm_embeddings(model)
        parts = decompose(source_tokenizer, target_tokenizer)
        V, D = source_in.shape
        n_src = len(backend(source_tokenizer).get_vocab(with_added_tokens=True))
        if n_src > V:
            raise ValueError(f"source_tokenizer has {n_src} tokens but the model only {V} embeddings: wrong tokenizer for this model?")
        rows = [i for i, p in enumerate(parts) if p]
        e_in, e_out = self.embed_parts([parts[i] for i in rows], source_in, source_out)
        out_in = source_in.new_empty((len(parts), D))
        out_out = None if source_out is None else source_out.new_empty((len(parts), D))
        idx = torch.tensor(rows, dtype=torch.long, device=source_in.device)
        out_in[idx] = e_in
        if out_out is not None:
            out_out[idx] = e_out
        special = special_source_ids(source_tokenizer, target_tokenizer)
        for i, p in enumerate(parts):
            if p:
                continue
            j = special.get(i)
            out_in[i] = source_in[j] if j is not None else source_in.mean(0)
            if out_out is not None:
                out_out[i] = source_out[j] if j is not None else source_out.mean(0)
        return out_in, out_out

    @torch.no_grad()
    def transfer(self, model, source_tokenizer, target_tokenizer):
        """A copy of ``model`` that reads and writes ``target_tokenizer``'s ids."""
        e_in, e_out = self.embeddings(model, source_tokenizer, target_tokenizer)
        new = copy.deepcopy(model)
        new.resize_token_embeddings(e_in.shape[0], mean_resizing=False)
        new.get_input_embeddings().weight.copy_(e_in)
        head = new.get_output_embeddings()
        if e_out is not None:
            head.weight.copy_(e_out)
        if head is not None and getattr(head, "bias", None) is not None:
            head.bias.zero_()
        for role in ("eos_token_id", "pad_token_id", "bos_token_id"):
            value = getattr(target_tokenizer, role, None)
            setattr(new.config, role, value)
            if getattr(new, "generation_config", None) is not None:
                setattr(new.generation_config, role, value)
        return new
