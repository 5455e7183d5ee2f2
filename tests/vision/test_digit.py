"""P22 DiGIT: tokens are k-means clusters of frozen encoder features."""

from __future__ import annotations

import pytest
import torch

import tokenworks as tw

from vision_tiny import images, teacher, tiny
from tokenworks.vision.teacher import conv_trunk


def test_ids_are_nearest_centroids_of_teacher_features():
    tok = tiny("digit", grid=4).eval()
    x = images(3)
    ids = tok.encode(x)
    # reference: the classifier's own trunk, pooled by torch, nearest centroid by brute force
    with torch.no_grad():
        fmap = conv_trunk(teacher())((x - 0.5) / 0.5)
        cells = torch.nn.functional.adaptive_avg_pool2d(fmap, 4).flatten(2).transpose(1, 2)  # (B, 16, C)
    codebook = tok.quant.codebook
    for b in range(3):
        for i in range(16):
            d = ((codebook - cells[b, i]) ** 2).sum(-1)
            assert d[ids[b, i]] <= d.min() + 1e-5


def test_training_moves_only_the_decoder():
    tok = tiny("digit").train()
    frozen = {k: v.clone() for k, v in tok.state_dict().items() if not k.startswith("decoder.")}
    dec = {k: v.clone() for k, v in tok.state_dict().items() if k.startswith("decoder.")}
    opt = torch.optim.Adam([p for p in tok.parameters() if p.requires_grad], lr=1e-2)
    assert all(n.startswith("decoder.") for n, p in tok.named_parameters() if p.requires_grad)
    for _ in range(3):
        loss, _ = tok.loss(images(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = tok.state_dict()
    for k, v in frozen.items():
        assert torch.equal(state[k], v), f"{k} changed in training"
    assert any(not torch.equal(state[k], v) for k, v in dec.items())


def test_kmeans_beats_a_random_codebook():
    """The fitted codebook quantizes the features it was fitted on better than random features do."""
    tok = tiny("digit")
    x = images(64, seed=7)
    with torch.no_grad():
        feats = tok.encode_latents(x).reshape(-1, tok.latent_dim)
    err = lambda cb: torch.cdist(feats, cb).min(dim=1).values.pow(2).mean()  # noqa: E731
    g = torch.Generator().manual_seed(0)
    random_cb = feats[torch.randperm(feats.shape[0], generator=g)[: tok.codebook_size]]
    assert err(tok.quant.codebook) < err(random_cb)
    assert bool(tok.fitted)


def test_bad_options():
    with pytest.raises(ValueError, match="quantizer must be 'vq'"):
        tw.create("digit", quantizer="fsq")
    with pytest.raises(ValueError, match="latent_dim must equal"):
        tw.create("digit", latent_dim=16)
    with pytest.raises(ValueError, match="image_size must be 28"):
        tw.create("digit", image_size=32)
    tok = tw.create("digit", teacher_width=4, latent_dim=8, quantizer_options={"codebook_size": 512})
    with pytest.raises(ValueError, match="at least codebook_size=512"):
        tok.fit_codebook(images(2))


def test_prepare_loads_the_teacher_and_fits_once(monkeypatch):
    import tokenworks.models as models
    from tokenworks.data import ImageSet, load_mnist5k

    calls = []

    def fake_classifier(name):
        calls.append(name)
        return teacher()

    monkeypatch.setattr(models, "image_classifier", fake_classifier)
    d = load_mnist5k("test")
    data = ImageSet("mnist5k", "test", d.images[:100], d.labels[:100], d.classes)
    tok = tw.create("digit", teacher_width=4, latent_dim=8, quantizer_options={"codebook_size": 16, "commitment_weight": 0.0}, kmeans_samples=320)
    tok.prepare(data)
    assert calls == ["mnist5k"] and bool(tok.fitted)
    # the encoder now holds the teacher's trunk
    ref = conv_trunk(teacher()).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in tok.encoder.state_dict().items())
    before = tok.quant.codebook.clone()
    tok.prepare(data)  # already fitted: nothing changes
    assert calls == ["mnist5k"] and torch.equal(tok.quant.codebook, before)
