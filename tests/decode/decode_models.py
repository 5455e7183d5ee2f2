"""Tiny random-init model pairs shared by the decoding tests."""

import pytest
import torch

import tokenworks as tw

V = 64


def tiny_lm(layers: int = 2, hidden: int = 32, seed: int = 0, vocab: int = V, kind: str = "llama", eos: int | None = 1):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, eos_token_id=eos, bos_token_id=None,
    )  # fmt: skip
    model = LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False))
    with torch.no_grad():  # sharper distributions than the 0.02-std init: agreement and EOS happen
        model.lm_head.weight.mul_(40.0)
    return model.eval()


def distill_draft(target, seed: int = 1):
    """A draft that agrees with the target often: the target's embeddings and head, a shallower body."""
    draft = tiny_lm(layers=1, seed=seed)
    with torch.no_grad():
        draft.model.embed_tokens.weight.copy_(target.model.embed_tokens.weight)
        draft.lm_head.weight.copy_(target.lm_head.weight)
        draft.model.layers[0].load_state_dict(target.model.layers[0].state_dict())
        draft.model.norm.load_state_dict(target.model.norm.state_dict())
    return draft.eval()


METHODS = [m.name for m in tw.methods(kind="spec_decoder")]


def make(name: str, **kw):
    return tw.create(name, **kw)


@pytest.fixture(scope="module")
def pair():
    target = tiny_lm(layers=2, seed=0)
    return target, distill_draft(target)


def left_pad(rows, pad: int = 0):
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r) :] = torch.tensor(r)
        mask[i, T - len(r) :] = 1
    return ids, mask
