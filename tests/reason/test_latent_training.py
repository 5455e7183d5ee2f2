"""Training-side pieces: Coconut's multi-pass forward against a recomputation, the curriculum,
CoLaR's compression against a loop, its c = 1 case, and the tiny reproduce command."""

from pathlib import Path

import pytest
import torch
from reason_tiny import tiny_llama

from tokenworks.reason.coconut import curriculum
from tokenworks.reason.colar import colar_loss, compress, encode_colar
from tokenworks.reason.sft import collate, encode, forward_with_latents
from tokenworks.reason.tasks import BOT, EOT, LATENT, examples, reason_tokenizer


def test_multipass_forward_equals_recomputing_with_thoughts_filled_in():
    """Reference: fill slot i by running the full sequence (no cache) up to it, then run the
    whole filled sequence once. Would fail if a thought came from the wrong position."""
    tok = reason_tokenizer()
    model = tiny_llama(vocab=len(tok), d=32)
    exs = [examples("graph", "test", 2)[0], examples("arith", "test", 2)[1]]
    n = 3
    b = collate([encode(e, tok, n_latent=n, skip=1) for e in exs])
    logits = forward_with_latents(model, b["ids"], b["mask"], b["bot"], n)
    emb = model.get_input_embeddings()
    x = emb(b["ids"]).detach().clone()
    pos = (b["mask"].cumsum(-1) - 1).clamp(min=0)
    for i in range(n):
        col = b["bot"] + 1 + i
        h = model(inputs_embeds=x[:, :col], attention_mask=b["mask"][:, :col], position_ids=pos[:, :col], output_hidden_states=True).hidden_states[-1]
        x[:, col] = h[:, -1]
    ref = model(inputs_embeds=x, attention_mask=b["mask"], position_ids=pos).logits
    real = b["mask"].bool()
    torch.testing.assert_close(logits[real], ref[real], atol=1e-4, rtol=1e-4)
    # gradients reach the model through the chain of thoughts
    logits[:, -1].sum().backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_encode_layouts():
    tok = reason_tokenizer()
    ex = examples("arith", "test", 5)[3]
    conv = tok.convert_tokens_to_ids
    ids, labels, bot = encode(ex, tok, n_latent=2, skip=10)  # every step removed
    q = ex.question.split()
    assert tok.convert_ids_to_tokens(ids) == q + [BOT, LATENT, LATENT, EOT, ex.answer, "<eos>"]
    assert labels == [-100] * (len(q) + 4) + [conv(ex.answer), tok.eos_token_id]  # markers given, not learnt
    ids, labels, _ = encode(ex, tok)
    steps = [w for s in ex.steps for w in s.split()]
    assert tok.convert_ids_to_tokens(ids) == q + [BOT, *steps, EOT, ex.answer, "<eos>"]
    assert labels[: len(q) + 1] == [-100] * (len(q) + 1) and labels[len(q) + 1 :] == ids[len(q) + 1 :]


def test_curriculum_follows_the_official_schedule():
    assert [curriculum(k, 2, 3) for k in range(5)] == [(0, 0), (1, 2), (2, 4), (3, 6), (10_000, 6)]
    with pytest.raises(ValueError, match="c"):
        curriculum(1, 0, 3)


@pytest.mark.parametrize("c", [1, 2, 3, 5])
def test_compress_is_the_mean_of_each_run_of_c(c):
    e = torch.randn(11, 6)
    z = compress(e, c)
    ref = []
    i = 0
    while i < len(e):
        group = [e[j] for j in range(i, min(i + c, len(e)))]
        total = torch.zeros(6)
        for g in group:
            total = total + g
        ref.append(total / len(group))
        i += c
    torch.testing.assert_close(z, torch.stack(ref))
    with pytest.raises(ValueError, match="c"):
        compress(e, 0)


def _colar_batch(tok, ex, c):
    ids, labels, groups = encode_colar(ex, tok, c)
    start = ids.index(tok.convert_tokens_to_ids(BOT)) + 1
    G = torch.full((1, len(ids), c), -1)
    for j, g in enumerate(groups):
        G[0, start + j, : len(g)] = torch.tensor(g)
    return {"ids": torch.tensor([ids]), "mask": torch.ones(1, len(ids), dtype=torch.long), "labels": torch.tensor([labels]), "groups": G}, start


def test_colar_c1_is_next_token_embedding_prediction():
    """With c = 1 the slots hold the CoT tokens' own embeddings, the head's target at each
    position is the next token's embedding, and the LM labels are the CoT tokens."""
    tok = reason_tokenizer()
    ex = examples("arith", "test", 3)[0]
    model = tiny_llama(vocab=len(tok), d=32)
    batch, start = _colar_batch(tok, ex, 1)
    steps = tok.convert_tokens_to_ids([w for s in ex.steps for w in s.split()])
    assert batch["labels"][0, start : start + len(steps)].tolist() == steps
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, h):
            seen["n"] = h.shape[0]
            return torch.zeros_like(h)

    loss, parts = colar_loss(model, Spy(), batch)
    assert seen["n"] == len(steps) and parts["mse"] == pytest.approx(1.0)  # zero prediction: relative MSE 1
    # a head that outputs exactly the next token's embedding has zero regression loss
    emb = model.get_input_embeddings().weight

    class Oracle(torch.nn.Module):
        calls = 0

        def forward(self, h):
            return emb[torch.tensor(steps)].detach()

    _, parts = colar_loss(model, Oracle(), batch)
    assert parts["mse"] == pytest.approx(0.0, abs=1e-10)


def test_colar_groups_are_consecutive_runs():
    tok = reason_tokenizer()
    ex = examples("arith", "test", 3)[2]
    steps = tok.convert_tokens_to_ids([w for s in ex.steps for w in s.split()])
    for c in (2, 3):
        ids, labels, groups = encode_colar(ex, tok, c)
        assert [t for g in groups for t in g] == steps and all(len(g) == c for g in groups[:-1])
        assert tok.convert_ids_to_tokens(ids).count(LATENT) == len(groups) == -(-len(steps) // c)
        assert f"<c{c}>" in tok.convert_ids_to_tokens(ids)


def test_tiny_reproduce_command_runs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tokenworks.cli import app

    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TOKENWORKS_PROGRESS", "0")
    out = tmp_path / "reason"
    res = CliRunner().invoke(app, ["train", "reason-models", "--tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    from tokenworks.reason.models import _load_dir, tiny_config, model_names

    d = _load_dir(str(out))
    assert sorted(d["models"]) == sorted([*model_names(tiny_config()), "system15", "cache-coprocessor", "lcm"])
    assert d["models"]["colar"][1] is not None and d["models"]["hrpo"][1] is not None
    assert set(d["models"]["system15"][1]) == {"depth", "step"} and set(d["models"]["lcm"][1]) == {"mse", "diffusion"}
    # the verdict models of seed 1 (tiny recipe: 2 seeds) are trained with another seed: other weights
    K = tiny_config().max_stage + 1
    for name in ("cot", f"coconut-stage{K}", f"icot-stage{K}"):
        w0, w1 = (d["models"][n][0].model.embed_tokens.weight for n in (name, f"{name}-seed1"))
        assert w0.shape == w1.shape and not torch.equal(w0, w1)
    # --only retrains one part in place: its file changes, every other file is byte-identical
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "tokenworks.json"}
    (out / "lcm" / "mse.safetensors").write_bytes(b"stale")  # what the part's retraining must replace
    res = CliRunner().invoke(app, ["train", "reason-models", "--tiny", "--out", str(out), "--only", "lcm"])
    assert res.exit_code == 0, res.output
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "tokenworks.json"}
    assert after.keys() == files.keys() and after[Path("lcm/mse.safetensors")] == files[Path("lcm/mse.safetensors")]
    assert all(after[k] == v for k, v in files.items())
    res = CliRunner().invoke(app, ["train", "reason-models", "--tiny", "--out", str(out), "--only", "nope"])
    assert res.exit_code != 0 and "--only" in res.output
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    res = CliRunner().invoke(app, ["train", "reason-models", "--tiny", "--out", str(user)])
    assert res.exit_code != 0 and "--out" in res.output  # a user's folder is refused, before any work
    assert (user / "notes.txt").read_text() == "keep" and len(list(user.iterdir())) == 1
