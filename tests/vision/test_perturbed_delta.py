"""P21's perturbed-decode metric takes the neighbourhood size, so a method and its control are
scored with the same ``delta``: with delta=1 the only candidate is the true code (no change)."""

from __future__ import annotations

import pytest
import torch

from tokenworks.data import load_fashion_mnist
from tokenworks.vision import perturbed_fd_local
from tokenworks.vision.train import _fd_local

from vision_tiny import tiny


def test_perturbed_fd_local_uses_the_given_delta():
    data = load_fashion_mnist("test").take(64)  # its fd_local classifier is committed
    tok = tiny("titok", quantizer="robustok", quantizer_options={"codebook_size": 32}, seed=0).eval()
    tok.quant(tok.encode_latents(data.float()))  # k-means init of the codebook on these tokens
    with torch.no_grad():
        clean = _fd_local(data.float(), tok.decode(tok.encode(data.float())), data.name)
    assert perturbed_fd_local(tok, data, rate=1.0, delta=1) == pytest.approx(clean)
    assert perturbed_fd_local(tok, data, rate=1.0, delta=8) != pytest.approx(clean)
