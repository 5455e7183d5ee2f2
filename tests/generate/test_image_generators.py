"""Image generators: the registry-wide contract (over ``methods(kind="image_generator")``), bad
input, MaskGIT's schedule, completion, the AR likelihood, ENAT's cache and FLOPs."""

from __future__ import annotations

import math

import pytest
import torch

import tokenworks as tw
from tokenworks.metrics import count_flops

GENERATORS = [m.name for m in tw.methods(kind="image_generator")]
N, K = 9, 12


def _gen(name, **kw):
    torch.manual_seed(0)
    g = tw.create(name, num_tokens=N, codebook_size=K, token_dim=3, d_model=32, layers=2, heads=2, **kw)
    return g.eval()


def _data(g, B=4):
    if g.continuous:
        return torch.rand(B, N, 3) * 2 - 1
    return torch.randint(0, K, (B, N))


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_contract_generate_train_step_save_load(name, cfg, tmp_path):
    g = _gen(name, cfg=cfg)
    out = g.generate([0, 3, 9], steps=3, seed=1)
    want = (3, N, 3) if g.continuous else (3, N)
    assert tuple(out.tokens.shape) == want and out.nfe >= 1 and out.seconds > 0
    assert torch.isfinite(out.tokens.float()).all()
    if not g.continuous:
        assert int(out.tokens.min()) >= 0 and int(out.tokens.max()) < K
    again = g.generate([0, 3, 9], steps=3, seed=1).tokens
    assert torch.equal(out.tokens, again)  # deterministic by seed
    other = g.generate([0, 3, 9], steps=3, seed=2).tokens
    assert not torch.equal(out.tokens, other)
    g.train()
    loss = g.loss(_data(g), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    with_grad = [n for n, p in g.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) >= 0.8 * len(list(g.parameters())), "gradient reaches most parameters"
    g.eval()
    g.save(tmp_path / "g")
    h = tw.generate.ImageGenerator.load(tmp_path / "g")
    for p in g.parameters():  # compare at the stored precision
        p.data = p.data.half().float()
    a, b = g.generate([1, 2], steps=2, seed=0).tokens, h.generate([1, 2], steps=2, seed=0).tokens
    assert torch.allclose(a.float(), b.float(), atol=1e-4)


@pytest.mark.parametrize("name", GENERATORS)
def test_bad_input_names_the_argument(name):
    g = _gen(name)
    for labels in ([10], [-1], torch.tensor([0.5]), [], "cat"):
        with pytest.raises(ValueError, match="labels"):
            g.generate(labels, steps=2)
    for steps in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="steps"):
            g.generate([0], steps=steps)
    with pytest.raises(ValueError, match="d_model"):
        tw.create(name, d_model=30, heads=4)


def test_continuous_generators_need_an_fsq_tokenizer():
    from tokenworks.generate.latents import encode_latents

    tok = tw.create("patch2d", image_size=28, channels=1, latent_dim=8, quantizer="vq", quantizer_options={"codebook_size": 16})
    with pytest.raises(ValueError, match="tokenizer must use the fsq quantizer"):
        encode_latents(tok, torch.rand(2, 1, 28, 28))


def test_maskgit_reveals_the_hand_computed_schedule():
    from tokenworks.generate import mask_schedule

    # N=16, 4 steps: floor(16 cos(pi/2 * s/4)) = 14, 11, 6, then all revealed
    assert mask_schedule(16, 4) == [14, 11, 6, 0]
    g = tw.create("maskgit", num_tokens=16, codebook_size=K, d_model=32, layers=1, heads=2).eval()
    seen = []
    orig = g.logits

    def spy(labels, ids):
        seen.append(int((ids == g.MASK).sum(1)[0]))
        return orig(labels, ids)

    g.logits = spy
    out = g.generate([1, 2], steps=4, seed=0)
    assert seen == [16, 14, 11, 6] and out.nfe == 4
    assert not (out.tokens == g.MASK).any()


@pytest.mark.parametrize("name", ["maskgit", "mar", "himar"])
def test_one_step_with_all_tokens_kept_returns_the_input(name):
    g = _gen(name)
    x = _data(g, 3)
    out = g.complete(x, torch.ones(3, N, dtype=torch.bool), [0, 1, 2], steps=1, seed=0)
    assert torch.equal(out, x)
    keep = torch.rand(3, N) < 0.5
    part = g.complete(x, keep, [0, 1, 2], steps=2, seed=0)
    assert torch.equal(part[keep], x[keep])


def test_ar_teacher_forced_likelihood_equals_the_prior_nll():
    from tokenworks.vision.prior import prior_nll_bits

    g = _gen("raster-ar")
    ids = torch.randint(0, K, (5, N))
    ours = g.nll_bits(ids)
    ref = prior_nll_bits(g.model, ids, K)  # the null label is the prior's BOS
    assert torch.allclose(ours, ref, atol=1e-4)
    cond = g.nll_bits(ids, [1] * 5)
    assert not torch.allclose(cond, ref)


def test_ar_sampling_follows_its_own_conditionals():
    """Sampled ids (KV cache) of a model whose next token is fixed by a closed form: teacher-forced
    log-probabilities of the samples are all ~0 when the model is made deterministic."""
    g = _gen("raster-ar", temperature=1e-4)
    out = g.generate([2, 5], steps=N, seed=0).tokens
    # at temperature -> 0 sampling is greedy: each token is the argmax of the teacher-forced logits
    seq = torch.cat([g.label_ids(torch.tensor([2, 5]))[:, None], out], 1)
    with torch.no_grad():
        greedy = g.model(input_ids=seq[:, :-1]).logits[..., :K].argmax(-1)
    assert torch.equal(greedy, out)


def test_enat_cached_features_equal_a_full_masked_recomputation():
    g = _gen("enat")
    lab = torch.tensor([1, 4, 7])
    with torch.no_grad():
        tokens, feats, group, _ = g.trace(lab, 4, torch.Generator().manual_seed(0))
        # reference: one pass over the whole sequence, visibility from the reveal groups
        ref = g.encode_full(lab, tokens, group)
    encoded = torch.cat([torch.ones(3, 1, dtype=torch.bool), (group >= 0) & (group < group.max())], 1)
    assert encoded.sum() > 3
    assert torch.allclose(feats[encoded], ref[encoded], atol=1e-5)


@pytest.mark.parametrize("steps", [4, 8])
def test_enat_flops_below_maskgit_at_equal_steps(steps):
    kw = dict(num_tokens=49, codebook_size=1000, d_model=64, layers=2, heads=4)
    m = tw.create("maskgit", **kw).eval()
    e = tw.create("enat", **kw).eval()
    _, fm = count_flops(lambda: m.generate([0, 1], steps=steps, seed=0))
    _, fe = count_flops(lambda: e.generate([0, 1], steps=steps, seed=0))
    assert 0 < fe < fm
    # MaskGIT: every step runs every layer over all 50 positions
    per_tok_layer = 2 * (3 * 64 * 64 + 64 * 64 + 2 * 4 * 64 * 64) * 2 * 50  # linear FLOPs, batch 2
    assert fm >= steps * 2 * per_tok_layer
