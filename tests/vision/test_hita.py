"""P05 Hita: holistic tokens first, causal order, causal fusion."""

from __future__ import annotations

import pytest
import torch

import tokenworks as tw

from vision_tiny import images, tiny


def _tok():
    return tiny("hita", holistic_tokens=3, patch_grid=2).eval()


def test_layout():
    tok = _tok()
    assert tok.num_tokens == 3 + 4 and tuple(tok.encode(images(2)).shape) == (2, 7)


@pytest.mark.parametrize("stage", ["causal_stage", "fuse"])
def test_causal_by_perturbing_later_positions(stage):
    tok = _tok()
    fn = getattr(tok, stage)
    dim = tok.width if stage == "causal_stage" else tok.latent_dim
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(2, tok.num_tokens, dim, generator=g)
    with torch.no_grad():
        base = fn(seq)
        for i in range(tok.num_tokens - 1):
            noisy = seq.clone()
            noisy[:, i + 1 :] = torch.randn(noisy[:, i + 1 :].shape, generator=g)
            out = fn(noisy)
            torch.testing.assert_close(out[:, : i + 1], base[:, : i + 1], atol=1e-5, rtol=1e-5)
            assert (out[:, i + 1 :] - base[:, i + 1 :]).abs().max() > 1e-5


@pytest.mark.parametrize("stage", ["causal_stage", "fuse"])
def test_causal_stage_matches_prefix_by_prefix_loop(stage):
    """Reference written differently: run every prefix alone (no future exists to mask)."""
    tok = _tok()
    fn = getattr(tok, stage)
    dim = tok.width if stage == "causal_stage" else tok.latent_dim
    seq = torch.randn(2, tok.num_tokens, dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = fn(seq)
        loop = torch.stack([fn(seq[:, : i + 1])[:, -1] for i in range(tok.num_tokens)], dim=1)
    torch.testing.assert_close(full, loop, atol=1e-5, rtol=1e-5)


def test_holistic_tokens_see_the_whole_image():
    """Stage 1 is full attention: a change in one corner moves every holistic token by a
    real share (>= 5%) of what it moves the most-moved token (the corner's own patch token),
    not by a rounding error (a masked-out stage 1 gives exactly 0)."""
    tok = _tok()
    x = images(2)
    y = x.clone()
    y[:, :, :7, :7] = 1 - y[:, :, :7, :7]
    with torch.no_grad():
        d = (tok.encode_latents(x) - tok.encode_latents(y)).abs().amax(dim=(0, 2))
    assert (d[:3] > 0.05 * d.max()).all(), d


def test_trained_hita_decoder_uses_the_holistic_tokens():
    """The committed hita-16: giving an image another image's holistic ids (its patch ids
    kept) must cost real reconstruction quality (>= 1 dB PSNR on average), else the holistic
    tokens are decoration."""
    from pathlib import Path

    from tokenworks.data import load_fashion_mnist
    from tokenworks.metrics import psnr
    from tokenworks.vision import ImageTokenizer

    path = Path(__file__).resolve().parents[2] / "assets" / "vision" / "hita-16"
    if not (path / "model.safetensors").is_file():
        pytest.skip("assets/vision/hita-16 is not committed")
    tok = ImageTokenizer.from_pretrained(path)
    x = load_fashion_mnist("test").take(200).float()
    ids = tok.encode(x)
    swapped = ids.clone()
    swapped[:, : tok.holistic_tokens] = ids.roll(1, dims=0)[:, : tok.holistic_tokens]
    own, other = psnr(tok.decode(ids), x).mean(), psnr(tok.decode(swapped), x).mean()
    assert own - other > 1.0, (float(own), float(other))


def test_bad_options():
    with pytest.raises(ValueError, match="patch_grid must be <= 4"):
        tw.create("hita", patch_size=7, patch_grid=5)
    with pytest.raises(ValueError, match="holistic_tokens must be >= 0"):
        tw.create("hita", holistic_tokens=-1)
