"""Contract of every registered LM variant (kind "lm_variant"): shapes, no NaN, seeded
determinism, gradients reach every trainable parameter, clear errors for bad input."""

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw

VARIANTS = [m.name for m in tw.methods(kind="lm_variant")]


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_finite_and_seeded(name, make_lm):
    v = tw.create(name)
    model = v.prepare(make_lm(50))
    x = torch.randint(1, 50, (3, 20))
    seeds = torch.tensor([1, 2, 3])
    a = v.logits(model, x, seeds=seeds)
    b = v.logits(model, x, seeds=seeds)
    assert a.shape == (3, 20, 50) and torch.isfinite(a).all()
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", VARIANTS)
def test_gradient_reaches_every_trainable_parameter(name, make_lm):
    v = tw.create(name)
    model = v.prepare(make_lm(50))
    batch = torch.randint(1, 50, (2, 24))
    loss, stats = v.loss(model, batch, step_frac=0.5, seeds=torch.tensor([5, 6]))
    loss.backward()
    params = v.trainable(model) if hasattr(v, "trainable") else [p for p in model.parameters() if p.requires_grad]
    # a lexinvariant LM never reads its own embedding table
    skip = {id(model.get_input_embeddings().weight)} if name == "lexinvariant" else set()
    missing = [n for n, p in model.named_parameters() if any(p is q for q in params) and id(p) not in skip and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing
    assert torch.isfinite(loss) and "ce" in stats


@pytest.mark.parametrize("name", VARIANTS)
def test_bad_input_names_the_argument(name, make_lm):
    v = tw.create(name)
    model = v.prepare(make_lm(50))
    with pytest.raises(ValueError, match="input_ids"):
        v.logits(model, torch.randint(0, 50, (5,)))
    with pytest.raises(ValueError, match="batch"):
        v.loss(model, torch.randint(0, 50, (2, 1)))
    with pytest.raises(TypeError, match="batch"):
        v.loss(model, torch.rand(2, 5))


def test_standard_lm_loss_is_hf_cross_entropy(make_lm):
    lm = make_lm(50)
    batch = torch.randint(0, 50, (2, 16))
    loss, _ = tw.create("standard_lm").loss(lm, batch)
    ref = lm(input_ids=batch, labels=batch).loss  # HF shifts labels itself
    assert torch.allclose(loss, ref, atol=1e-6)
