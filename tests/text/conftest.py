"""Shared fixtures of the TXT tests: small corpora, tokenizers trained on them, tiny Llamas."""

import pytest
import torch

import tokenworks as tw
from tokenworks.data import load_legal, load_prose

SMALL_VOCAB = 512
KL3M_VOCAB = 2048  # the full KL3M custom-token set (~1,700 tokens) needs more than 512 entries


@pytest.fixture(scope="session")
def small_corpus():
    """About 300 KB: 40 legal and 5 prose documents (train splits)."""
    return list(load_legal("train").documents[:40]) + list(load_prose("train").documents[:5])


@pytest.fixture(scope="session")
def trained(small_corpus):
    """name -> (recipe, tokenizer) for every registered recipe, trained at a small vocabulary."""
    out = {}
    for m in tw.methods(kind="text_tokenizer"):
        recipe = m.create(vocab_size=KL3M_VOCAB if m.name == "kl3m_domain_bpe" else SMALL_VOCAB)
        out[m.name] = (recipe, recipe.train(small_corpus))
    uncased = tw.create("kl3m_domain_bpe", vocab_size=KL3M_VOCAB, cased=False)  # the normalizing variant
    out["kl3m_domain_bpe-uncased"] = (uncased, uncased.train(small_corpus))
    return out


@pytest.fixture(scope="session")
def source_tokenizer(small_corpus):
    """A small byte-level BPE standing in for an LM's original tokenizer."""
    return tw.create("byte_bpe", vocab_size=400).train(small_corpus)


@pytest.fixture(scope="session")
def target_tokenizer():
    """A different tokenizer (KL3M legal recipe on other documents) to transfer onto."""
    return tw.create("kl3m_domain_bpe", vocab_size=KL3M_VOCAB).train(list(load_legal("train").documents[40:80]))


def tiny_llama(tokenizer, *, tied: bool = True, dim: int = 32, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def make_llama():
    """The ``tiny_llama`` factory, as a fixture (test modules here are not a package)."""
    return tiny_llama
