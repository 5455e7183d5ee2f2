"""P62 R2R: routed decoding (registry-wide over ``tw.methods(kind="routed_decoder")``), labels, router."""

import pytest
import torch

import tokenworks as tw
from tokenworks.decode.r2r import Router, divergence_labels, router_features, routed_nll, train_router

from decode_models import left_pad, tiny_lm

ROUTED = [m.name for m in tw.methods(kind="routed_decoder")]
ROWS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24]]


@pytest.fixture(scope="module")
def small_large():
    return tiny_lm(layers=1, seed=11), tiny_lm(layers=2, seed=12)


def _greedy(model, ids, mask, n):
    out = model.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=1)
    return [r[: r.index(1) + 1] if 1 in r else r for r in out[:, ids.shape[1] :].tolist()]


@pytest.mark.parametrize("name", ROUTED)
def test_everything_routed_to_large_is_the_large_models_greedy_output(name, small_large):
    small, large = small_large
    ids, mask = left_pad(ROWS)
    got, stats = tw.create(name, route="all").generate(small, large, ids, mask, max_new_tokens=12, eos_token_id=1)
    assert got == _greedy(large, ids, mask, 12)
    assert stats["large_share"] == 1.0
    got, stats = tw.create(name, route="none").generate(small, large, ids, mask, max_new_tokens=12, eos_token_id=1)
    assert got == _greedy(small, ids, mask, 12)
    assert stats["large_share"] == 0.0 and stats["large_forwards"] == 1  # only the prefill


def test_random_routing_mixes_and_large_catches_up_in_one_chunk(small_large):
    """Large model forwards = prefill + routed steps (catch-up is chunked, never per token)."""
    small, large = small_large
    ids, mask = left_pad(ROWS[:1])
    got, stats = tw.create("r2r", route="random", threshold=0.3, seed=1).generate(small, large, ids, mask, max_new_tokens=20, eos_token_id=[])
    n_routed = round(stats["large_share"] * 20)
    assert 0 < n_routed < 20 and stats["large_forwards"] == 1 + n_routed
    # the routed mixture reproduced by teacher forcing: each token is the argmax of the model it was routed to
    seq = torch.tensor([ROWS[0] + got[0]])
    ls, ll = small(seq).logits[0, len(ROWS[0]) - 1 : -1].argmax(-1), large(seq).logits[0, len(ROWS[0]) - 1 : -1].argmax(-1)
    assert all(t in (int(a), int(b)) for t, a, b in zip(got[0], ls, ll))


def test_labels_router_and_mixture_nll(small_large):
    small, large = small_large
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 64, (4, 16), generator=g)
    differ, div = divergence_labels(small, large, ids, start=4, rollout=3)
    ref_s = small(ids).logits.argmax(-1)[:, 3:-1]
    ref_l = large(ids).logits.argmax(-1)[:, 3:-1]
    assert torch.equal(differ, ref_s != ref_l)
    assert not bool((div & ~differ).any())  # only differing tokens can be divergent
    feats, pred, slog = router_features(small, ids)
    assert feats.shape == (4, 16, 2 * 32 + 8) and torch.equal(pred, slog.argmax(-1))
    f = feats[:, 3:-1].reshape(-1, feats.shape[-1])
    router = train_router(f, differ.flatten(), d_model=32, steps=200)
    acc = ((torch.sigmoid(router(f)) > 0.5) == differ.flatten()).float().mean()
    assert acc > 0.7  # it fits its training labels
    llog = large(ids).logits
    t = ids[:, 4:]
    n0, s0 = routed_nll(slog[:, 3:-1], llog[:, 3:-1], t, torch.zeros_like(differ))
    n1, s1 = routed_nll(slog[:, 3:-1], llog[:, 3:-1], t, torch.ones_like(differ))
    ref0 = torch.nn.functional.cross_entropy(slog[:, 3:-1].reshape(-1, 64), t.reshape(-1))
    assert abs(n0 - float(ref0)) < 1e-5 and s0 == 0.0 and s1 == 1.0


def test_bad_options():
    with pytest.raises(ValueError, match="route must be one of"):
        tw.create("r2r", route="magic")
    with pytest.raises(ValueError, match="router must be a trained"):
        tw.create("r2r")
    with pytest.raises(ValueError, match="threshold must be in"):
        tw.create("r2r", route="random", threshold=1.5)
    assert isinstance(Router(8).forward(torch.zeros(3, 24)), torch.Tensor)


def test_committed_pair_all_routed_reproduces_the_large_models_greedy_output():
    """The committed pair (reference LM, decoding large LM): route="all" on left-padded prose
    prompts gives the large model's own greedy generate, token for token; and the large LM is
    the better model on held-out prose (its recorded perplexity)."""
    from tokenworks.decode.large_lm import NAME, large_lm
    from tokenworks.io import load_json
    from tokenworks.models import reference_lm
    from tokenworks.models.store import find_model

    try:
        large, tok = large_lm(train_if_missing=False)
    except FileNotFoundError:
        pytest.skip("the large LM is not trained (tokenworks train decode-large-lm)")
    small, _ = reference_lm(train_if_missing=False)
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in ("The Congress of the United States", "We must", "In the year")]
    ids, mask = left_pad(rows, pad=tok.pad_token_id)
    eos = tok.eos_token_id
    got, stats = tw.create("r2r", route="all").generate(small, large, ids, mask, max_new_tokens=10, eos_token_id=eos)
    out = large.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
    assert got == [r[: r.index(eos) + 1] if eos in r else r for r in out[:, ids.shape[1] :].tolist()]
    from dataclasses import asdict

    from tokenworks.decode.large_lm import LargeLMConfig

    info = load_json(find_model(NAME, asdict(LargeLMConfig())) / "tokenworks.json")
    assert info["held_out"]["ppl"] < info["held_out_small"]["ppl"]
