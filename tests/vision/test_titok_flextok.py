"""P23 TiTok and P43 FlexTok: defining properties."""

from __future__ import annotations

import copy

import pytest
import torch

import tokenworks as tw
from tokenworks.vision.flextok import register_mask

from vision_tiny import images, tiny


def _corner_change(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[:, :, :4, :4] = 1 - y[:, :, :4, :4]  # invert the top-left 4x4 pixels only
    return y


def test_titok_tokens_are_global_patch2d_tokens_are_local():
    """1D tokens: each of the K latents reads the whole image, so a change in one corner moves
    every latent about as much; the 2D baseline's token at the far corner barely moves (only
    through its GroupNorm statistics)."""
    x = images(2)
    y = _corner_change(x)
    titok = tiny("titok", num_latents=6).eval()
    with torch.no_grad():
        d1 = (titok.encode_latents(x) - titok.encode_latents(y)).abs().amax(dim=(0, 2))  # (K,)
    assert d1.min() > 0.2 * d1.max()
    grid = tiny("patch2d").eval()
    with torch.no_grad():
        d2 = (grid.encode_latents(x) - grid.encode_latents(y)).abs().amax(dim=(0, 2))  # (49,)
    assert d2[-1] < 0.1 * d2[0]  # bottom-right cell is outside the corner's receptive field


@pytest.mark.parametrize("patch_size", [4, 7])
def test_titok_token_count_does_not_depend_on_the_grid(patch_size):
    tok = tiny("titok", num_latents=5, patch_size=patch_size)
    assert tok.num_tokens == 5 and tuple(tok.encode(images(2)).shape) == (2, 5)


def test_flextok_register_mask_matches_a_loop():
    p, k = 4, 3
    mask = register_mask(p, k)
    for i in range(p + k):
        for j in range(p + k):
            forbidden = (i < p and j >= p) or (i >= p and j >= p and j > i)
            assert bool(mask[i, j]) == forbidden, (i, j)


def test_flextok_prefix_decoding_ignores_later_tokens():
    tok = tiny("flextok", num_latents=6).eval()
    ids = tok.encode(images(3))
    g = torch.Generator().manual_seed(0)
    for k in (1, 2, 4, 5):
        noisy = ids.clone()
        noisy[:, k:] = torch.randint(0, tok.codebook_size, noisy[:, k:].shape, generator=g)
        a = tok.decode(ids, keep=k)
        assert torch.equal(a, tok.decode(noisy, keep=k))
        assert torch.equal(a, tok.decode(ids[:, :k]))
        # reference written differently: the full sequence with a keep mask (torch.where path)
        keep = torch.arange(6)[None, :] < k
        with torch.no_grad():
            ref = tok.decoder(tok.quant.indices_to_codes(ids), keep=keep.expand(3, -1)).clamp(0, 1)
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
    assert not torch.equal(tok.decode(ids, keep=1), tok.decode(ids, keep=6))


def test_flextok_registers_are_causal():
    """Register i's latent does not depend on the registers after it."""
    tok = tiny("flextok", num_latents=6).eval()
    x = images(2)
    with torch.no_grad():
        base = tok.encode_latents(x)
        other = copy.deepcopy(tok)
        other.encoder.latents[:, 3:] += torch.randn_like(other.encoder.latents[:, 3:])
        moved = other.encode_latents(x)
    torch.testing.assert_close(moved[:, :3], base[:, :3], atol=1e-5, rtol=1e-5)
    assert (moved[:, 3:] - base[:, 3:]).abs().max() > 1e-4


def test_flextok_nested_dropout_only_in_training():
    tok = tiny("flextok", num_latents=8)
    assert tok.keep_choices() == [1, 2, 4, 8]
    assert tw.create("flextok", num_latents=12, width=16, depth=1, heads=2).keep_choices() == [1, 2, 4, 8, 12]
    assert tiny("flextok", num_latents=4, schedule="uniform").keep_choices() == [1, 2, 3, 4]
    x = images(4)
    tok.train()
    torch.manual_seed(1)
    a = tok(x)[0]
    torch.manual_seed(2)
    b = tok(x)[0]
    assert not torch.equal(a, b)  # different prefix lengths drawn
    tok.eval()
    assert torch.equal(tok(x)[0], tok(x)[0])
    control = tiny("flextok", num_latents=8, nested_dropout=False).train()
    assert torch.equal(control(x)[0], control(x)[0])


def test_flextok_bad_keep():
    tok = tiny("flextok", num_latents=6)
    ids = tok.encode(images(1))
    for bad in (0, 7):
        with pytest.raises(ValueError, match="keep must be"):
            tok.decode(ids, keep=bad)
    with pytest.raises(ValueError, match="exceeds"):
        tok.decode(ids[:, :2], keep=3)
    with pytest.raises(ValueError, match="between 1 and num_tokens=6"):
        tok.decode(torch.cat([ids, ids], 1))
    with pytest.raises(ValueError, match="schedule must be one of"):
        tw.create("flextok", schedule="linear")
    with pytest.raises(ValueError, match="num_latents must be >= 1"):
        tw.create("titok", num_latents=0)


def test_flextok_prefix_lengths_are_uniform_over_the_schedule():
    """Statistical: 6,000 draws put about 1/len(choices) of the mass on each allowed length."""
    tok = tiny("flextok", num_latents=32)
    torch.manual_seed(0)
    k = tok.draw_keep(6000)
    choices = tok.keep_choices()
    assert choices == [1, 2, 4, 8, 16, 32] and set(k.tolist()) == set(choices)
    expected = 6000 / len(choices)
    sd = (6000 * (1 / len(choices)) * (1 - 1 / len(choices))) ** 0.5
    for c in choices:
        assert abs(int((k == c).sum()) - expected) < 4 * sd


def test_flextok_nested_dropout_masks_exactly_the_tokens_after_k():
    """In training, image b keeps its first k_b tokens: its reconstruction equals the
    eval-mode decode of the prefix ids[:, :k_b] alone (the prefix path pads with the dropped
    token by concatenation, not by the training mask), it ignores every token from k_b on,
    and it does depend on token k_b - 1."""
    tok = tiny("flextok", num_latents=8)
    x = images(3)
    ks = torch.tensor([1, 4, 8])
    tok.draw_keep = lambda batch, device=None: ks.to(device)  # the draw is tested separately
    with torch.no_grad():
        q, ids, _ = tok.quant(tok.encode_latents(x))
    tok.train()
    with torch.enable_grad():
        out = tok.decode_latents(q).detach()
    tok.eval()
    for b, k in enumerate(ks.tolist()):
        ref = tok.decode(ids[b : b + 1, :k])  # (1, C, H, W), clamped like out's sigmoid range
        torch.testing.assert_close(out[b : b + 1], ref, atol=1e-5, rtol=1e-5)
    tok.train()
    g = torch.Generator().manual_seed(3)
    for b, k in enumerate(ks.tolist()):
        later = q.clone()
        later[b, k:] = torch.randn(later[b, k:].shape, generator=g)
        last = q.clone()
        last[b, k - 1] = -last[b, k - 1] + 0.5
        with torch.enable_grad():
            same = tok.decode_latents(later).detach()
            moved = tok.decode_latents(last).detach()
        torch.testing.assert_close(same[b], out[b], atol=1e-5, rtol=1e-5)
        assert (moved[b] - out[b]).abs().max() > 1e-4


def test_encoder_linear_path_matches_a_loop():
    """Latent k = out(transformer output at k + linear_out(rows k*r..(k+1)*r of linear_in(2x - 1))),
    computed token by token; the transformer-only part is the same encoder with the path off."""
    tok = tiny("titok", num_latents=5, encoder_linear_rank=3).eval()
    enc = tok.encoder
    x = images(2)
    with torch.no_grad():
        got = enc(x)
        enc.linear_rank = 0
        h = enc.transformer(enc.ln_pre(torch.cat([enc.patches(x), (enc.latents + enc.latent_pos).expand(2, -1, -1)], 1)))[:, enc.num_patches :]
        enc.linear_rank = 3
        flat = x.reshape(2, -1) * 2 - 1
        W, b = enc.linear_in.weight, enc.linear_in.bias
        for k in range(5):
            lin = flat @ W[3 * k : 3 * k + 3].T + b[3 * k : 3 * k + 3]  # (2, r)
            torch.testing.assert_close(got[:, k], enc.out(h[:, k] + enc.linear_out(lin)), atol=1e-5, rtol=1e-5)


def test_encoder_linear_path_is_linear_in_the_pixels_and_reaches_every_token():
    """With the transformer's output silenced, the encoder is exactly affine in the image
    (f(a) + f(b) = f(a + b) + f(0)); without the path the same silenced encoder ignores the image."""
    for rank in (2, 0):
        tok = tiny("titok", num_latents=4, encoder_linear_rank=rank).eval()
        with torch.no_grad():
            tok.encoder.transformer.norm.weight.zero_()
            tok.encoder.transformer.norm.bias.zero_()
            a, b = images(2).split(1)
            z = torch.zeros_like(a)
            f = tok.encoder
            if rank:
                torch.testing.assert_close(f(a) + f(b), f(a + b) + f(z), atol=1e-4, rtol=1e-4)
                assert ((f(a) - f(b)).abs().amax(-1) > 1e-4).all()  # every token sees the image
            else:
                torch.testing.assert_close(f(a), f(b))
    with pytest.raises(ValueError, match="encoder_linear_rank"):
        tw.create("titok", encoder_linear_rank=-1)
