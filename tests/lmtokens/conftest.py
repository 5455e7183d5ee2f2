"""Tiny random-init Llamas for the lm-tokens tests (no tokenizer, no network)."""

import pytest
import torch


def tiny_lm(vocab: int = 50, *, dim: int = 32, layers: int = 2, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=512,
        eos_token_id=0, pad_token_id=0, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def make_lm():
    return tiny_lm
