"""Positional collapse: the per-image code statistics, and a registry-wide check that a
tokenizer trained for a few steps writes different codes at different positions of one image."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from tokenworks.data import load_mnist5k
from tokenworks.vision import TokenizerTrainConfig, train_tokenizer
from tokenworks.metrics.codes import distinct_codes_per_image, position_entropy, top_code_share

from vision_tiny import TOKENIZERS, tiny


def _ref(ids: torch.Tensor) -> tuple[float, float, float]:
    """Brute force with Python sets and Counters (grouped ids as tuples)."""
    rows = [[tuple(t) if ids.ndim == 3 else int(t) for t in img.tolist()] for img in ids]
    distinct = sum(len(set(r)) for r in rows) / len(rows)
    ents = []
    for t in range(len(rows[0])):
        c = Counter(r[t] for r in rows)
        n = sum(c.values())
        ents.append(-sum(v / n * math.log2(v / n) for v in c.values()))
    allc = Counter(x for r in rows for x in r)
    return distinct, sum(ents) / len(ents), max(allc.values()) / sum(allc.values())


@pytest.mark.parametrize("shape", [(7, 5), (6, 4, 3)])
def test_statistics_match_brute_force(shape):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 3, shape, generator=g)
    ids[0] = ids[0, :1]  # one image with the same code everywhere
    d, e, s = _ref(ids)
    assert distinct_codes_per_image(ids) == pytest.approx(d)
    assert position_entropy(ids) == pytest.approx(e)
    assert top_code_share(ids) == pytest.approx(s)


def test_collapsed_ids_read_as_collapsed():
    ids = torch.zeros(10, 16, dtype=torch.long)
    ids[:, 3] = torch.arange(10)  # only one position varies, as in the collapsed vq-16
    assert distinct_codes_per_image(ids) == pytest.approx(1.9)
    assert top_code_share(ids) > 0.9


@pytest.fixture(scope="module")
def digits():
    return load_mnist5k("train").take(256)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_trained_tokenizer_writes_different_codes_at_different_positions(name, digits):
    """After a few training steps, the tokens of one image are not all one code, and no code
    takes more than half of all tokens (the collapse the review found in vq-16: 91% code 0)."""
    tok = tiny(name, seed=0)
    if hasattr(tok, "fit_codebook"):  # DiGIT: k-means on the features of these images (tiny() fits it on noise)
        tok.fit_codebook(digits.float()[:128])
    train_tokenizer(tok, digits, TokenizerTrainConfig(steps=8, batch_size=16, lr=1e-3, warmup=0))
    x = digits.float()[:32]
    caps = None
    if tok.conditional:
        from tokenworks.vision.train import dataset_captions

        table, index = dataset_captions(tok, digits.take(32))
        caps = table[index]
    ids = tok.encode(x, caps)
    assert distinct_codes_per_image(ids) > 1.5, f"{name}: tokens of an image are (nearly) all one code"
    assert top_code_share(ids) < 0.5, f"{name}: {top_code_share(ids):.0%} of tokens are one code"
