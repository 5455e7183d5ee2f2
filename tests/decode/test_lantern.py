"""P17 LANTERN against independent references: scipy's KD-tree for the neighbour table, the
registry's exact speculative sampling for delta = 0, the closed-form relaxed distribution and
the empirical output distribution for the TV bound; the image-token model pair's training
command (tiny)."""

import pytest
import torch
from scipy.spatial import cKDTree
from scipy.stats import chisquare
from typer.testing import CliRunner

import tokenworks as tw
from tokenworks.decode.lantern import latent_neighbours, output_distribution, tv_bound

from decode_models import distill_draft, left_pad, tiny_lm


def test_neighbour_table_equals_a_kd_tree_search():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(300, 6, generator=g)
    table = latent_neighbours(codes, 7, vocab_size=310)
    _, idx = cKDTree(codes.numpy()).query(codes.numpy(), k=8)  # the first hit is the code itself
    assert (idx[:, 0] == range(300)).all()
    assert table[:300].tolist() == idx[:, 1:].tolist()
    assert bool((table[300:] == -1).all())  # class tokens have no latent neighbours


def _pair_and_table():
    target = tiny_lm(layers=2, seed=0)
    draft = distill_draft(target)
    with torch.no_grad():  # flatter distributions than the fixture's: many near-ties, as in image AR models
        target.lm_head.weight.div_(10.0)
        draft.lm_head.weight.div_(10.0)
    codes = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    return target, draft, latent_neighbours(codes, 6)


ROWS = [[5, 6, 7, 8, 9, 10], [12, 13, 14], [20, 21, 22, 23, 24, 25, 26, 27]]


@pytest.mark.parametrize("static,exact", [(False, "spec_sampling"), (True, "greedy_draft")])
def test_delta_zero_is_exactly_speculative_sampling(static, exact):
    """delta = 0 goes through the relaxed test with no added mass: the same tokens and the same
    accepted lengths as the exact method, draw for draw, for sampled and for static drafts."""
    target, draft, table = _pair_and_table()
    ids, mask = left_pad(ROWS)
    kw = dict(draft=draft, max_new_tokens=20, do_sample=True, eos_token_id=[], seed=11)
    ours = tw.create("lantern", k=4, delta=0.0, neighbours=table, static=static).generate(target, ids, mask, **kw)
    ref = tw.create(exact, k=4).generate(target, ids, mask, **kw)
    assert ours.tokens == ref.tokens and ours.stats.accepted == ref.stats.accepted
    assert ours.stats.extra["tv_bound"] == 0.0
    relaxed = tw.create("lantern", k=4, delta=0.3, neighbours=table, static=static).generate(target, ids, mask, **kw)
    assert relaxed.stats.acceptance_rate > ref.stats.acceptance_rate  # the relaxation accepts more
    assert 0 < relaxed.stats.extra["tv_bound"] <= relaxed.stats.extra["tv_bound_max"]


V = 8
N = 60_000


def _toy(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(V, generator=g) * 0.7, -1).double()
    q = torch.softmax(torch.randn(V, generator=g) * 0.7, -1).double()
    codes = torch.randn(V, 2, generator=g)
    return p, q, latent_neighbours(codes, 3)


def _first_tokens(p, q, table, delta, static, seed=0):
    """Verify one draft per row against p with LANTERN's hook; the first output token of each row."""
    g = torch.Generator().manual_seed(seed)
    dec = tw.create("lantern", k=1, delta=delta, neighbours=table, static=static)
    P = p.float().expand(N, 2, V).contiguous()
    if static:
        drafts = torch.full((N, 1), int(q.argmax()))
        Q = None
    else:
        drafts = torch.multinomial(q.float().expand(N, V), 1, generator=g)
        Q = q.float().expand(N, 1, V).contiguous()
    acc, nxt = dec.verify(P, drafts, torch.ones(N, dtype=torch.long), Q, g)
    first = torch.where(acc > 0, drafts[:, 0], nxt)
    return torch.bincount(first, minlength=V).double() / N, torch.cat(dec._bounds)[:, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_static_output_is_the_relaxed_target_within_delta(seed):
    """Deterministic draft x: accepted with probability p(x) + a (a: the mass of x's nearest-first
    neighbours while it stays <= delta), else a token from p without x. Closed form: P(x) = p(x) + a,
    P(y) = p(y) (1 - p(x) - a) / (1 - p(x)); chi-square p > 0.001; TV(P, p) = a <= delta = the bound."""
    p, q, table = _toy(seed)
    delta = 0.25
    x = int(q.argmax())
    a = 0.0
    for n in table[x].tolist():  # nearest first, while the running mass stays <= delta
        if a + float(p[n]) > delta:
            break
        a += float(p[n])
    assert a > 0  # the toy has a neighbour to relax over
    want = p * (1 - p[x] - a) / (1 - p[x])
    want[x] = p[x] + a
    emp, bounds = _first_tokens(p, q, table, delta, static=True, seed=seed)
    obs = (emp * N).round()
    assert chisquare(obs.numpy(), (want / want.sum() * obs.sum()).numpy()).pvalue > 1e-3
    assert chisquare(obs.numpy(), (p / p.sum() * obs.sum()).numpy()).pvalue < 1e-6  # the relaxation is visible
    tv = 0.5 * float((want - p).abs().sum())
    assert abs(float(bounds[0]) - tv) < 1e-6 and abs(tv - a) < 1e-6 and tv <= delta


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("delta", [0.05, 0.2, 0.5])
def test_tv_bound_holds_on_toy_distributions(seed, delta):
    """Sampled drafts: the empirical output distribution fits the closed form (chi-square p > 0.001)
    ; its TV to p stays below the reported coupling bound
    (+ 4 standard errors); the bound is informative (< 2 x delta on these toys)."""
    p, q, table = _toy(seed)
    emp, bounds = _first_tokens(p, q, table, delta, static=False, seed=seed)
    bound = float(bounds[0])
    assert abs(bound - float(tv_bound(p, q, table, delta))) < 1e-5
    want = output_distribution(p, q, table, delta)
    obs = (emp * N).round()
    assert chisquare(obs.numpy(), (want / want.sum() * obs.sum()).numpy()).pvalue > 1e-3
    tv = 0.5 * float((emp - p).abs().sum())
    se = float((p * (1 - p) / N).sqrt().sum()) / 2
    assert tv <= bound + 4 * se
    assert abs(0.5 * float((want - p).abs().sum()) - bound) < 1e-6  # the coupling bound is attained
    assert bound <= 2 * delta


def test_exact_tv_equals_the_coupling_bound_on_random_toys():
    g = torch.Generator().manual_seed(5)
    for _ in range(200):
        p = torch.softmax(torch.randn(12, generator=g).double() * 2, -1)
        q = torch.softmax(torch.randn(12, generator=g).double() * 2, -1)
        table = latent_neighbours(torch.randn(12, 3, generator=g), 4)
        delta = float(torch.rand(1, generator=g))
        P = output_distribution(p, q, table, delta)
        assert abs(float(P.sum()) - 1) < 1e-9 and float(P.min()) >= 0
        assert abs(0.5 * float((P - p).abs().sum()) - float(tv_bound(p, q, table, delta))) < 1e-9
    assert torch.allclose(output_distribution(p, q, table, 0.0), p)  # delta = 0: exact


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match="delta"):
        tw.create("lantern", delta=-0.1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        tw.create("lantern", k=0)
    with pytest.raises(TypeError, match="neighbours"):
        tw.create("lantern", neighbours=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="kn"):
        latent_neighbours(torch.randn(5, 2), 5)
    target, draft, _ = _pair_and_table()
    dec = tw.create("lantern", delta=0.1, neighbours=torch.zeros(10, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="neighbours has 10 rows"):
        dec.generate(target, torch.tensor([[3, 4]]), draft=draft, do_sample=True, max_new_tokens=3)


def test_image_ar_train_command_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ar"
    run = CliRunner().invoke(app_(), ["train", "decode-image-ar", "--tiny", "--size", "draft", "--out", str(out)])
    assert run.exit_code == 0, run.output
    from tokenworks.io import load_json

    info = load_json(out / "tokenworks.json")
    assert info["fingerprint"]["tokenizer"]["weights_sha256"] and len(info["history"]) == 2
    assert info["params"] > 0 and info["codebook_size"] == 1024
    run = CliRunner().invoke(app_(), ["train", "decode-image-ar", "--size", "huge", "--out", str(tmp_path / "x")])
    assert "--size" in run.output


def app_():
    from tokenworks.cli import app

    return app
