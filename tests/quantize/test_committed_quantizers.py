"""The committed quantizers-suite models (assets/quantizers) do not collapse: every image's
tokens use more than one code and no code takes more than half of all tokens (issue 8)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from tokenworks.io import load_json

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "quantizers"
MODELS = sorted(p.name for p in ASSETS.iterdir() if (p / "tokenworks.json").is_file()) if ASSETS.is_dir() else []


@pytest.fixture(scope="module")
def images():
    from tokenworks.data import load_fashion_mnist

    return load_fashion_mnist("test").take(300).float()


@pytest.mark.parametrize("name", MODELS)
def test_committed_quantizer_model_does_not_collapse(name, images):
    from bench.suites.quantizers import model_fingerprint
    from tokenworks.vision import ImageTokenizer

    method, bits = name.rsplit("-", 1)
    if load_json(ASSETS / name / "tokenworks.json").get("fingerprint") != model_fingerprint(method, int(bits.rstrip("b")))[1]:
        pytest.skip(f"assets/quantizers/{name} is stale (the suite would retrain it)")
    tok = ImageTokenizer.from_pretrained(ASSETS / name).eval()
    with torch.no_grad():
        ids = tok.encode(images)
    rows = [[tuple(t) if ids.ndim == 3 else int(t) for t in img.tolist()] for img in ids]  # grouped ids (rvq, vat levels) as tuples
    distinct = sum(len(set(r)) for r in rows) / len(rows)
    counts = Counter(t for r in rows for t in r)
    top = max(counts.values()) / sum(counts.values())
    assert distinct > 1.0, f"{name}: {distinct:.2f} distinct codes per image"
    assert top <= 0.5, f"{name}: {top:.0%} of all tokens on one code"
