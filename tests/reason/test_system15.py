"""P39 System-1.5: shortcuts off = the full path; the depth exit against a cache-free
recomputation of the exit layer; the step gate's control of the chain; fitting runs."""

import pytest
import torch

from tokenworks.reason import ChainOfThought, Coconut
from tokenworks.reason.system15 import DepthExit, StepGate, System15, fit_depth_exit, fit_step_gate

EOS = 1


def _depth(model, seed=0):
    torch.manual_seed(seed)
    de = DepthExit(model.config.hidden_size, model.config.num_hidden_layers)
    for a in de.adapters:
        torch.nn.init.normal_(a.weight, std=0.3)  # a branch that changes the exit token
    return de


def test_shortcuts_off_is_the_full_path(model, prompts):
    de, sg = _depth(model), StepGate(model.config.hidden_size)
    off = System15(depth=de, step_gate=sg, depth_threshold=1.0, step_threshold=1.0, max_new_tokens=8)
    assert off.generate(model, prompts, eos_token_id=EOS).tokens == ChainOfThought(max_new_tokens=8).generate(model, prompts, eos_token_id=EOS).tokens
    off3 = System15(depth=de, step_gate=sg, depth_threshold=1.0, step_threshold=1.0, latent_steps=3, max_new_tokens=8)
    ref3 = Coconut(latent_steps=3, end_token_id=off3.end_token_id, max_new_tokens=8).generate(model, prompts, eos_token_id=EOS)
    out3 = off3.generate(model, prompts, eos_token_id=EOS)
    assert out3.tokens == ref3.tokens and out3.stats.latent_steps == [3, 3, 3]
    L = model.config.num_hidden_layers
    assert all(n == L for row in out3.stats.extra["depth_layers"] for n in row)


@torch.no_grad()
def test_depth_exit_tokens_equal_the_exit_layer_of_a_full_recomputation(model, prompts):
    """Every gate open: each token comes from layer 1's adapter branch; the reference reruns the
    whole sequence without a cache and reads layer 1 there (the deeper layers run in both)."""
    de = _depth(model)
    r = System15(depth=de, depth_threshold=0.0, max_new_tokens=6)
    out = r.generate(model, prompts, eos_token_id=EOS)
    for p, toks, layers in zip(prompts, out.tokens, out.stats.extra["depth_layers"]):
        assert layers == [1] * (len(toks) - 1)  # every fed token exited at layer 1
        seq = torch.tensor([p + toks[:-1]])
        h1 = model(input_ids=seq, output_hidden_states=True).hidden_states[1][0]
        ref = de.exit_logits(model, h1, 1).argmax(-1)[len(p) - 1 :].tolist()
        assert ref == toks
    assert out.tokens != ChainOfThought(max_new_tokens=6).generate(model, prompts, eos_token_id=EOS).tokens


def test_step_gate_closes_the_chain(model, prompts):
    sg = StepGate(model.config.hidden_size)
    torch.nn.init.constant_(sg.lin.bias, 5.0)  # always "can stop"
    out = System15(step_gate=sg, step_threshold=0.5, latent_steps=4, max_new_tokens=4).generate(model, prompts, eos_token_id=EOS)
    assert out.stats.latent_steps == [0, 0, 0]
    torch.nn.init.constant_(sg.lin.bias, -5.0)
    out = System15(step_gate=sg, step_threshold=0.5, latent_steps=4, max_new_tokens=4).generate(model, prompts, eos_token_id=EOS)
    assert out.stats.latent_steps == [4, 4, 4]


def test_fitting_runs_and_distils_towards_the_full_model(model, prompts):
    ids = torch.tensor([p[:5] + [3, 4, 5, 6] for p in prompts])
    labels = ids.clone()
    labels[:, :5] = -100
    b = {"ids": ids, "mask": torch.ones_like(ids), "labels": labels}
    de = fit_depth_exit(model, [b], steps=30)
    assert isinstance(de, DepthExit) and all(p.requires_grad for p in model.parameters())
    sg = fit_step_gate(model, prompts, 2, eos_token_id=EOS, steps=20)
    assert isinstance(sg, StepGate)


def test_bad_thresholds():
    with pytest.raises(ValueError, match="depth_threshold"):
        System15(depth_threshold=1.5)
