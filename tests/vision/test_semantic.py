"""P04 GigaTok and P46 VA-VAE: semantic regularization against a frozen teacher."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw
from tokenworks.models import ImageClassifier
from tokenworks.vision.teacher import conv_trunk
from tokenworks.vision.vavae import vf_loss

from vision_tiny import images, teacher, tiny


@torch.no_grad()
def _teacher_cells(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Reference teacher features: the classifier's layers run one by one, pooled with a loop."""
    clf = teacher()
    h = (x - 0.5) / 0.5
    for layer in clf.body:
        if isinstance(layer, torch.nn.Flatten):
            break
        h = layer(h)
    b, c, s, _ = h.shape
    out = torch.zeros(b, grid * grid, c)
    for i in range(grid):
        for j in range(grid):  # adaptive pooling bins, written out
            r0, r1 = (i * s) // grid, -(-((i + 1) * s) // grid)
            c0, c1 = (j * s) // grid, -(-((j + 1) * s) // grid)
            out[:, i * grid + j] = h[:, :, r0:r1, c0:c1].mean(dim=(2, 3))
    return out


def test_gigatok_semantic_loss_matches_a_loop():
    tok = tiny("gigatok").train()
    x = images(2)
    hidden = torch.randn(2, tok.decoder.num_patches, tok.decoder_width)
    got = tok.semantic_loss(hidden, x)
    target = _teacher_cells(x, tok.decoder.grid)
    with torch.no_grad():
        z = tok.sem_proj(hidden)
    total = 0.0
    for b in range(2):
        for i in range(z.shape[1]):
            u, v = z[b, i], target[b, i]
            total += 1 - float(u @ v) / (float(u.norm()) * float(v.norm()))
    assert got.item() == pytest.approx(total / (2 * z.shape[1]), abs=1e-5)


def test_gigatok_regularizes_the_decoder_up_to_reg_layer_only():
    """The regularizer's gradient reaches the encoder (through the straight-through bottleneck)
    and decoder layers <= reg_layer, never the layers after it or the pixel head."""
    tok = tiny("gigatok", decoder_depth=2, reg_layer=1).train()
    x = images(4)
    latents = tok.encode_latents(x)
    quantized, _, _ = tok.quant(latents)
    recon = tok.decode_latents(quantized)
    tok.extra_loss(x, latents, recon).backward()
    grad = lambda ps: sum(float(p.grad.abs().sum()) for p in ps if p.grad is not None)  # noqa: E731
    assert grad(tok.decoder.transformer.layers[0].parameters()) > 0
    assert grad(tok.encoder.parameters()) > 0 and grad(tok.sem_proj.parameters()) > 0
    assert grad(tok.decoder.transformer.layers[1].parameters()) == 0
    assert grad(tok.decoder.head.parameters()) == 0


def test_gigatok_zero_weight_is_titok_loss():
    tok = tiny("gigatok", reg_weight=0.0).train()
    loss, info = tok.loss(images(2))
    assert info["extra"] == 0.0 and loss.item() == pytest.approx(info["mse"] + info["aux"])


def test_teacher_is_not_part_of_the_tokenizer(tmp_path):
    tok = tiny("gigatok")
    assert not any("teacher" in k for k in tok.state_dict())
    fresh = tw.create("gigatok", width=16, depth=1, heads=2, latent_dim=8, num_latents=6, teacher_dim=8)
    with pytest.raises(RuntimeError, match="needs a teacher"):
        fresh.loss(images(2))
    with pytest.raises(ValueError, match="teacher_dim"):
        fresh.set_teacher(ImageClassifier(width=8))  # 16 feature channels, not 8


def _vf_reference(z, f, m1, m2):
    b, n, _ = z.shape
    mcos, mdms = 0.0, 0.0
    cos = lambda u, v: float(u @ v) / (float(u.norm()) * float(v.norm()))  # noqa: E731
    for k in range(b):
        for i in range(n):
            mcos += max(0.0, 1 - m1 - cos(z[k, i], f[k, i]))
            for j in range(n):
                mdms += max(0.0, abs(cos(z[k, i], z[k, j]) - cos(f[k, i], f[k, j])) - m2)
    return mcos / (b * n), mdms / (b * n * n)


def test_vf_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    z, f = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    for m1, m2 in ((0.0, 0.0), (0.5, 0.25)):
        mcos, mdms = vf_loss(z, f, m1, m2)
        rc, rd = _vf_reference(z, f, m1, m2)
        assert mcos.item() == pytest.approx(rc, abs=1e-5) and mdms.item() == pytest.approx(rd, abs=1e-5)
    aligned = vf_loss(f * 2.0, f, 0.5, 0.25)  # same directions: both terms vanish
    assert aligned[0].item() == 0 and aligned[1].item() == pytest.approx(0, abs=1e-6)


def test_vavae_adaptive_weight_is_the_gradient_norm_ratio():
    tok = tiny("vavae", vf_weight=0.3).train()
    x = images(4)
    latents = tok.encode_latents(x)
    quantized, _, _ = tok.quant(latents)
    recon = tok.decode_latents(quantized)
    got = tok.extra_loss(x, latents, recon)
    # reference: the two gradients by separate backward passes
    last = tok.encoder[-1].weight
    target = _teacher_cells(x, tok.grid)
    vf = sum(vf_loss(tok.vf_proj(latents), target, tok.margin_cos, tok.margin_dist))
    last.grad = None
    F.mse_loss(recon, x).backward(retain_graph=True)
    g_rec = last.grad.norm().item()
    last.grad = None
    vf.backward(retain_graph=True)
    g_vf = last.grad.norm().item()
    assert got.item() == pytest.approx(0.3 * g_rec / g_vf * vf.item(), rel=1e-4)
    fixed = tiny("vavae", vf_weight=0.3, adaptive=False)
    assert not math.isclose(fixed.extra_loss(x, latents, recon).item(), got.item())


def test_semantic_teacher_features_match_reference():
    tok = tiny("vavae")
    x = images(2)
    torch.testing.assert_close(tok.teacher_features(x, 7), _teacher_cells(x, 7), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tok.teacher_features(x, 4), _teacher_cells(x, 4), atol=1e-5, rtol=1e-5)
    assert len(conv_trunk(teacher())) < len(teacher().body)
