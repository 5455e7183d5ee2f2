"""Each reducer's defining property against a reference written differently (loops, closed forms)."""

import math

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw
from tokenworks.compress import attach_vit, information_density
from tokenworks.compress.scene_vit import SceneViT, SceneViTConfig


def _cos_dist(a, b):
    return 1.0 - float(F.cosine_similarity(a, b, dim=0))


def _k_center_loop(x, first, k):
    """Greedy k-center by an explicit loop over candidates and chosen centers."""
    chosen = [first]
    while len(chosen) < k:
        best, best_d = None, -1.0
        for i in range(len(x)):
            if i in chosen:
                continue
            d = min(_cos_dist(x[i], x[c]) for c in chosen)
            if d > best_d + 1e-7:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def test_todre_is_greedy_k_center_from_the_top_cls_token():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 30, 6, generator=g)
    attn = torch.rand(2, 30, generator=g)
    out = tw.create("todre", budget=7)(x, attention=attn)
    for b in range(2):
        want = _k_center_loop(x[b], int(attn[b].argmax()), 7)
        assert sorted(want) == out.kept[b].tolist()


def test_divprune_starts_at_the_most_isolated_token():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 25, 5, generator=g)
    out = tw.create("divprune", budget=6)(x)
    for b in range(2):
        iso = max(range(25), key=lambda i: min(_cos_dist(x[b, i], x[b, j]) for j in range(25) if j != i))
        assert sorted(_k_center_loop(x[b], iso, 6)) == out.kept[b].tolist()


def _tome_naive(x, r):
    """One round of bipartite soft matching with lists: A = even, B = odd positions."""
    A, B = list(range(0, len(x), 2)), list(range(1, len(x), 2))
    edges = []
    for a in A:
        sims = [float(F.cosine_similarity(x[a], x[bb], dim=0)) for bb in B]
        j = max(range(len(B)), key=lambda t: (sims[t], -t))
        edges.append((sims[j], -a, a, B[j]))
    edges.sort(reverse=True)
    groups = {i: [i] for i in range(len(x))}
    for _, _, a, bb in edges[:r]:
        groups[bb] += groups.pop(a)
    return sorted((sorted(v) for v in groups.values()), key=min)


@pytest.mark.parametrize("r", [1, 5, 10])
def test_tome_one_round_equals_naive_bipartite_matching(r):
    g = torch.Generator().manual_seed(r)
    x = torch.randn(2, 20, 4, generator=g)
    out = tw.create("tome", budget=20 - r)(x)
    for b in range(2):
        groups = _tome_naive(x[b], r)
        got = [sorted((out.source[b] == s).nonzero().flatten().tolist()) for s in range(int(out.counts[b]))]
        assert sorted(got, key=min) == groups
        assert float(out.sizes[b].sum()) == 20  # sizes sum to N
        for s, grp in enumerate(got):
            torch.testing.assert_close(out.tokens[b, s], x[b, grp].mean(0))


def test_tome_several_rounds_merge_size_weighted():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 40, 4, generator=g)
    out = tw.create("tome", budget=5)(x)  # 40 -> 20 -> 10 -> 5: three rounds
    assert int(out.counts[0]) == 5 and float(out.sizes.sum()) == 40
    # the same as running one round at a time, carrying sizes (the public API's sizes argument)
    t, sizes = x, None
    for n in (20, 10, 5):
        step = tw.create("tome", budget=n)(t, sizes=sizes)
        t, sizes = step.tokens, step.sizes
    torch.testing.assert_close(sorted(out.sizes[0].tolist()), sorted(sizes[0].tolist()))
    torch.testing.assert_close(out.tokens[0][out.sizes[0].argsort()], t[0][sizes[0].argsort()], atol=1e-5, rtol=1e-5)


def test_proportional_attention_keeps_identical_tokens_exact(scenes):
    """A scene of identical patches: ToMe (or pooling) merges copies of one token, and with log-size
    attention the model's logits are those of the unreduced model (without it they are not)."""
    torch.manual_seed(0)
    vit = SceneViT(SceneViTConfig(dim=16, depth=3, heads=2)).eval().requires_grad_(False)
    vit.pos_embed.zero_()
    img = torch.full((2, 1, 56, 56), 0.3)
    img[1] = 0.7
    ref = vit(img)
    for name in ("tome", "spatial_pool"):
        with attach_vit(vit, tw.create(name, budget=0.05), layer=1) as h:
            got = vit(img)
        assert h.kept[0].tolist() in ([10, 10], [9, 9])
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the control: the same merge without the size term (attention gets no mask) differs
    with attach_vit(vit, tw.create("tome", budget=0.05), layer=1):
        for blk in vit.blocks:
            del blk.attn.forward  # the model's own attention: reduced tokens, no log-size term
        got = vit(img)
    assert not torch.allclose(got, ref, atol=1e-3)


def test_spatial_pool_equals_avg_pool2d_when_it_divides():
    x = torch.randn(2, 14 * 14, 3)
    out = tw.create("spatial_pool", budget=49)(x, grid=(14, 14))
    grid = x.transpose(1, 2).reshape(2, 3, 14, 14)
    want = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.tokens, want)


def test_correlation_density_and_ratio_by_hand():
    # 8 tokens; token 3 repeats token 0, token 5 repeats token 1 (cos 1), token 6 is near token 2
    e = torch.eye(8)
    t = e.clone()
    t[3] = 2 * e[0]
    t[5] = e[1]
    t[6] = e[2] + 0.1 * e[6]  # cos = 1 / sqrt(1.01) = 0.995 to token 2
    x = torch.stack([t, e])  # row 1: all distinct
    rho = information_density(x, torch.ones(2, 8, dtype=torch.bool), threshold=0.9)
    torch.testing.assert_close(rho, torch.tensor([1 - 3 / 8, 1.0]))
    red = tw.create("token_correlation", budget=0.5, reference_density=0.8, threshold=0.9)
    out = red(x, attention=torch.ones(2, 8))
    # ratios 0.5 * (5/8) / 0.8 = 0.390625 -> ceil(3.125) = 4; 0.5 * 1 / 0.8 = 0.625 -> 5
    assert out.counts.tolist() == [math.ceil(8 * 0.5 * (5 / 8) / 0.8), math.ceil(8 * 0.625)] == [4, 5]
    fixed = tw.create("token_correlation", budget=0.5, adaptive=False)(x, attention=torch.ones(2, 8))
    assert fixed.counts.tolist() == [4, 4]


def test_correlation_sampling_follows_cls_attention():
    """Tokens are drawn in proportion to [CLS] attention: over seeds, a token with 4x the
    attention of the others is kept about as often as Gumbel-top-k (Plackett-Luce) says."""
    attn = torch.ones(1, 10)
    attn[0, 3] = 4.0
    x = torch.randn(1, 10, 4)
    hits = sum(3 in tw.create("token_correlation", budget=0.1, adaptive=False, seed=s)(x, attention=attn).kept[0].tolist()
               for s in range(400))  # fmt: skip
    assert abs(hits / 400 - 4 / 13) < 0.07


def test_cls_attention_from_the_hook_equals_the_full_attention_matrix(tiny_vit, scenes):
    img, _ = scenes
    blk = tiny_vit.blocks[0]
    x = torch.cat([tiny_vit.cls_token.expand(len(img), -1, -1), tiny_vit.patch_embed((img - 0.5) / 0.5)], 1) + tiny_vit.pos_embed
    h = blk.norm1(x)
    q, k, _ = blk.attn.qkv(h).reshape(len(img), 197, 3, 2, 8).permute(2, 0, 3, 1, 4)
    full = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1)  # (B, H, T, T) eager
    want = full[:, :, 0, 1:].mean(1).topk(20).indices.sort(1).values
    with attach_vit(tiny_vit, tw.create("cls_attention", budget=20), layer=1):
        seen = {}
        hook = tiny_vit.blocks[1].register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
        tiny_vit(img)
        hook.remove()
    assert seen["x"].shape[1] == 21
    got = tw.create("cls_attention", budget=20)(x[:, 1:], attention=full[:, :, 0, 1:].mean(1)).kept
    assert torch.equal(got, want)


def test_attach_errors_name_the_argument(tiny_vit):
    with pytest.raises(TypeError, match="model must be a timm-style VisionTransformer"):
        attach_vit(torch.nn.Linear(3, 3), tw.create("tome"))
    with pytest.raises(ValueError, match="layer"):
        attach_vit(tiny_vit, tw.create("tome"), layer=3)
    with pytest.raises(ValueError, match="layer"):
        attach_vit(tiny_vit, tw.create("cls_attention"), layer=0)  # no attention before block 0
    with pytest.raises(TypeError, match="reducer"):
        attach_vit(tiny_vit, "tome")

    class NoMask(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(4, 12)

        def forward(self, x):
            return x

    class Blk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = NoMask()

    m = torch.nn.Module()
    m.blocks = torch.nn.Sequential(Blk(), Blk())
    with pytest.raises(TypeError, match="attn_mask"):
        attach_vit(m, tw.create("tome"), layer=1)
    with pytest.raises(ValueError, match="grid"):
        tw.create("spatial_pool")(torch.randn(1, 10, 3))
    with pytest.raises(ValueError, match="attention"):
        tw.create("cls_attention")(torch.randn(1, 10, 3))
    with pytest.raises(ValueError, match="tokens"):
        tw.create("tome")(torch.randn(1, 0, 3))
    with pytest.raises(ValueError, match="relevance_layer"):
        attach_vit(tiny_vit, tw.create("todre", relevance_layer=1), layer=1)


def test_detach_restores_the_model(tiny_vit, scenes):
    img, _ = scenes
    ref = tiny_vit(img)
    h = attach_vit(tiny_vit, tw.create("tome", budget=0.1), layer=1)
    assert not torch.allclose(tiny_vit(img), ref)
    h.detach()
    assert torch.equal(tiny_vit(img), ref)
    assert all("forward" not in b.attn.__dict__ for b in tiny_vit.blocks)


def test_todre_second_stage_prunes_at_its_layer(tiny_vit, scenes):
    img, _ = scenes
    with attach_vit(tiny_vit, tw.create("todre", budget=0.25, relevance_layer=2, relevance_keep=0.5), layer=1) as h:
        tiny_vit(img)
    assert [k.tolist() for k in h.kept] == [[49] * 6, [25] * 6]
