"""Collapse metrics (distinct codes per image, position entropy, top-code share) against brute-force loops."""

import math
from collections import Counter

import pytest
import torch

from tokenworks.metrics import distinct_codes_per_image, position_entropy, top_code_share


def token_codes(indices):
    """Per image, the list of token codes as Python hashables (tuples when 3-D)."""
    return [[tuple(t) if isinstance(t, list) else t for t in img] for img in indices.tolist()]


def brute(indices):
    imgs = token_codes(indices)
    b, n = len(imgs), len(imgs[0])
    distinct = sum(len(set(img)) for img in imgs) / b
    ent = 0.0
    for pos in range(n):
        c = Counter(img[pos] for img in imgs)
        ent += -sum(v / b * math.log2(v / b) for v in c.values())
    every = Counter(code for img in imgs for code in img)
    return distinct, ent / n, max(every.values()) / (b * n)


@pytest.mark.parametrize("shape,high", [((7, 12), 5), ((5, 9), 100), ((6, 8, 2), 3), ((4, 10, 3), 2), ((1, 1), 4)])
def test_collapse_metrics_match_brute_force(shape, high):
    idx = torch.randint(0, high, shape, generator=torch.Generator().manual_seed(sum(shape)))
    d, e, s = brute(idx)
    assert distinct_codes_per_image(idx) == pytest.approx(d)
    assert position_entropy(idx) == pytest.approx(e)
    assert top_code_share(idx) == pytest.approx(s)


def test_collapse_metrics_on_known_cases():
    collapsed = torch.zeros(10, 16, dtype=torch.long)  # every token on code 0
    assert distinct_codes_per_image(collapsed) == 1.0
    assert position_entropy(collapsed) == 0.0
    assert top_code_share(collapsed) == 1.0
    positional = torch.arange(16).expand(10, 16)  # distinct codes but the same image every time
    assert distinct_codes_per_image(positional) == 16.0
    assert position_entropy(positional) == 0.0
    one_per_image = torch.arange(8)[:, None].expand(8, 4)  # a code per image, all positions equal
    assert distinct_codes_per_image(one_per_image) == 1.0
    assert position_entropy(one_per_image) == pytest.approx(3.0)
    # tuples: (0, 1) and (1, 0) are different codes although their entries are the same
    pairs = torch.tensor([[[0, 1], [1, 0]]])
    assert distinct_codes_per_image(pairs) == 2.0


def test_collapse_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="indices must have 2 or 3 dimensions|indices must have"):
        distinct_codes_per_image(torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        position_entropy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one image"):
        top_code_share(torch.zeros(0, 3, dtype=torch.long))
