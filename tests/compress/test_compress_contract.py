"""Registry-wide contract of token reducers: tw.methods(kind="token_reducer")."""

import math

import pytest
import torch

import tokenworks as tw
from tokenworks.compress import attach_vit

REDUCERS = [m.name for m in tw.methods(kind="token_reducer")]


def _inputs(B=3, h=6, w=6, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, h * w, D, generator=g)
    attn = torch.rand(B, h * w, generator=g).softmax(-1)
    return x, attn, (h, w)


def _call(name, budget, x, attn, grid, **kw):
    return tw.create(name, budget=budget)(x, attention=attn, grid=grid, **kw)


def test_every_cmp_method_is_a_reducer_or_a_resampler():
    # CMP inside generators (issue 13) has its own kinds and contracts (tests/generate, test_follow_flow.py)
    inside_generators = {"dit_attention", "image_generator", "text_token_selector"}
    cmp = {m.name for m in tw.methods(family="CMP") if m.kind not in inside_generators}
    assert {m.name for m in tw.methods(family="CMP") if m.kind in inside_generators} == {
        "full-attention", "window-attention", "pt-dit", "fit", "token-shuffle", "follow-the-flow"}
    # P59 (IMA, an analysis paper: family ANA) registers its FFN skipping as a token reducer too
    assert cmp | {"ima_ffn_skip"} == set(REDUCERS) | {m.name for m in tw.methods(kind="token_resampler")}
    assert {"todre", "token_correlation", "tome", "spatial_pool", "random_prune", "cls_attention", "divprune", "fastv", "ima_ffn_skip"} <= set(REDUCERS)


@pytest.mark.parametrize("name", REDUCERS)
@pytest.mark.parametrize("budget", [0.5, 0.11, 5])
def test_shapes_sizes_and_map(name, budget):
    x, attn, grid = _inputs()
    if name == "token_correlation" and isinstance(budget, int):
        with pytest.raises(ValueError, match="budget must be a fraction"):
            tw.create(name, budget=budget)
        return
    out = _call(name, budget, x, attn, grid)
    B, N, D = x.shape
    M = out.tokens.shape[1]
    assert out.tokens.shape == (B, M, D) and out.mask.shape == (B, M) and out.sizes.shape == (B, M)
    assert out.tokens.dtype == x.dtype and torch.isfinite(out.tokens).all()
    assert torch.equal(out.mask.sum(1), out.counts)
    # every slot is the size-weighted mean of the input tokens the merge map sends to it
    for b in range(B):
        for s in range(int(out.counts[b])):
            src = (out.source[b] == s).nonzero().flatten()
            assert len(src) >= 1 and out.sizes[b, s] == len(src)
            torch.testing.assert_close(out.tokens[b, s], x[b, src].mean(0))
            assert out.kept[b, s] == src.min()
    want = budget if isinstance(budget, int) else math.ceil(N * budget)
    if name == "spatial_pool":
        assert (out.counts <= want).all()  # the largest grid within the budget
    elif name != "token_correlation":  # its count is per image (tested in test_compress_references)
        assert (out.counts == want).all()


@pytest.mark.parametrize("name", REDUCERS)
def test_keep_all_changes_nothing(name, tiny_vit, scenes):
    x, attn, grid = _inputs()
    # token_correlation scales the budget by each image's density: fixed, it keeps all
    red = tw.create(name, budget=1.0, **({"adaptive": False} if name == "token_correlation" else {}))
    out = red(x, attention=attn, grid=grid)
    assert out.identity and out.tokens is x
    if "vit" not in red.hosts:
        return  # LLaVA-only (FastV, P59): keep-all on that host is tested in test_llava_host.py
    img, _ = scenes
    ref = tiny_vit(img)
    with attach_vit(tiny_vit, red, layer=1) as h:
        got = tiny_vit(img)
    assert torch.equal(got, ref) and h.kept[0].tolist() == [196] * len(img)


@pytest.mark.parametrize("name", REDUCERS)
def test_batch_rows_equal_rows_alone(name):
    """Rows of different real lengths (padding mask) reduce as each row alone."""
    x, attn, grid = _inputs(B=3)
    mask = torch.ones(3, 36, dtype=torch.bool)
    mask[1, 30:] = False
    mask[2, 20:] = False
    if name == "spatial_pool":
        pytest.skip("pools the unreduced grid only (no padding)")
    red = tw.create(name, budget=0.25)
    out = red(x, mask=mask, attention=attn * mask)
    for b in range(3):
        n = int(mask[b].sum())
        alone = red(x[b : b + 1, :n], attention=attn[b : b + 1, :n])
        k = int(alone.counts[0])
        assert int(out.counts[b]) == k
        torch.testing.assert_close(out.tokens[b, :k], alone.tokens[0])
        assert not out.mask[b, k:].any()


@pytest.mark.parametrize("name", REDUCERS)
def test_in_vit_rows_equal_rows_alone_and_no_nan(name, tiny_vit, scenes):
    img, _ = scenes
    kw = {"reference_density": 0.3} if name == "token_correlation" else {}
    if "vit" not in tw.create(name).hosts:  # LLaVA only: the same check on that host is in test_llava_host.py
        with pytest.raises(ValueError, match="LLaVA"):
            attach_vit(tiny_vit, tw.create(name, budget=0.11), layer=1)
        return
    with attach_vit(tiny_vit, tw.create(name, budget=0.11, **kw), layer=1) as h:
        batch = tiny_vit(img)
        kept = h.kept[0].clone()
        alone = torch.cat([tiny_vit(img[i : i + 1]) for i in range(len(img))])
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch, alone, atol=2e-5, rtol=1e-4)
    assert (kept <= 196).all() and (kept >= 1).all()


@pytest.mark.parametrize("name", REDUCERS)
def test_fixed_seed_same_output(name):
    x, attn, grid = _inputs(seed=5)
    a = _call(name, 0.25, x, attn, grid)
    b = _call(name, 0.25, x.clone(), attn.clone(), grid)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.source, b.source)


@pytest.mark.parametrize("name", REDUCERS)
def test_bad_budgets_name_the_argument(name):
    x, attn, grid = _inputs()
    for bad in (0.0, 1.5, -1, 0, True, "half"):
        with pytest.raises((ValueError, TypeError), match="budget"):
            tw.create(name, budget=bad)
    if name != "token_correlation":
        with pytest.raises(ValueError, match="budget.*only 36"):
            _call(name, 37, x, attn, grid)
