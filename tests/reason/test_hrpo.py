"""P37 HRPO: the gate at initialisation is the token-embedding model, the teacher-forced
re-run of a rollout reproduces it, and GRPO's advantages against a hand computation."""

import pytest
import torch

from tokenworks.reason import ChainOfThought
from tokenworks.reason.hrpo import HRPO, HybridGate, grpo_advantages, rollout_inputs

EOS, EOT = 1, 4


def test_gate_at_a_equal_1_reproduces_the_token_model(model, prompts):
    gate = HybridGate(model.config.hidden_size, r_min=1.0, r_max=1.0)
    hy = HRPO(gate=gate, max_new_tokens=10).generate(model, prompts, eos_token_id=EOS)
    ref = ChainOfThought(max_new_tokens=10).generate(model, prompts, eos_token_id=EOS)
    assert hy.tokens == ref.tokens
    e = torch.randn(5, model.config.hidden_size)
    mixed, a = gate(e, torch.randn(5, model.config.hidden_size) * 10)
    assert torch.equal(a, torch.ones_like(a)) and torch.allclose(mixed, e)


def test_default_gate_starts_near_the_token_embedding():
    gate = HybridGate(32)  # r_min=0.99, r_max=0.999 as the official default
    e, h = torch.randn(64, 32), torch.randn(64, 32)
    mixed, a = gate(e, h)
    assert a.min() >= 0.99 - 1e-6 and a.max() <= 1.0
    # the latent's share is sqrt(1 - a^2) <= sqrt(1 - 0.99^2) ~ 0.141 of it at most
    assert ((mixed - a * e).abs() <= 0.1411 * h.abs() + 1e-5).all()


def test_teacher_forced_rerun_reproduces_the_greedy_rollout(model, prompts):
    """Training re-runs a rollout in one forward from the captured soft embeddings: with greedy
    decoding its argmax at every generated position must be the token the loop produced."""
    gate = HybridGate(model.config.hidden_size, r_min=0.3, r_max=0.6, seed=2)
    captured = {}
    out = HRPO(gate=gate, max_new_tokens=8, end_token_id=EOT, captured=captured).generate(model, prompts, eos_token_id=EOS)
    for i, (p, toks) in enumerate(zip(prompts, out.tokens)):
        lat = torch.stack(captured[i]) if captured.get(i) else None
        x = rollout_inputs(model, gate, p, toks[:-1], lat, EOT)
        with torch.no_grad():
            logits = model(inputs_embeds=x[None]).logits[0]
        pred = logits[len(p) - 1 : len(p) - 1 + len(toks)].argmax(-1).tolist()
        assert pred == toks
    # and the latent path changes something (else the test above proves nothing)
    plain = HRPO(gate=None, latent=False, max_new_tokens=8).generate(model, prompts, eos_token_id=EOS)
    assert plain.tokens != out.tokens


def test_grpo_advantages_match_a_hand_computation():
    r = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])
    adv = grpo_advantages(r, 4, eps=0.0)
    # group 1: mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.57735; group 2: mean 0.75, std 0.5
    s1 = (1 / 3) ** 0.5
    want = [0.5 / s1, -0.5 / s1, -0.5 / s1, 0.5 / s1, 0.5, 0.5, 0.5, -1.5]
    assert torch.allclose(adv, torch.tensor(want), atol=1e-5)
    assert torch.equal(grpo_advantages(torch.ones(4), 4), torch.zeros(4))  # no signal in a uniform group


def test_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        grpo_advantages(torch.ones(6), 4)
    with pytest.raises(ValueError, match="gate"):
        HRPO()
    with pytest.raises(ValueError, match="latent_steps"):
        HRPO(gate=HybridGate(8), latent_steps=2)
