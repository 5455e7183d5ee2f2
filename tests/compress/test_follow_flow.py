"""P27 Follow the Flow: the registry-wide contract of text-token selectors (over
``methods(kind="text_token_selector")``), kept tokens = the top of the score by a sort loop,
keep=1 gives the baseline's samples exactly, the leakage fix against a hand-built replacement,
the uncontextualized states against the encoder run by hand, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import tokenworks as tw
from tokenworks.compress.follow_flow import plain_states, uncontextualize

SELECTORS = [m.name for m in tw.methods(kind="text_token_selector")]


def _data(B=4, T=9, E=6):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1 % B, 6:] = False
    mask[2 % B, 2:] = False
    return torch.randn(B, T, E, generator=g), mask


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("score", ["norm", "attention", "random"])
@pytest.mark.parametrize("keep", [1.0, 0.5, 0.25, 0.01])
def test_contract_kept_tokens_are_the_top_of_the_score(name, score, keep):
    states, mask = _data()
    att = torch.rand(mask.shape, generator=torch.Generator().manual_seed(3)) * mask
    sel = tw.create(name, keep=keep, score=score)
    new = sel.select(states, mask, att)
    assert new.dtype == torch.bool and new.shape == mask.shape and not (new & ~mask).any()
    if keep == 1.0:
        assert torch.equal(new, mask)
        return
    ref_score = {"norm": states.norm(dim=-1), "attention": att}[score] if score != "random" else sel.scores(states, mask)
    for b in range(mask.shape[0]):  # a loop: sort the present tokens, take ceil(keep * n), at least 1
        present = [t for t in range(mask.shape[1]) if mask[b, t]]
        k = max(1, math.ceil(keep * len(present) - 1e-9))
        best = sorted(present, key=lambda t: -float(ref_score[b, t]))[:k]
        assert sorted(torch.nonzero(new[b])[:, 0].tolist()) == sorted(best)
    assert torch.equal(new, sel.select(states, mask, att))  # deterministic


def test_random_scores_follow_the_seed():
    states, mask = _data()
    a = tw.create("follow-the-flow", keep=0.5, score="random", seed=1).select(states, mask)
    b = tw.create("follow-the-flow", keep=0.5, score="random", seed=2).select(states, mask)
    assert not torch.equal(a, b)


def test_keeping_everything_gives_the_baseline_samples():
    from tokenworks.generate.text_cond import TextContext

    torch.manual_seed(0)
    g = tw.create("text-maskgit", num_tokens=9, codebook_size=12, text_dim=6, d_model=16, layers=2, heads=2, cfg=2.0).eval()
    states, mask = _data()
    ctx = TextContext(states, mask)
    kept = ctx.with_mask(tw.create("follow-the-flow", keep=1.0, score="norm").select(states, mask))
    assert torch.equal(g.generate(ctx, steps=4, seed=7).tokens, g.generate(kept, steps=4, seed=7).tokens)
    half = ctx.with_mask(tw.create("follow-the-flow", keep=0.25, score="norm").select(states, mask))
    assert not torch.equal(g.generate(ctx, steps=4, seed=7).tokens, g.generate(half, steps=4, seed=7).tokens)


def test_leakage_fix_against_a_hand_built_replacement():
    states, _ = _data(B=2, T=5, E=3)
    p0, p1 = torch.full((2, 3), 7.0), torch.full((1, 3), -1.0)
    out = uncontextualize(states, [[3, 4], [1]], [p0, p1])
    want = torch.cat([states[0, :3], p0])[None]
    want = torch.cat([want, torch.cat([states[1, :1], p1, states[1, 2:]])[None]])
    assert torch.equal(out, want)
    assert not torch.equal(out, states)  # a copy; the input is untouched
    assert torch.equal(states, _data(B=2, T=5, E=3)[0])
    with pytest.raises(ValueError, match="positions"):
        uncontextualize(states, [[3]], [p0])
    with pytest.raises(ValueError, match=r"positions\[0\]"):
        uncontextualize(states, [[3], [1]], [p0, p1])


def test_plain_states_and_item_positions_against_the_encoder_by_hand():
    from transformers import AutoModel, AutoTokenizer

    from tokenworks.vision.captions import caption_token_states, item_token_positions, minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    model = AutoModel.from_pretrained(str(minilm_path()), local_files_only=True).eval()
    with torch.no_grad():
        ref = model(**tok(["ankle boot"], return_tensors="pt")).last_hidden_state[0, 1:-1]
    assert torch.allclose(plain_states("ankle boot"), ref, atol=1e-5)
    cap = "a dark, wide ankle boot"
    pos = item_token_positions(cap, "ankle boot")
    ids = tok([cap])["input_ids"][0]
    assert tok.convert_ids_to_tokens([ids[p] for p in pos]) == tok.tokenize("ankle boot")
    states, mask = caption_token_states([cap, "a bag"])
    assert int(mask[0].sum()) == len(ids) and int(mask[1].sum()) == 4
    with pytest.raises(ValueError, match="item must be a substring"):
        item_token_positions(cap, "sandal")


@pytest.mark.parametrize("keep", [0, 0.0, -0.5, 1.01, 2, "half", float("nan")])
def test_keep_outside_the_range_names_the_argument(keep):
    with pytest.raises(ValueError, match="keep") as e:
        tw.create("follow-the-flow", keep=keep)
    assert "\n" not in str(e.value)


def test_bad_score_and_missing_attention_name_the_argument():
    with pytest.raises(ValueError, match="score"):
        tw.create("follow-the-flow", score="entropy")
    states, mask = _data()
    with pytest.raises(ValueError, match="attention"):
        tw.create("follow-the-flow", keep=0.5, score="attention").select(states, mask)
    with pytest.raises(ValueError, match="mask"):
        tw.create("follow-the-flow", keep=0.5).select(states, mask.long())
