"""Motion generators: the registry-wide contract, MMM editing, BAMM's causal part, M2DM's schedule."""

from __future__ import annotations

import pytest
import torch

import tokenworks as tw
from tokenworks.motion import BAMMGenerator, M2DMGenerator, MMMGenerator, code_importance, edit_mask, hybrid_mask, masking_times

GENERATORS = [m.name for m in tw.methods(kind="motion_generator")]
NEEDS_LENGTH = {"mmm", "m2dm"}


def _gen(name, **kw):
    torch.manual_seed(0)
    g = tw.create(name, codebook_size=20, max_tokens=6, d_model=32, layers=2, heads=2, **kw)
    g.set_label_embeddings(torch.randn(g.label_embeddings.shape))
    return g.eval()


@pytest.mark.parametrize("name", GENERATORS)
def test_contract_generate_and_train_step(name):
    g = _gen(name)
    lengths = torch.tensor([2, 6, 4])
    out = g.generate(["walk", "run", "kick"], lengths=lengths, steps=3, seed=1)
    assert out.tokens.shape == (3, 6) and out.nfe >= 1 and out.seconds > 0
    assert torch.equal(out.lengths, lengths)
    valid = torch.arange(6)[None] < lengths[:, None]
    assert bool((out.tokens[valid] < 20).all()) and bool((out.tokens[~valid] == g.PAD).all())
    assert torch.equal(out.tokens, g.generate(["walk", "run", "kick"], lengths=lengths, steps=3, seed=1).tokens)  # seeded
    g.train()
    loss = g.loss(torch.randint(0, 20, (3, 6)), lengths, g.conditions([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("name", GENERATORS)
def test_bad_input(name):
    g = _gen(name)
    for steps in (0, -2, 1.5):
        with pytest.raises(ValueError, match="steps must be"):
            g.generate(["walk"], lengths=[2], steps=steps)
    with pytest.raises(ValueError, match="label must be one of"):
        g.generate(["moonwalk"], lengths=[2])
    with pytest.raises(ValueError, match="lengths must be"):
        g.generate(["walk"], lengths=[7])
    if name in NEEDS_LENGTH:
        with pytest.raises(ValueError, match="lengths must be given"):
            g.generate(["walk"])
    else:  # AR / BAMM predict the end themselves
        out = g.generate(["walk", "spin"], steps=2)
        assert bool(((out.lengths >= 1) & (out.lengths <= 6)).all())


@pytest.mark.parametrize("task", ["inbetween", "prefix", "suffix"])
def test_mmm_editing_keeps_the_unmasked_tokens_exactly(task):
    g = _gen("mmm")
    lengths = torch.tensor([6, 5, 3, 6])
    tokens = torch.randint(0, 20, (4, 6))
    keep = edit_mask(lengths, 6, task, 2)
    ref = torch.zeros(4, 6, dtype=torch.bool)  # written out by hand
    for b, L in enumerate(lengths.tolist()):
        for i in range(L):
            ref[b, i] = (task in ("inbetween", "prefix") and i < 2) or (task in ("inbetween", "suffix") and i >= L - 2)
    assert torch.equal(keep, ref)
    out = g.edit(tokens, keep, ["walk"] * 4, lengths=lengths, steps=4, seed=3)
    assert torch.equal(out[keep], tokens[keep])
    valid = torch.arange(6)[None] < lengths[:, None]
    assert bool((out[valid & ~keep] < 20).all())


def test_bamm_hybrid_mask_against_a_loop():
    revealed = torch.tensor([[False, True, False, False, True], [False] * 5])
    got = hybrid_mask(revealed)
    for b in range(2):
        rev = [True] + revealed[b].tolist()
        for q in range(6):
            for k in range(6):
                want = rev[k] or (k <= q and not rev[q])
                assert bool(got[b, q, k]) == want, (b, q, k)


@pytest.mark.parametrize("reveal", [None, [1, 4]])
def test_bamm_causal_part_never_sees_later_tokens(reveal):
    g = _gen("bamm")
    S = g.seq_len
    ids = torch.randint(0, 20, (1, S))
    revealed = torch.zeros(1, S, dtype=torch.bool)
    if reveal:
        revealed[0, reveal] = True
    cond = g.conditions([3])
    base = g.logits(ids, cond, hybrid_mask(revealed))
    for j in range(S):  # perturb input token j (at position j + 1) unless it is revealed
        if revealed[0, j]:
            continue
        other = ids.clone()
        other[0, j] = (other[0, j] + 7) % 20
        new = g.logits(other, cond, hybrid_mask(revealed))
        before = [q for q in range(j + 1) if not (q >= 1 and revealed[0, q - 1])]  # causal queries up to position j
        torch.testing.assert_close(new[0, before], base[0, before], rtol=0, atol=0)
        assert not torch.allclose(new[0, j + 1], base[0, j + 1])  # the position itself does change


def test_m2dm_schedule_masks_in_order_of_importance():
    g = _gen("m2dm", beta=3.0)
    counts = torch.tensor([50, 1, 30, 7, 7, 100, 0, 12, 3, 9, 60, 2, 5, 4, 8, 20, 6, 11, 13, 1])
    g.set_code_counts(counts)
    w = g.code_weight
    # rarer code -> more important, ties equal (reference: a sort by count)
    order = sorted(range(20), key=lambda c: -counts[c].item())
    assert all(w[a] <= w[b] for a, b in zip(order, order[1:]))
    assert w[3] == w[4] and w[1] == w[19]
    tokens = torch.tensor([[5, 0, 10, 2, 7, 1]])
    lengths = torch.tensor([6])
    u = torch.full((1, 6), 0.5)  # equal draws: only importance decides
    ranked = torch.sort(w[tokens[0]]).indices.tolist()  # least important first
    for t in torch.linspace(0.01, 0.99, 40):
        masked = g.forward_mask(tokens, lengths, t, u)[0]
        k = int(masked.sum())
        assert sorted(torch.nonzero(masked)[:, 0].tolist()) == sorted(ranked[:k])
    tau = masking_times(u, w[tokens], 3.0)[0]
    assert torch.equal(tau.argsort(), torch.sort(w[tokens[0]]).indices)


@pytest.mark.parametrize("how", ["uniform-option", "equal-importance"])
def test_m2dm_uniform_importance_is_the_uniform_schedule(how):
    g = _gen("m2dm", importance="uniform") if how == "uniform-option" else _gen("m2dm", beta=5.0)
    if how == "uniform-option":
        g.set_code_counts(torch.arange(20))  # ignored by the uniform schedule
    else:
        g.set_code_counts(torch.full((20,), 10))  # every code equally important
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 20, (8, 6), generator=gen)
    lengths = torch.tensor([6, 1, 3, 6, 2, 5, 4, 6])
    valid = torch.arange(6)[None] < lengths[:, None]
    for t in (0.1, 0.37, 0.5, 0.9):
        u = torch.rand(8, 6, generator=gen)
        assert torch.equal(g.forward_mask(tokens, lengths, t, u), (u < t) & valid)


def test_code_importance_is_rank_of_information():
    w = code_importance(torch.tensor([10, 0, 5, 5]))
    torch.testing.assert_close(w, torch.tensor([0.0, 1.0, 0.5, 0.5]))


def test_option_errors():
    with pytest.raises(ValueError, match="importance"):
        M2DMGenerator(importance="tfidf")
    with pytest.raises(ValueError, match="d_model"):
        MMMGenerator(d_model=30, heads=4)
    with pytest.raises(ValueError, match="task"):
        edit_mask(torch.tensor([3]), 6, "middle", 1)
    assert issubclass(BAMMGenerator, tw.get("motion-ar").obj)
