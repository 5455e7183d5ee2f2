"""Baseline: raster-order autoregressive generation over tokenizer ids (VQGAN / LlamaGen style).

The network is the token prior of :mod:`tokenworks.vision.prior` (a plain Hugging Face
``LlamaForCausalLM``) with a vocabulary of the codes, then one id per label and the null label:
a sequence is ``[label id, t_1 .. t_N]`` and position i predicts t_{i+1}. The null label sits at
``codebook_size``, the prior's BOS id, so the unconditional model *is* a token prior and its
teacher-forced NLL can be checked with :func:`tokenworks.vision.prior.prior_nll_bits`.
Generation samples N tokens one at a time with the Llama KV cache (N network evaluations per
image whatever ``steps`` says), only over code ids, with classifier-free guidance on the logits.

Choices: the cross-entropy is over the whole vocabulary (so the label ids get ~0 probability and
the NLL matches the prior's); attention is ``eager`` so that the FLOP counter sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenworks.generate.base import ImageGenerator, check_labels
from tokenworks.registry import register

__all__ = ["RasterAR"]


@register("raster-ar", family="GEN", cite="Esser et al. 2021 (VQGAN transformer); Sun et al. 2024 (LlamaGen)")
@dataclass(kw_only=True, eq=False, repr=False)
class RasterAR(ImageGenerator):
    """Causal Llama over [label, tokens in raster order]; one token per network evaluation."""

    def build(self) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        K = self.codebook_size
        cfg = LlamaConfig(vocab_size=K + self.num_classes + 1, hidden_size=self.d_model, intermediate_size=4 * self.d_model,
                          num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.heads,
                          max_position_embeddings=self.num_tokens + 1, tie_word_embeddings=True, bos_token_id=K,
                          eos_token_id=None, pad_token_id=None)  # fmt: skip
        cfg._attn_implementation = "eager"
        self.model = LlamaForCausalLM(cfg)
        del self.label_emb  # labels are vocabulary ids here

    def label_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Label -> its vocabulary id (the null label -> codebook_size, the prior's BOS)."""
        K = self.codebook_size
        return torch.where(labels == self.NULL, torch.full_like(labels, K), K + 1 + labels)

    def loss(self, tokens, labels):
        seq = torch.cat([self.label_ids(self.drop_labels(labels))[:, None], tokens], 1)
        logits = self.model(input_ids=seq[:, :-1]).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), seq[:, 1:].flatten())

    @torch.no_grad()
    def nll_bits(self, tokens: torch.Tensor, labels=None) -> torch.Tensor:
        """Teacher-forced NLL per image in bits, (B,); labels None = unconditional (null label)."""
        tokens = self.check_tokens(tokens)
        lab = torch.full((tokens.shape[0],), self.NULL) if labels is None else check_labels(labels, self.num_classes)
        seq = torch.cat([self.label_ids(lab)[:, None], tokens.long()], 1)
        logp = self.model(input_ids=seq[:, :-1]).logits.float().log_softmax(-1)
        return -logp.gather(-1, seq[:, 1:, None])[..., 0].sum(1) / math.log(2)

    def _generate(self, labels, steps, g):
        from transformers import DynamicCache

        B, K = labels.shape[0], self.codebook_size
        guided = self.cfg != 1.0
        lab = torch.cat([labels, torch.full_like(labels, self.NULL)]) if guided else labels
        cache = DynamicCache()
        inp = self.label_ids(lab)[:, None]
        out = torch.empty(B, self.num_tokens, dtype=torch.long)
        for i in range(self.num_tokens):
            logits = self.model(input_ids=inp, past_key_values=cache, use_cache=True).logits[:, -1, :K]
            if guided:
                logits = logits[B:] + self.cfg * (logits[:B] - logits[B:])
            out[:, i], _ = self.sample_ids(logits, g)
            inp = out[:, i : i + 1].repeat(2 if guided else 1, 1)
        return out, self.num_tokens
