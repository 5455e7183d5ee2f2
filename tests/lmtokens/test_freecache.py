"""P61 FreeCache + guided diffusion: the diffusion LM against HF Llama, the cached samplers
against the uncached one and a brute-force sampler written here, the guide against HF generate."""

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw
from tokenworks.text.diffusion_lm import DiffusionLM, DLMConfig, from_causal_lm, masked_diffusion_loss

V = 50


@pytest.fixture(scope="module")
def hf_lm(make_lm):
    return make_lm(V, dim=32, layers=2, seed=3)


@pytest.fixture(scope="module")
def dlm(hf_lm):
    torch.manual_seed(0)
    m = from_causal_lm(hf_lm).eval()
    with torch.no_grad():  # a less peaked random model: decisions depend on the whole context
        for p in m.parameters():
            if p.ndim == 2:
                p.mul_(4.0)
    return m


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(0, V, (4, 7), generator=torch.Generator().manual_seed(5))


def test_causal_dlm_equals_hf_llama(hf_lm):
    d = from_causal_lm(hf_lm).eval()
    ids = torch.randint(0, V, (2, 13), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(d(ids, causal=True), hf_lm(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
        # bidirectional: a later token changes an earlier position's logits
        a, b = d(ids), d(torch.cat([ids[:, :-1], (ids[:, -1:] + 1) % V], 1))
        assert (a[:, 0] - b[:, 0]).abs().max() > 1e-6


def test_partial_forward_reuses_cached_keys(dlm):
    ids = torch.randint(0, V, (1, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, cache = dlm.partial_forward(ids, torch.arange(11), None)
        pos = torch.tensor([2, 5, 6, 10])
        part, _ = dlm.partial_forward(ids, pos, cache)
    torch.testing.assert_close(part, full[:, pos], atol=1e-5, rtol=1e-5)


def _brute_force(model, prompt, gen_len, block):
    """Confidence unmasking written plainly: full forward every step, one token per step."""
    x = torch.cat([prompt, torch.full((gen_len,), model.mask_id)])
    P = len(prompt)
    for b0 in range(P, P + gen_len, block):
        while True:
            masked = [i for i in range(b0, b0 + block) if x[i] == model.mask_id]
            if not masked:
                break
            with torch.no_grad():
                logits = model(x[None])[0]
            best = None
            for i in masked:
                p = F.softmax(logits[i - 1].float(), -1)
                tok = int(p.argmax())
                if best is None or p[tok] > best[0]:
                    best = (float(p[tok]), i, tok)
            x[best[1]] = best[2]
    return x[P:]


def test_uncached_sampler_equals_brute_force(dlm, prompts):
    out = tw.create("llada_confidence", gen_len=8, block=4).generate(dlm, prompts, seed=0)
    for r in range(len(prompts)):
        assert out.tokens[r].tolist() == _brute_force(dlm, prompts[r], 8, 4).tolist()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("name", ["freecache", "dkv_cache"])
def test_refresh_every_step_equals_uncached(dlm, prompts, name, temperature):
    ref = tw.create("llada_confidence", gen_len=12, block=4, temperature=temperature).generate(dlm, prompts, seed=2)
    got = tw.create(name, gen_len=12, block=4, refresh=1, temperature=temperature).generate(dlm, prompts, seed=2)
    assert torch.equal(got.tokens, ref.tokens)
    assert got.stats["positions"] == ref.stats["positions"]  # refresh=1 recomputes everything


def test_caches_recompute_fewer_positions(dlm, prompts):
    ref = tw.create("llada_confidence", gen_len=12, block=4).generate(dlm, prompts, seed=0)
    for name in ("freecache", "dkv_cache"):
        got = tw.create(name, gen_len=12, block=4).generate(dlm, prompts, seed=0)
        assert got.stats["nfe"] == ref.stats["nfe"] and got.stats["positions"] < 0.8 * ref.stats["positions"]


def test_sampling_depends_on_the_seed(dlm, prompts):
    s = tw.create("llada_confidence", gen_len=12, block=4, temperature=1.0)
    assert not torch.equal(s.generate(dlm, prompts, seed=0).tokens, s.generate(dlm, prompts, seed=1).tokens)
    assert torch.equal(s.generate(dlm, prompts, seed=3).tokens, s.generate(dlm, prompts, seed=3).tokens)


def test_guide_disabled_equals_plain_unmasking(dlm, prompts):
    plain = tw.create("freecache", gen_len=12, block=4).generate(dlm, prompts, seed=0)
    guided = tw.create("guided_diffusion", gen_len=12, block=4).generate(dlm, prompts, seed=0, guide=None)
    assert torch.equal(plain.tokens, guided.tokens) and guided.stats["guide_calls"] == 0


def test_guided_greedy_equals_the_guides_greedy_generation(dlm, hf_lm, prompts):
    out = tw.create("guided_diffusion", gen_len=12, block=4).generate(dlm, prompts, seed=0, guide=hf_lm)
    gen = hf_lm.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=12, do_sample=False, pad_token_id=0)[:, prompts.shape[1] :]
    assert torch.equal(out.tokens, gen)
    assert 0 < out.stats["nfe"] <= 12 and out.stats["guide_calls"] == out.stats["nfe"]


def test_masked_diffusion_loss_counts_masked_tokens_only(dlm):
    batch = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(0))
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    loss = masked_diffusion_loss(dlm, batch, g())
    # brute force with the same draws: t per row, then the mask
    gg = g()
    t = 1e-3 + (1 - 1e-3) * torch.rand(3, 1, generator=gg)
    m = torch.rand(3, 8, generator=gg) < t
    x = batch.clone()
    x[:, 1:][m] = dlm.mask_id
    total = 0.0
    with torch.no_grad():
        lg = dlm(x)
    for b in range(3):
        for i in range(1, 9):
            if m[b, i - 1]:
                total += float(F.cross_entropy(lg[b, i - 1][None], batch[b, i][None])) / float(t[b])
    assert abs(float(loss.detach()) - total / 24) < 1e-4


def test_bad_input_names_the_argument(dlm, prompts, make_lm):
    with pytest.raises(ValueError, match="block"):
        tw.create("freecache", gen_len=12, block=5)
    with pytest.raises(ValueError, match="order"):
        tw.create("freecache", order="left")
    with pytest.raises(ValueError, match="cache"):
        tw.create("freecache", cache="all")
    with pytest.raises(ValueError, match="prompts"):
        tw.create("freecache", gen_len=4, block=4).generate(dlm, prompts + V)
    with pytest.raises(TypeError, match="model"):
        tw.create("freecache", gen_len=4, block=4).generate(torch.nn.Linear(2, 2), prompts)
    with pytest.raises(ValueError, match="guide"):
        tw.create("guided_diffusion", gen_len=4, block=4).generate(dlm, prompts, guide=make_lm(V + 3))
    with pytest.raises(ValueError, match="hidden_size"):
        DLMConfig(hidden_size=30, heads=4)
    with pytest.raises(ValueError, match="positions"):
        DiffusionLM(DLMConfig(vocab_size=V, hidden_size=8, heads=2, intermediate_size=8)).partial_forward(prompts, torch.arange(3))


def test_reproduce_command_runs_tiny(tmp_path, tmp_cache, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.io import load_json

    monkeypatch.setenv("TOKENWORKS_ASSETS", str(Path(__file__).resolve().parents[2] / "assets"))  # the reference LM
    out = tmp_path / "dlm"
    r = CliRunner().invoke(app, ["train", "diffusion-lm", "--tiny", "--out", str(out)])
    assert r.exit_code == 0, r.output
    info = load_json(out / "tokenworks.json", kind=dict)
    assert info["fingerprint"]["steps"] == 2 and len(info["history"]) == 2 and info["model"]["vocab_size"] == 4096
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    r = CliRunner().invoke(app, ["train", "diffusion-lm", "--tiny", "--out", str(foreign)])
    assert r.exit_code != 0 and "--out" in r.output and (foreign / "notes.txt").read_text() == "keep"


def test_committed_checkpoint_loads_and_samples():
    from tokenworks.text.diffusion_lm import diffusion_lm

    m, info = diffusion_lm()
    assert info["fingerprint"]["steps"] == 600
    out = tw.create("freecache", gen_len=8, block=4).generate(m, torch.randint(0, 4096, (1, 12), generator=torch.Generator().manual_seed(0)))
    assert out.tokens.shape == (1, 8) and int(out.tokens.max()) < 4096


SAMPLERS = [m.name for m in tw.methods(kind="diffusion_sampler")]


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_contract(name, dlm, prompts):
    """Every sampler: answers of the asked length in the vocabulary, no mask left, the same at
    the same seed, prompt untouched, counts consistent."""
    s = tw.create(name, gen_len=8, block=4)
    a, b = s.generate(dlm, prompts, seed=4), s.generate(dlm, prompts, seed=4)
    assert a.tokens.shape == (len(prompts), 8) and int(a.tokens.min()) >= 0 and int(a.tokens.max()) < V
    assert torch.equal(a.tokens, b.tokens)
    assert len(a.per_sequence) == len(prompts) and a.stats["nfe"] >= 8 / s.block * 1 and a.stats["positions"] > 0
    if s.order == "confidence":  # with refresh every step, any cache equals the uncached sampler
        ref = tw.create("llada_confidence", gen_len=8, block=4).generate(dlm, prompts, seed=4)
        assert torch.equal(tw.create(name, gen_len=8, block=4, refresh=1).generate(dlm, prompts, seed=4).tokens, ref.tokens)
