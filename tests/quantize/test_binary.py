"""P20 binary tokens: tempered Bernoulli sampling and the p(1-p) determinism penalty."""

import pytest
import torch
from scipy.stats import bernoulli

import tokenworks as tw


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_training_samples_bernoulli_at_the_training_temperature(temperature):
    q = tw.create("binary", dim=4, bits=8, temperature=temperature).train()
    x = torch.randn(1, 1, 4).expand(1, 4000, 4).contiguous() * 0.2  # logits of order 0.1-0.5
    _, idx, _ = q(x)
    freq = q.bits_of(idx)[0].mean(0)
    logits = q.proj_in(x[:, :1])[0, 0].detach()
    # reference: scipy's Bernoulli mean at p = sigmoid(z / T); 4000 draws, standard error <= 0.008
    expected = torch.tensor([bernoulli(float(torch.sigmoid(z / temperature))).mean() for z in logits], dtype=torch.float)
    torch.testing.assert_close(freq, expected, atol=0.04, rtol=0)


def test_default_temperature_is_the_official_one_and_inference_thresholds_p():
    q = tw.create("binary", dim=4, bits=8)
    assert q.temperature == 0.1 and q.determinism_weight > 0
    q.eval()
    x = torch.randn(2, 5, 4)
    _, idx, _ = q(x)
    assert torch.equal(q.bits_of(idx), (q.probabilities(x) > 0.5).float())


@pytest.mark.parametrize("weight", [0.0, 0.1, 2.0])
def test_aux_loss_is_the_mean_bernoulli_variance(weight):
    q = tw.create("binary", dim=6, bits=4, determinism_weight=weight).eval()
    x = torch.randn(3, 7, 6)
    _, _, aux = q(x)
    p = q.probabilities(x).detach().reshape(-1).tolist()
    expected = weight * sum(bernoulli(pi).var() for pi in p) / len(p)  # scipy: Var Bern(p) = p(1-p)
    assert aux.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def undecided_share(weight, steps=150):
    """Train a tiny binary autoencoder on Gaussian data; return the share of bits with 0.1 < p < 0.9."""
    torch.manual_seed(0)
    enc, dec = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    q = tw.create("binary", dim=8, bits=8, determinism_weight=weight)  # default temperature 0.1
    params = [*enc.parameters(), *dec.parameters(), *q.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    data = torch.randn(256, 4, 8)
    for step in range(steps):
        x = data[torch.randint(0, 256, (64,))]
        quantized, _, aux = q(enc(x))
        loss = (dec(quantized) - x).pow(2).mean() + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p = q.probabilities(enc(data))
    return float(((p > 0.1) & (p < 0.9)).float().mean())


def test_determinism_penalty_makes_bits_decided():
    without, with_penalty = undecided_share(0.0), undecided_share(1.0)
    assert with_penalty < 0.6 * without  # measured 0.38 vs 0.71
