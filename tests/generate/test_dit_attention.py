"""DiT attention variants (``methods(kind="dit_attention")``): the registry-wide contract, and
each variant against an independent reference written with torch's own attention
(``nn.MultiheadAttention`` / ``F.scaled_dot_product_attention`` with masks built by loops)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tokenworks as tw
from tokenworks.generate.attention import attention_flops, window_attention
from tokenworks.generate.attention.base import Attention

VARIANTS = [m.name for m in tw.methods(kind="dit_attention")]
SMALL = {"window-attention": {"window": 2}, "pt-dit": {"proxy_window": 2, "window": 2}, "fit": {"group": 2, "latents": 2}}
D, HEADS = 16, 2


def _backbone(name, grid=(4, 4), layers=2, **kw):
    torch.manual_seed(0)
    return tw.create(name, **(SMALL.get(name, {}) | kw)).setup(D, HEADS, layers, grid)


def _mha(att: Attention) -> nn.MultiheadAttention:
    """torch's attention carrying the weights of ours (q; [k; v] packed in that order)."""
    m = nn.MultiheadAttention(D, HEADS, batch_first=True)
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.cat([att.q.weight, att.kv.weight]))
        m.in_proj_bias.copy_(torch.cat([att.q.bias, att.kv.bias]))
        m.out_proj.weight.copy_(att.out.weight)
        m.out_proj.bias.copy_(att.out.bias)
    return m


@pytest.mark.parametrize("name", VARIANTS)
def test_contract_shapes_grad_seed(name):
    bb = _backbone(name)
    x, mod = torch.randn(3, 16, D), torch.randn(3, 6 * D)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    y = bb(x, mod, {"g": g()})
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(y, bb(x, mod, {"g": g()}))  # a seed fixes the random proxies
    y.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bb.parameters()), "gradient reaches every parameter"


def _region_mask(H, W, w, s):
    """(L, L) may-attend mask of (shifted) windows, by a loop over token pairs: two tokens share a
    window when their rows and columns fall in the same band [s + k w, s + (k + 1) w) (bands cut at
    s; the partial bands at the borders are windows of their own, never wrapped around)."""
    L = H * W
    m = torch.zeros(L, L, dtype=torch.bool)
    band = lambda r: (r - s) // w  # noqa: E731  (Python floors negatives: the top partial band is -1)
    for a, b in itertools.product(range(L), range(L)):
        (ra, ca), (rb, cb) = divmod(a, W), divmod(b, W)
        m[a, b] = band(ra) == band(rb) and band(ca) == band(cb)
    return m


@pytest.mark.parametrize("grid,w,s", [((4, 4), 2, 0), ((4, 4), 2, 1), ((6, 6), 3, 1), ((4, 8), 4, 2), ((3, 3), 3, 0), ((4, 4), 1, 0)])
def test_window_attention_is_masked_full_attention(grid, w, s):
    torch.manual_seed(0)
    att = Attention(D, HEADS)
    x = torch.randn(2, grid[0] * grid[1], D)
    ours = window_attention(att, x, grid, w, s)
    ref = _mha(att)(x, x, x, attn_mask=~_region_mask(*grid, w, s), need_weights=False)[0]  # True = blocked in torch's MHA
    assert torch.allclose(ours, ref, atol=1e-5)


def test_pt_dit_with_windows_of_one_is_full_attention():
    """proxy_window = window = 1: every token is its own proxy, so the proxies' self-attention is
    full self-attention over all tokens; the layer's mixing is then
    CA(h, h + SA(h)) + WA1(h + CA(...)) with WA1 = attention over one token = out(v(.))."""
    bb = _backbone("pt-dit", proxy_window=1, window=1, layers=1)
    h = torch.randn(2, 16, D)
    ours = bb.mix(0, h, {"grid": (4, 4), "g": torch.Generator().manual_seed(0)})
    sa, ca, wa = (_mha(m[0]) for m in (bb.proxy_attn, bb.cross, bb.win))
    p = h + sa(h, h, h, need_weights=False)[0]
    inj = ca(h, p, p, need_weights=False)[0]
    y = (h + inj).reshape(-1, 1, D)  # window 1: each token alone
    assert torch.allclose(ours, inj + wa(y, y, y, need_weights=False)[0].reshape(h.shape), atol=1e-5)


def test_pt_dit_proxies_are_one_token_per_window():
    from tokenworks.generate.attention import select_proxies

    h = torch.arange(16.0).reshape(1, 16, 1).repeat(4, 1, 1)
    p = select_proxies(h, (4, 4), 2, "random", torch.Generator().manual_seed(0))[..., 0]  # (4, 4 windows)
    windows = [{0, 1, 4, 5}, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}]
    assert all(int(p[b, k]) in windows[k] for b in range(4) for k in range(4))
    assert len({tuple(r.tolist()) for r in p}) > 1  # drawn per image
    assert torch.allclose(select_proxies(h, (4, 4), 2, "mean", None)[0, :, 0], torch.tensor([2.5, 4.5, 10.5, 12.5]))


def _reference_stack(x, mod, bb, attn_of_layer):
    """A DiT stack written out: adaLN-single modulation, pre-norm, ``attn_of_layer(i, h)``, MLP."""
    for i in range(bb.layers):
        s1, c1, g1, s2, c2, g2 = (mod.reshape(-1, 6, D) + bb.table[i]).unbind(1)
        h = F.layer_norm(x, (D,), eps=1e-6) * (1 + c1[:, None]) + s1[:, None]
        x = x + g1[:, None] * attn_of_layer(i, h)
        h = F.layer_norm(x, (D,), eps=1e-6) * (1 + c2[:, None]) + s2[:, None]
        x = x + g2[:, None] * bb.mlp[i](h)
    return x


@pytest.mark.parametrize("group,group_w", [(4, 0), (2, 0), (1, 4), (4, 2)])
def test_fit_without_write_is_local_attention_in_groups(group, group_w):
    """The precise equivalence: a FIT stack whose write projections are zero equals the plain DiT
    stack (same MLPs and modulation) whose attention runs separately inside each group; with
    one group (group 4 on the 4x4 grid) that is a plain full-attention transformer. The
    reference loops over groups with torch's attention."""
    bb = _backbone("fit", group=group, group_w=group_w, layers=2)
    with torch.no_grad():
        for w in bb.write:
            w.out.weight.zero_()
            w.out.bias.zero_()
    x, mod = torch.randn(2, 16, D), torch.randn(2, 6 * D)
    gh, gw = group, group_w or group
    members = {}
    for t in range(16):
        r, c = divmod(t, 4)
        members.setdefault((r // gh, c // gw), []).append(t)

    def local(i, h):
        mha = _mha(bb.local[i])
        out = torch.zeros_like(h)
        for idx in members.values():
            hg = h[:, idx]
            out[:, idx] = mha(hg, hg, hg, need_weights=False)[0]
        return out

    assert torch.allclose(bb(x, mod), _reference_stack(x, mod, bb, local), atol=1e-5)
    if len(members) == 1:
        full = tw.create("full-attention").setup(D, HEADS, 2, (4, 4))
        full.load_state_dict({k: v for k, v in bb.state_dict().items() if k.split(".")[0] in ("mlp", "table")} |
                             {k.replace("local", "attn"): v for k, v in bb.state_dict().items() if k.startswith("local.")})  # fmt: skip
        assert torch.allclose(bb(x, mod), full(x, mod), atol=1e-5)


def test_fit_write_matters():
    bb = _backbone("fit", group=2, layers=2)
    x, mod = torch.randn(2, 16, D), torch.randn(2, 6 * D)
    y = bb(x, mod)
    with torch.no_grad():
        for w in bb.write:
            w.out.weight.zero_()
    assert not torch.allclose(y, bb(x, mod), atol=1e-4)


@pytest.mark.parametrize("grid,group,group_w,m,layers", [((8, 8), 4, 0, 2, 1), ((8, 8), 2, 4, 3, 2), ((4, 12), 4, 3, 1, 3)])
def test_fit_flops_follow_the_formula(grid, group, group_w, m, layers):
    """Per layer and image, with L tokens, S per group, M = G m latents, width d:
    attention (the cores) 4 d (L S + 2 L m + M^2); all matmuls 32 (L + M) d^2 + that
    (token side: local qkv/out 8, read kv 4, write q/out 4, MLP 16; latent side: read q/out 4,
    global attention 8, global MLP 16, write kv 4; in units of d^2 per token)."""
    bb = _backbone("fit", grid=grid, group=group, group_w=group_w, latents=m, layers=layers)
    B, L = 2, grid[0] * grid[1]
    S = group * (group_w or group)
    M = L // S * m
    _, total, att = attention_flops(lambda: bb(torch.randn(B, L, D), torch.randn(B, 6 * D)))
    want_att = layers * 4 * D * (L * S + 2 * L * m + M * M)
    assert att == B * want_att
    assert total == B * (want_att + layers * 32 * (L + M) * D * D)


def test_full_attention_flops_are_quadratic():
    for side in (4, 8):
        L = side * side
        bb = _backbone("full-attention", grid=(side, side), layers=1)
        _, total, att = attention_flops(lambda: bb(torch.randn(1, L, D), torch.randn(1, 6 * D)))
        assert att == 4 * L * L * D and total == att + 24 * L * D * D


@pytest.mark.parametrize("name,opts,grid,arg", [
    ("window-attention", {"window": 3}, (4, 4), "window"),
    ("window-attention", {"window": 0}, (4, 4), "window"),
    ("pt-dit", {"proxy_window": 3, "window": 2}, (4, 4), "proxy_window"),
    ("pt-dit", {"proxy_window": 2, "window": 3}, (4, 4), "window"),
    ("pt-dit", {"proxy": "max"}, (4, 4), "proxy"),
    ("fit", {"group": 3}, (4, 4), "group"),
    ("fit", {"group": 2, "group_w": 3}, (4, 4), "group_w"),
    ("fit", {"latents": 0}, (4, 4), "latents"),
])  # fmt: skip
def test_bad_options_name_the_argument(name, opts, grid, arg):
    with pytest.raises(ValueError, match=rf"^{arg} ") as e:
        tw.create(name, **opts).setup(D, HEADS, 1, grid)
    assert "\n" not in str(e.value)


def test_dit_bad_input_names_the_argument():
    for kw, arg in [({"num_tokens": 50}, "num_tokens"), ({"num_tokens": 49, "upsample": 2}, "upsample"),
                    ({"attention": "fsq"}, "attention"), ({"attention": "window-attention", "attention_options": {"window": 3}, "num_tokens": 16}, "window")]:  # fmt: skip
        with pytest.raises(ValueError, match=rf"^{arg} "):
            tw.create("dit", token_dim=4, d_model=16, heads=2, **({"num_tokens": 49} | kw))


def test_dit_upsampled_tokens_pool_back_exactly():
    from tokenworks.generate.dit import pool_latents, upsample_latents

    z = torch.randn(3, 49, 4)
    up = upsample_latents(z, 2)
    assert up.shape == (3, 196, 4) and torch.equal(pool_latents(up, 2), z)
    grid = up.reshape(3, 14, 14, 4)
    assert torch.equal(grid[:, 2 * 3, 2 * 5 + 1], z.reshape(3, 7, 7, 4)[:, 3, 5])  # each token fills its 2x2 block
