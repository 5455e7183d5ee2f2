"""P69 CAFT: n = 1 is next-token CE; the auxiliary losses against a per-position loop; stages."""

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw


def test_n1_is_next_token_cross_entropy(make_lm):
    lm = make_lm(40)
    v = tw.create("caft", n=1, heads_coefficient=1.0, schedule="constant")
    model = v.prepare(lm)
    assert model is lm  # no heads
    batch = torch.randint(0, 40, (3, 17))
    loss, stats = v.loss(model, batch, step_frac=0.3)
    logits = lm(input_ids=batch[:, :-1]).logits
    ref = F.cross_entropy(logits.reshape(-1, 40), batch[:, 1:].reshape(-1))
    assert torch.allclose(loss, ref, atol=1e-6)
    assert set(stats) == {"ce"}


def test_head_losses_match_a_per_position_loop(make_lm):
    """Head i at position t is scored against token t + 1 + i: compare with a loop that feeds
    each prefix separately through the trunk and the head (causality and offsets at once)."""
    lm = make_lm(30)
    v = tw.create("caft", n=3)
    model = v.prepare(lm)
    for p in model.heads.parameters():  # heads that differ from the trunk's last layer
        p.data.add_(0.05 * torch.randn_like(p))
    batch = torch.randint(0, 30, (2, 9))
    hidden, _ = v.hidden_and_logits(model, batch[:, :-1])
    got = v.head_losses(model, batch, hidden)
    T = batch.shape[1] - 1
    for i in (1, 2):
        nll = []
        for t in range(T - i):
            prefix = batch[:, : t + 1]
            h = lm(input_ids=prefix, output_hidden_states=True).hidden_states[-2]
            logits = model.head_logits(h)[i - 1][:, -1]
            nll.append(F.cross_entropy(logits, batch[:, t + 1 + i], reduction="none"))
        assert torch.allclose(got[i - 1], torch.stack(nll).mean(), atol=1e-5), i


def test_total_loss_weights_and_schedule(make_lm):
    lm = make_lm(30)
    v = tw.create("caft", n=3, heads_coefficient=0.5, decay=0.8, schedule="rsine")
    model = v.prepare(lm)
    batch = torch.randint(0, 30, (2, 12))
    for frac, w in ((0.0, 1.0), (1.0, 0.0), (0.5, 2**-0.5)):
        loss, stats = v.loss(model, batch, step_frac=frac)
        expect = stats["ce"] + 0.5 * w * (0.8 * stats["ce_head1"] + 0.64 * stats["ce_head2"])
        assert abs(loss.item() - expect) < 1e-5, frac


def test_heads_start_as_copies_of_the_last_layer(make_lm):
    """At initialisation head 1 reproduces the LM's own next-token logits (its documented init)."""
    lm = make_lm(30)
    v = tw.create("caft", n=2)
    model = v.prepare(lm)
    x = torch.randint(0, 30, (2, 10))
    hidden, logits = v.hidden_and_logits(model, x)
    assert torch.allclose(model.head_logits(hidden)[0], logits, atol=1e-5)


def test_stage1_trains_only_the_heads(make_lm):
    lm = make_lm(30)
    v = tw.create("caft", n=2, head_pretrain_steps=3)
    model = v.prepare(lm)
    before = {k: t.clone() for k, t in model.state_dict().items()}
    info = v.pretrain_parts(model, lambda step, g: torch.randint(0, 30, (2, 10), generator=g), seed=0)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("heads.") for k in changed)
    assert "head_loss" in info
    assert all(p.requires_grad for p in model.lm.parameters())
    assert not any(p.requires_grad for p in model.heads.parameters())


def test_bad_options_name_the_field():
    for kw, field in (({"n": 0}, "n"), ({"decay": -1.0}, "decay"), ({"schedule": "cosine"}, "schedule"), ({"heads_coefficient": float("nan")}, "heads_coefficient")):
        with pytest.raises(ValueError, match=field):
            tw.create("caft", **kw)
