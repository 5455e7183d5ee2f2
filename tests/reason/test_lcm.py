"""P50 LCM: sentence splitting, the DDPM chain with a perfect denoiser ends at x0, retrieval
scores at their known extremes, a short fit beats a constant guess, bad input."""

import pytest
import torch

from tokenworks.reason.lcm import DIM, ConceptModel, _cosine_alphas, retrieval_scores, sentences, train_concept_model


def test_sentences():
    text = 'First one is here. Second one, "quoted", ends! Short. Third one asks why?\n\nNew para starts now'
    assert sentences(text) == ['First one is here.', 'Second one, "quoted", ends!', "Third one asks why?", "New para starts now"]


def test_ddpm_chain_with_a_perfect_denoiser_returns_the_target():
    m = ConceptModel("diffusion", context=2, steps=20)
    x0 = torch.nn.functional.normalize(torch.randn(3, DIM), dim=-1)
    m.denoise = lambda ctx, xt, t: x0  # an oracle for x0
    out = m.predict(torch.zeros(3, 2, DIM), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0)
    a = _cosine_alphas(20)
    assert (a[1:] < a[:-1]).all() and a[0] < 1 and a[-1] > 0


def test_retrieval_extremes():
    t = torch.nn.functional.normalize(torch.randn(30, DIM), dim=-1)
    s = retrieval_scores(t, t, candidates=10)
    assert s["retrieval_top1"] == 1.0 and s["cosine"] == pytest.approx(1.0) and s["chance"] == 0.1
    assert retrieval_scores(-t, t, candidates=10)["retrieval_top1"] == 0.0


@pytest.mark.parametrize("kind", ["mse", "diffusion"])
def test_fit_learns_a_linear_next_embedding(kind):
    g = torch.Generator().manual_seed(0)
    ctx = torch.nn.functional.normalize(torch.randn(512, 2, DIM, generator=g), dim=-1)
    y = torch.nn.functional.normalize(ctx[:, 0] + ctx[:, 1], dim=-1)  # the next "sentence" follows from the context
    m = train_concept_model(kind, ctx, y, steps=300, lr=3e-3)
    s = retrieval_scores(m.predict(ctx[:100], torch.Generator().manual_seed(1)), y[:100], candidates=10)
    assert s["retrieval_top1"] > 0.5 and s["cosine"] > 0.3


@pytest.mark.parametrize("kind", ["mse", "diffusion"])
def test_a_zero_net_predicts_the_last_context_sentence(kind):
    """The nets predict the change from the last context sentence: with the output layer zeroed
    the prediction is the copy-last-sentence baseline (written here as an index, not by the model)."""
    m = ConceptModel(kind, context=3, steps=5)
    torch.nn.init.zeros_(m.net[-1].weight)
    torch.nn.init.zeros_(m.net[-1].bias)
    ctx = torch.randn(4, 3, DIM)
    torch.testing.assert_close(m.predict(ctx, torch.Generator().manual_seed(0)), ctx[:, 2])


def test_dropout_acts_only_while_training():
    m = ConceptModel("mse", context=2, dropout=0.5)
    ctx = torch.randn(8, 2, DIM)
    torch.testing.assert_close(m.eval().predict(ctx), m.predict(ctx))  # eval: deterministic
    m.train()
    assert not torch.equal(m.regress(ctx), m.regress(ctx))


def test_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        ConceptModel("gan")
    with pytest.raises(ValueError, match="dropout"):
        ConceptModel("mse", dropout=1.5)
