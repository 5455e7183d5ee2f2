"""Contract tests for every registered image tokenizer (parametrized over the registry)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw
from tokenworks.vision import ImageTokenizer

from vision_tiny import TOKENIZERS, captions_for, images, tiny

pytestmark = pytest.mark.parametrize("name", TOKENIZERS)


def test_registered_with_paper_or_baseline(name):
    info = tw.get(name)
    assert info.family == "VIS" and info.kind == "image_tokenizer"
    doc = info.obj.__module__ and __import__(info.obj.__module__, fromlist=["_"]).__doc__
    if info.paper:
        assert doc.startswith(info.paper), f"{name}: module docstring must start with {info.paper}"
    else:
        assert info.cite and "baseline" in doc.lower()


def test_round_trip_shapes(name):
    tok = tiny(name)
    x = images(3)
    caps = captions_for(tok, 3)
    ids = tok.encode(x, caps)
    assert tuple(ids.shape) == tok.index_shape(3) and not ids.is_floating_point()
    assert int(ids.min()) >= 0 and int(ids.max()) < tok.codebook_size
    assert ids.shape[1] == tok.num_tokens
    y = tok.decode(ids, caps)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert tok.bits_per_image == pytest.approx(math.prod(tok.index_shape(1)) * math.log2(tok.codebook_size))


def test_eval_decode_of_encode_equals_training_path_codes(name):
    """decode(encode(x)) equals the decoder applied to the quantizer's codes of the forward."""
    tok = tiny(name).eval()
    x = images(2)
    caps = captions_for(tok, 2)
    with torch.no_grad():
        cond = tok.condition(caps, 2)
        quantized, ids, _ = tok.quant(tok.encode_latents(x, cond))
        ref = tok.decode_latents(quantized, cond).clamp(0, 1)
    torch.testing.assert_close(tok.decode(tok.encode(x, caps), caps), ref, atol=1e-5, rtol=1e-5)


def test_training_path_is_differentiable(name):
    tok = tiny(name).train()
    x = images(8)
    caps = captions_for(tok, 8)
    recon, aux = tok(x, caps)
    assert recon.shape == x.shape and recon.requires_grad
    loss, info = tok.loss(x, caps)
    assert torch.isfinite(loss) and set(info) == {"mse", "aux", "extra"}
    loss.backward()
    missing = [n for n, p in tok.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"{name}: no finite gradient for {missing}"
    # the reconstruction's gradient reaches the first trainable layer (straight-through bottleneck)
    first = next(p for p in tok.parameters() if p.requires_grad)
    assert first.grad.abs().sum() > 0


def test_deterministic_by_seed(name):
    a, b = tiny(name, seed=5), tiny(name, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    x = images(2)
    caps = captions_for(a, 2)
    assert torch.equal(a.encode(x, caps), b.encode(x, caps))
    c = tiny(name, seed=6)
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_save_load_identical(name, tmp_path):
    tok = tiny(name).eval()
    x = images(2)
    caps = captions_for(tok, 2)
    ids = tok.encode(x, caps)
    out = tok.decode(ids, caps)
    tok.save_pretrained(tmp_path / "t")
    back = ImageTokenizer.from_pretrained(tmp_path / "t")
    assert type(back) is type(tok) and back.config() == tok.config()
    assert torch.equal(back.encode(x, caps), ids)
    assert torch.equal(back.decode(ids, caps), out)
    half = ImageTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "h", half=True))
    assert (half.decode(ids, caps) - out).abs().max() < 0.05  # float16 weights: close, not equal


def test_bad_images(name):
    tok = tiny(name)
    with pytest.raises(ValueError, match="images must have shape"):
        tok.encode(torch.rand(2, tok.channels + 2, tok.image_size, tok.image_size))
    with pytest.raises(ValueError, match="images must have shape"):
        tok.encode(torch.rand(2, tok.channels, tok.image_size + 4, tok.image_size + 4))
    with pytest.raises(ValueError, match="images must have 4 dimensions"):
        tok.encode(torch.rand(tok.channels, tok.image_size, tok.image_size))
    with pytest.raises(TypeError, match="images must be a floating-point"):
        tok.encode(torch.zeros(2, tok.channels, tok.image_size, tok.image_size, dtype=torch.uint8))


def test_bad_ids(name):
    tok = tiny(name)
    ids = tok.encode(images(2), captions_for(tok, 2))
    with pytest.raises(ValueError, match=r"ids must be in \[0, "):
        tok.decode(ids + tok.codebook_size, captions_for(tok, 2))
    with pytest.raises(ValueError, match=r"ids must be in \[0, "):
        tok.decode(ids - ids.max() - 1, captions_for(tok, 2))
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        tok.decode(ids.float(), captions_for(tok, 2))
    too_long = torch.cat([ids, ids], dim=1)
    with pytest.raises(ValueError, match="ids must"):
        tok.decode(too_long, captions_for(tok, 2))


def test_captions_only_for_conditional(name):
    tok = tiny(name)
    x = images(2)
    if tok.conditional:
        with pytest.raises(ValueError, match="captions must hold one caption per image"):
            tok.encode(x, captions_for(tok, 3))
    else:
        with pytest.raises(ValueError, match="captions: .* is not caption-conditioned"):
            tok.encode(x, ["a coat", "a bag"])


def test_reconstruction_improves_with_training(name):
    """A few optimizer steps on one batch lower its reconstruction error (the losses are wired)."""
    tok = tiny(name).train()
    x = images(8, seed=3)
    caps = captions_for(tok, 8)
    opt = torch.optim.Adam([p for p in tok.parameters() if p.requires_grad], lr=3e-3)
    with torch.no_grad():
        before = F.mse_loss(tok.eval()(x, caps)[0], x).item()
    tok.train()
    for _ in range(15):
        loss, _ = tok.loss(x, caps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = F.mse_loss(tok.eval()(x, caps)[0], x).item()
    assert after < before
