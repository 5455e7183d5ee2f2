"""Contract tests over every registered quantizer (parametrized from the registry)."""

import math

import pytest
import torch

import tokenworks as tw

QUANTIZERS = [m.name for m in tw.methods(kind="quantizer")]
DIM, B, N = 16, 3, 49


def make(name, seed=0):
    torch.manual_seed(seed)
    return tw.create(name, dim=DIM)


def test_registry_has_the_required_quantizers():
    assert {"vq", "vq_cosine", "vq_kmeans", "fsq", "lfq", "rvq", "binary", "robustok", "vat"} <= set(QUANTIZERS)
    papers = {tw.get(n).paper for n in QUANTIZERS}
    assert {"P06", "P20", "P21"} <= papers


@pytest.mark.parametrize("name", QUANTIZERS)
def test_shapes_dtype_no_nan_and_index_range(name):
    q = make(name)
    x = torch.randn(B, N, DIM)
    for mode in (True, False):
        q.train(mode)
        quantized, idx, aux = q(x)
        assert quantized.shape == x.shape and quantized.dtype == x.dtype and quantized.device == x.device
        assert torch.isfinite(quantized).all() and torch.isfinite(aux)
        assert aux.shape == ()
        assert not idx.is_floating_point()
        assert tuple(idx.shape) == q.index_shape(B, N)
        assert int(idx.min()) >= 0 and int(idx.max()) < q.codebook_size
    assert q.sequence_bits(N) == pytest.approx(math.prod(q.index_shape(1, N)) * math.log2(q.codebook_size))


@pytest.mark.parametrize("name", QUANTIZERS)
def test_gradient_reaches_the_encoder_through_the_straight_through_path(name):
    q = make(name)
    encoder = torch.nn.Linear(DIM, DIM)
    x = torch.randn(B, N, DIM)
    target = torch.randn(B, N, DIM)
    quantized, _, aux = q(encoder(x))
    ((quantized - target).pow(2).mean() + aux).backward()
    assert encoder.weight.grad is not None
    assert encoder.weight.grad.abs().sum() > 0
    assert torch.isfinite(encoder.weight.grad).all()


@pytest.mark.parametrize("name", QUANTIZERS)
def test_same_seed_same_output(name):
    x = torch.randn(B, N, DIM)
    outs = []
    for _ in range(2):
        q = make(name, seed=7)
        torch.manual_seed(123)  # training-time sampling (binary, robustok, vat) uses the global RNG
        outs.append(q(x))
    for a, b in zip(outs[0], outs[1]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_indices_to_codes_equals_forward_codes(name):
    q = make(name)
    x = torch.randn(B, N, DIM)
    q.train()
    q(x)  # one training step (k-means init, EMA update) first
    q.eval()
    quantized, idx, _ = q(x)
    torch.testing.assert_close(q.indices_to_codes(idx), quantized, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_bad_input_gives_clear_errors(name):
    q = make(name)
    with pytest.raises(ValueError, match=f"dim={DIM}"):
        q(torch.randn(B, N, DIM + 1))
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        q(torch.randn(N, DIM))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        q(torch.zeros(B, N, DIM, dtype=torch.long))
    q.eval()
    _, idx, _ = q(torch.randn(B, N, DIM))
    bad = idx.clone()
    bad.view(-1)[0] = q.codebook_size
    with pytest.raises(ValueError, match="indices must be in"):
        q.indices_to_codes(bad)
    with pytest.raises(TypeError, match="integer tensor"):
        q.indices_to_codes(idx.float())


@pytest.mark.parametrize("name", QUANTIZERS)
def test_invalid_options_name_the_field(name):
    with pytest.raises((TypeError, ValueError), match="dim"):
        tw.create(name, dim=0)
