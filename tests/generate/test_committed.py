"""The committed generators (assets/generate/): each loads by its recipe's fingerprint, samples
of class c are classified as c far above chance, and Hi-MAR's dense tokens follow its pivots."""

from __future__ import annotations

import pytest
import torch

from tokenworks.generate.train import GENERATORS


def _gen(name):
    from tokenworks.generate.train import image_generator

    try:
        return image_generator(name, train_if_missing=False)
    except FileNotFoundError as e:
        pytest.skip(f"{name} not committed: {e}")


@pytest.mark.parametrize("name", list(GENERATORS))
def test_committed_generator_samples_its_labels(name):
    from tokenworks.generate.evaluate import generation_metrics, sample_images
    from tokenworks.generate.train import load_tokenizer
    from tokenworks.data import load_images

    g = _gen(name)
    g.cfg = 2.0
    labels = torch.arange(10).repeat(5)
    imgs, info = sample_images(g, load_tokenizer(g.tokenizer), labels, steps=4, seed=0, flops=False)
    m = generation_metrics(imgs, labels, load_images("fashion-mnist", "test").take(500).float())
    assert m["class_accuracy"] > 0.3, m  # chance is 0.1


def test_himar_dense_tokens_follow_the_true_pivots():
    """Statistical (fixed seed, 60 test images): dense tokens generated from an image's own pivots
    are closer to its real tokens than those generated from another same-class image's pivots."""
    from tokenworks.data import load_images
    from tokenworks.generate.latents import encode_latents
    from tokenworks.generate.train import load_tokenizer

    g = _gen("himar-patch2d").eval()
    test = load_images("fashion-mnist", "test")
    idx = torch.cat([torch.nonzero(test.labels == c)[:6, 0] for c in range(10)])
    z = encode_latents(load_tokenizer(g.tokenizer), test.float()[idx])
    lab = test.labels[idx]
    piv = g.pivots(z)
    other = piv.reshape(10, 6, *piv.shape[1:]).roll(1, 1).reshape(piv.shape)  # same class, other image
    with torch.no_grad():
        own, _ = g.dense_given_pivots(lab, piv, 8, torch.Generator().manual_seed(0))
        wrong, _ = g.dense_given_pivots(lab, other, 8, torch.Generator().manual_seed(0))
    e_own, e_wrong = (own - z).pow(2).mean((1, 2)), (wrong - z).pow(2).mean((1, 2))
    assert e_own.mean() < 0.8 * e_wrong.mean()
    assert (e_own < e_wrong).float().mean() > 0.7
