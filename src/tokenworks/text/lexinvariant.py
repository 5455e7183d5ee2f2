"""P28 Lexinvariant Language Models (Huang et al. 2023): no fixed token embeddings.

Every sequence draws its own embedding table ``E_b`` (V, D) with i.i.d. Gaussian entries, so
token ``v`` is the same vector ``E_b[v]`` everywhere in sequence ``b`` and an unrelated vector
in any other sequence; a Llama reads ``E_b[x]`` as its input embeddings and scores the next
token against the same table (``logits = h @ E_b^T``, tied as in the paper), so the model can
only name a token by pointing at an earlier occurrence of its vector. It must therefore learn
the language from co-occurrence and repetition in the context, and its perplexity approaches a
standard LM's only as the context grows (the claim measured by the ``lm-tokens`` suite).

Choices (the paper leaves them open or we could not check them against code):
- entries ~ N(0, std^2) with ``std = hidden_size ** -0.5`` (unit-norm vectors on average); the
  final RMSNorm's learned gain sets the logit scale;
- the table is drawn for the whole vocabulary (B, V, D) from a generator seeded per sequence
  (``seeds``), or from the global RNG when no seeds are given (training; the project's loop
  re-seeds it every step, so runs are reproducible). Drawing only the tokens present would
  be cheaper at large V; at V = 4096 the full draw costs less than the forward;
- the Llama keeps its (unused) ``embed_tokens`` so that the checkpoint stays a standard
  ``LlamaForCausalLM`` folder; ``table=`` lets a caller pass a fixed (V, D) table, and the
  model's own table makes it exactly the standard tied LM (tested).
- the paper's regularised variant (mixing fixed and random embeddings) is not built.

Measured here (``lm-tokens`` suite): at the committed budget (4 layers, d=64, 400 steps of
16 x 256 prose tokens, 3 seeds) the model does not leave the uniform plateau (8.31 nats vs
ln 4096 = 8.32; repeated tokens 8.24, first occurrences 8.36), while the standard LM of the
same size reaches 5.4: the copy circuits it needs did not form within this budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tokenworks.checks import check_float, check_tensor
from tokenworks.registry import register
from tokenworks.text.lm_variant import LMVariant

__all__ = ["Lexinvariant", "random_tables"]


def random_tables(seeds: torch.Tensor, vocab: int, dim: int, *, std: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """One Gaussian table per seed: (B, V, D), row ``b`` drawn from a generator seeded ``seeds[b]``."""
    check_tensor("seeds", seeds, ndim=1, floating=False)
    out = torch.empty(len(seeds), vocab, dim, dtype=dtype)
    for b, s in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(int(s))
        out[b] = torch.randn(vocab, dim, generator=g, dtype=dtype) * std
    return out.to(device)


@register("lexinvariant", paper="P28")
@dataclass(kw_only=True)
class Lexinvariant(LMVariant):
    """Per-sequence random Gaussian token embeddings (see the module docstring)."""

    std: float | None = None  # None: hidden_size ** -0.5

    def __post_init__(self) -> None:
        if self.std is not None:
            check_float("std", self.std, min=0.0, min_open=True)

    def tables(self, lm: nn.Module, batch: int, seeds: torch.Tensor | None, device) -> torch.Tensor:
        V, D = lm.config.vocab_size, lm.config.hidden_size
        if seeds is None:
            seeds = torch.randint(0, 2**62, (batch,))
        if len(seeds) != batch:
            raise ValueError(f"seeds must hold one seed per sequence ({batch}), got {len(seeds)}")
        return random_tables(seeds.cpu(), V, D, std=self.std if self.std is not None else D**-0.5, device=device)

    def hidden_and_logits(self, model, input_ids, *, seeds=None, table: torch.Tensor | None = None):
        check_tensor("input_ids", input_ids, ndim=2, floating=False)
        lm = self.base_lm(model)
        B = input_ids.shape[0]
        dtype = next(lm.parameters()).dtype
        if table is None:
            table = self.tables(lm, B, seeds, input_ids.device).to(dtype)  # (B, V, D)
        else:
            check_tensor("table", table, ndim=(2, 3), floating=True)
            if table.ndim == 2:
                table = table.unsqueeze(0).expand(B, -1, -1)
        emb = table[torch.arange(B, device=input_ids.device)[:, None], input_ids]  # (B, T, D)
        h = lm.model(inputs_embeds=emb).last_hidden_state  # (B, T, D)
        return h, torch.einsum("btd,bvd->btv", h, table)

    def logits(self, model, input_ids, *, seeds=None, table: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden_and_logits(model, input_ids, seeds=seeds, table=table)[1]
