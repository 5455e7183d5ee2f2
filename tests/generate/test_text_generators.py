"""Caption-conditioned generators: the registry-wide contract (over
``methods(kind="text_image_generator")``), masked text tokens are as if removed from the context
(reference: the physically shorter context), and bad input names the argument."""

from __future__ import annotations

import pytest
import torch

import tokenworks as tw
from tokenworks.generate.text_cond import TextContext

TEXT_GENERATORS = [m.name for m in tw.methods(kind="text_image_generator")]
N, K, E = 9, 12, 8


def _gen(name, **kw):
    torch.manual_seed(0)
    return tw.create(name, num_tokens=N, codebook_size=K, text_dim=E, d_model=16, layers=2, heads=2, **kw).eval()


def _ctx(B=3, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 3:] = False
    return TextContext(torch.randn(B, T, E, generator=g), mask)


@pytest.mark.parametrize("name", TEXT_GENERATORS)
@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_contract_generate_train_step_save_load(name, cfg, tmp_path):
    g = _gen(name, cfg=cfg)
    ctx = _ctx()
    out = g.generate(ctx, steps=3, seed=1)
    assert tuple(out.tokens.shape) == (3, N) and out.nfe >= 1 and int(out.tokens.min()) >= 0 and int(out.tokens.max()) < K
    assert torch.equal(out.tokens, g.generate(ctx, steps=3, seed=1).tokens)
    assert not torch.equal(out.tokens, g.generate(ctx, steps=3, seed=2).tokens)
    g.train()
    loss = g.loss(torch.randint(0, K, (3, N)), ctx)
    loss.backward()
    assert torch.isfinite(loss)
    with_grad = [n for n, p in g.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) >= 0.8 * len(list(g.parameters()))
    g.eval()
    g.save(tmp_path / "g")
    h = tw.generate.ImageGenerator.load(tmp_path / "g")
    for p in g.parameters():
        p.data = p.data.half().float()
    assert torch.equal(g.generate(ctx, steps=2, seed=0).tokens, h.generate(ctx, steps=2, seed=0).tokens)


@pytest.mark.parametrize("name", TEXT_GENERATORS)
@pytest.mark.parametrize("cfg", [1.0, 2.0])
def test_masked_text_tokens_are_as_if_removed(name, cfg):
    """Dropping tokens 1 and 3 by the mask gives the samples (and attention of the rest) of a
    context that never had them."""
    g = _gen(name, cfg=cfg)
    ctx = _ctx(B=2, T=5)
    ctx.mask[:] = True
    keep = torch.tensor([0, 2, 4])
    dropped = ctx.with_mask(torch.isin(torch.arange(5), keep).expand(2, 5).clone())
    short = TextContext(ctx.states[:, keep], torch.ones(2, 3, dtype=torch.bool))
    assert torch.equal(g.generate(dropped, steps=3, seed=4).tokens, g.generate(short, steps=3, seed=4).tokens)
    att = g.text_attention(dropped)
    assert torch.allclose(att[:, keep], g.text_attention(short), atol=1e-6) and torch.equal(att[:, [1, 3]], torch.zeros(2, 2))
    assert torch.allclose(att.sum(1), torch.ones(2), atol=1e-5)  # a distribution over the present tokens


@pytest.mark.parametrize("name", TEXT_GENERATORS)
def test_bad_text_names_the_argument(name):
    g = _gen(name)
    with pytest.raises(ValueError, match="text must be a TextContext"):
        g.generate([0, 1], steps=2)
    with pytest.raises(ValueError, match="text states must have 8 channels"):
        g.generate(TextContext(torch.randn(1, 3, 5), torch.ones(1, 3, dtype=torch.bool)), steps=2)
    with pytest.raises(ValueError, match="text mask must keep at least one token"):
        TextContext(torch.randn(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="steps"):
        g.generate(_ctx(), steps=0)
