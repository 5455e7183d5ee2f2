"""P58 Token-Shuffle: the rearrangement against torch's pixel_unshuffle, shuffle-then-unshuffle is
the identity, s=1 is RasterAR exactly, cached window-by-window generation equals a brute-force
greedy decode without cache, 2x2 scene tiling against a loop, and bad input names the argument."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw
from tokenworks.generate.scenes import scene_items, tile_ids, untile_ids
from tokenworks.generate.token_shuffle import token_shuffle, token_unshuffle, window_positions


@pytest.mark.parametrize("s", [1, 2, 7])
def test_shuffle_is_pixel_unshuffle_and_unshuffle_inverts_it(s):
    x = torch.randn(3, 196, 5)
    grid = x.transpose(1, 2).reshape(3, 5, 14, 14)  # (B, C, H, W), raster tokens
    ref = F.pixel_unshuffle(grid, s).flatten(2).transpose(1, 2)  # torch's own: (B, M, C s^2)
    y = token_shuffle(x, s)
    assert torch.equal(y, ref)
    assert torch.equal(token_unshuffle(y, s), x)  # exact identity


def test_window_positions_are_the_windows():
    pos = window_positions(16, 2)  # 4x4 grid, 2x2 windows
    assert pos.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def _pair():
    torch.manual_seed(0)
    plain = tw.create("raster-ar", num_tokens=16, codebook_size=12, d_model=16, layers=2, heads=2)
    ts = tw.create("token-shuffle", num_tokens=16, codebook_size=12, d_model=16, layers=2, heads=2, shuffle=1)
    ts.load_state_dict(plain.state_dict())
    return plain.eval(), ts.eval()


@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_shuffle_one_is_the_plain_raster_model(cfg):
    plain, ts = _pair()
    assert set(ts.state_dict()) == set(plain.state_dict())  # no extra parameters at s = 1
    plain.cfg = ts.cfg = cfg
    a, b = plain.generate([0, 3, 7], steps=1, seed=5), ts.generate([0, 3, 7], steps=1, seed=5)
    assert torch.equal(a.tokens, b.tokens) and a.nfe == b.nfe == 16
    tok, lab = torch.randint(0, 12, (4, 16)), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)
    la = plain.loss(tok, lab)
    torch.manual_seed(1)
    assert torch.equal(la, ts.loss(tok, lab))


def test_cached_window_generation_equals_brute_force_greedy():
    """s = 2 on a 4x4 grid at a tiny temperature (greedy): the KV-cached loop of ``generate``
    gives the tokens that re-running the whole prefix without a cache gives, window by window."""
    torch.manual_seed(0)
    g = tw.create("token-shuffle", num_tokens=16, codebook_size=12, d_model=16, layers=2, heads=2, shuffle=2, temperature=1e-6).eval()
    out = g.generate([2, 5], steps=1, seed=0)
    assert out.nfe == 4
    K = g.codebook_size
    with torch.no_grad():
        lab = g.model.model.embed_tokens(g.label_ids(torch.tensor([2, 5]))[:, None])
        done = torch.empty(2, 0, dtype=torch.long)  # shuffled order
        for _ in range(4):
            x = torch.cat([lab, g.merge(done)], 1) if done.shape[1] else lab
            h = g.model.model(inputs_embeds=x).last_hidden_state[:, -1:]
            done = torch.cat([done, g.window_logits(h)[:, 0, :, :K].argmax(-1)], 1)
    raster = torch.empty_like(done)
    for m, pos in enumerate(window_positions(16, 2).tolist()):  # unshuffle by a loop
        for j, p in enumerate(pos):
            raster[:, p] = done[:, 4 * m + j]
    assert torch.equal(out.tokens, raster)


def test_teacher_forced_loss_sees_only_earlier_windows():
    torch.manual_seed(0)
    g = tw.create("token-shuffle", num_tokens=16, codebook_size=12, d_model=16, layers=1, heads=2, shuffle=2, class_dropout=0.0).eval()
    a = torch.randint(0, 12, (1, 16))
    b = a.clone()
    b[0, window_positions(16, 2)[3]] = (a[0, window_positions(16, 2)[3]] + 1) % 12  # change the last window only
    lab = g.model.model.embed_tokens(g.label_ids(torch.tensor([1]))[:, None])
    with torch.no_grad():
        h = [g.model.model(inputs_embeds=torch.cat([lab, g.merge(g._shuffled(t))[:, :-1]], 1)).last_hidden_state for t in (a, b)]
    assert torch.equal(h[0], h[1])  # the last window is never an input


def test_scene_tiling_against_a_loop():
    items = torch.arange(8 * 49).reshape(8, 49)  # 2 scenes of 4 items, 7x7 each
    scene = tile_ids(items, 2)
    ref = torch.empty(2, 14, 14, dtype=torch.long)
    for b in range(2):
        for k in range(4):
            r, c = divmod(k, 2)
            ref[b, 7 * r : 7 * r + 7, 7 * c : 7 * c + 7] = items[4 * b + k].reshape(7, 7)
    assert torch.equal(scene, ref.reshape(2, 196))
    assert torch.equal(untile_ids(scene, 2), items)
    img = torch.rand(2, 1, 56, 56)
    assert torch.equal(scene_items(img)[3], img[0, :, 28:, 28:])


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="shuffle must divide the token grid side 14, got 4"):
        tw.create("token-shuffle", num_tokens=196, codebook_size=12, d_model=32, heads=2, shuffle=4)
    with pytest.raises(ValueError, match="shuffle must divide"):
        token_shuffle(torch.randn(1, 196, 2), 4)
    with pytest.raises(ValueError, match="shuffle"):
        tw.create("token-shuffle", num_tokens=196, codebook_size=12, d_model=32, heads=2, shuffle=0)
    with pytest.raises(ValueError, match="d_model must be divisible by shuffle"):
        tw.create("token-shuffle", num_tokens=196, codebook_size=12, d_model=30, heads=2, shuffle=2)
    with pytest.raises(ValueError, match="tokens must form a square grid"):
        tw.create("token-shuffle", num_tokens=15, codebook_size=12, d_model=32, heads=2, shuffle=1)
