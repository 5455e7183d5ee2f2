"""Tiny random-init decoders (Llama and Qwen2) and fixtures shared by the KV-cache tests."""

import functools

import pytest
import torch

import tokenworks as tw


def tiny_model(kind: str = "llama", layers: int = 4, attn: str = "sdpa", seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )  # fmt: skip
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif kind == "mistral":
        model = MistralForCausalLM(MistralConfig(**common, sliding_window=None))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False))
    model.set_attn_implementation(attn)
    return model.eval()


FAMILIES = {  # the families the kv-cache docs name: (config class, model class) in transformers
    "llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"), "mistral": ("MistralConfig", "MistralForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"), "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"), "olmo2": ("Olmo2Config", "Olmo2ForCausalLM"),
}  # fmt: skip


def tiny_family(kind: str, layers: int = 4, seed: int = 0, **overrides):
    """A tiny random-init model of a family (its config's defaults, small sizes)."""
    import transformers

    cfg_name, model_name = FAMILIES[kind]
    cfg = dict(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=512, pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )  # fmt: skip
    cfg.update(overrides)
    torch.manual_seed(seed)
    return getattr(transformers, model_name)(getattr(transformers, cfg_name)(**cfg)).eval()


def make_policy(name: str, budget=0.5, **kw):
    """A registered policy at ``budget`` with windows small enough for tiny contexts."""
    if name == "full":
        return tw.create("full")
    defaults = {"lazy_eviction": {"window": 4}, "snapkv": {"window": 4}, "tidal_decode": {"selection_layer": 1}}
    return tw.create(name, budget=budget, **{**defaults.get(name, {}), **kw})


POLICIES = [m.name for m in tw.methods(kind="kv_policy")]


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def qwen2():
    return tiny_model("qwen2")


@pytest.fixture(scope="module")
def mistral():
    return tiny_model("mistral")


@functools.lru_cache(maxsize=1)
def task_tokenizer():
    """The task model's tokenizer (the reference BPE): from the committed asset when present
    (no training), else the cached/trained reference tokenizer."""
    from transformers import AutoTokenizer

    from tokenworks.io import assets_dir

    assets = assets_dir()
    path = assets / "kv" / "task-model" if assets is not None else None
    if path is not None and (path / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(path))
    from tokenworks.models import reference_tokenizer

    return reference_tokenizer()
