"""P42 Contextual Memory Reweaving: off == base model exactly, causal memory, the memory read
against a brute-force loop, bad input."""

import pytest
import torch
import torch.nn.functional as F

import tokenworks as tw


def _lm(vocab=40, layers=4, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                      num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=256, pad_token_id=0, eos_token_id=0)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def _randomize(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.reweaver.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


IDS = torch.randint(0, 40, (2, 17), generator=torch.Generator().manual_seed(0))


def test_disabled_and_fresh_reweaving_equal_the_base_model():
    base = _lm()
    with torch.no_grad():
        ref = base(input_ids=IDS).logits
        fresh = tw.create("memory_reweaving", capture_layers=(0, 1), target_layer=2, dim=8).attach(_lm())
        assert torch.equal(fresh(IDS).logits, ref)  # zero output map: exactly the base model
        off = tw.create("memory_reweaving", capture_layers=(0, 1), target_layer=2, dim=8, enabled=False).attach(_lm())
        _randomize(off)
        assert torch.equal(off(IDS).logits, ref)
        on = tw.create("memory_reweaving", capture_layers=(0, 1), target_layer=2, dim=8).attach(_lm())
        _randomize(on)
        assert (on(IDS).logits - ref).abs().max() > 1e-3


def test_memory_is_causal():
    m = tw.create("memory_reweaving", capture_layers=(0, 1), target_layer=3, dim=8).attach(_lm())
    _randomize(m)
    with torch.no_grad():
        a = m(IDS).logits
        b = m(torch.cat([IDS[:, :10], (IDS[:, 10:] + 7) % 40], 1)).logits
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-4


def test_reweaver_read_equals_a_brute_force_loop():
    from tokenworks.kvcache.reweave import Reweaver

    torch.manual_seed(0)
    r = Reweaver(12, 2, 8, 2)
    with torch.no_grad():
        r.out.weight.normal_()
        h = torch.randn(1, 6, 12)
        mem = [torch.randn(1, 6, 12), torch.randn(1, 6, 12)]
        got = r(h, mem)
        for t in range(6):
            q = r.q(r.q_norm(h[0, t]))
            heads = []
            for hh in range(2):
                sl = slice(4 * hh, 4 * hh + 4)
                scores, vals = [], []
                for c in range(2):
                    for s in range(t + 1):
                        m = r.mem_norm[c](mem[c][0, s])
                        scores.append(float(q[sl] @ r.k[c](m)[sl]) / 2.0)
                        vals.append(r.v[c](m)[sl])
                w = F.softmax(torch.tensor(scores), 0)
                heads.append(sum(wi * vi for wi, vi in zip(w, vals)))
            want = h[0, t] + r.out(torch.cat(heads))
            torch.testing.assert_close(got[0, t], want, atol=1e-5, rtol=1e-5)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="target_layer"):
        tw.create("memory_reweaving", capture_layers=(2, 3), target_layer=3)
    with pytest.raises(ValueError, match="heads"):
        tw.create("memory_reweaving", dim=9, heads=2)
    with pytest.raises(ValueError, match="capture_layers"):
        tw.create("memory_reweaving", capture_layers=())
    with pytest.raises(ValueError, match="target_layer"):
        tw.create("memory_reweaving", capture_layers=(0,), target_layer=9).attach(_lm())
    with pytest.raises(TypeError, match="lm"):
        tw.create("memory_reweaving").attach(torch.nn.Linear(2, 2))
    m = tw.create("memory_reweaving", capture_layers=(0,), target_layer=1, dim=8).attach(_lm())
    with pytest.raises(ValueError, match="use_cache"):
        m(IDS, use_cache=True)


def test_reproduce_command_runs_tiny_and_loads_back(tmp_path, tmp_cache, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.io import load_json, load_tensors
    from tokenworks.kvcache import tasks

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("TOKENWORKS_ASSETS", str(root / "assets"))  # the frozen task model
    monkeypatch.setattr(tasks, "prose_stream", lambda tokenizer, split="test": torch.randint(5, 4000, (20_000,), generator=torch.Generator().manual_seed(0)))
    out = tmp_path / "rw"
    r = CliRunner().invoke(app, ["train", "reweaving", "--method", "reweave_control", "--seed", "1", "--tiny", "--out", str(out)])
    assert r.exit_code == 0, r.output
    info = load_json(out / "tokenworks.json", kind=dict)
    assert info["fingerprint"]["method"] == "reweave_control" and len(info["history"]) == 2
    assert set(load_tensors(out / "reweaver.safetensors")) >= {"q.weight", "out.weight", "k.0.weight"}
    r = CliRunner().invoke(app, ["train", "reweaving", "--method", "nope", "--tiny"])
    assert r.exit_code == 2 and "--method" in r.output


MEMORIES = [m.name for m in tw.methods(kind="lm_memory")]


@pytest.mark.parametrize("name", MEMORIES)
def test_memory_contract(name):
    """Every reweaving method: disabled is the base model, the gradient reaches every
    reweaving parameter and none of the frozen LM's."""
    opts = {"capture_layers": (0, 1), "target_layer": 2, "dim": 8} if name == "memory_reweaving" else {"capture_layers": (1,), "target_layer": 2, "dim": 8}
    base = _lm()
    with torch.no_grad():
        ref = base(input_ids=IDS).logits
    off = tw.create(name, enabled=False, **opts).attach(_lm())
    _randomize(off)
    with torch.no_grad():
        assert torch.equal(off(IDS).logits, ref)
    m = tw.create(name, **opts).attach(_lm())
    for p in m.lm.parameters():
        p.requires_grad_(False)
    _randomize(m)
    m(IDS).logits.float().pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.reweaver.parameters())


def test_committed_modules_load_and_change_the_model():
    from tokenworks.kvcache.reweave import ReweaveConfig, reweave_model
    from tokenworks.kvcache.task_model import task_model

    base, _ = task_model(train_if_missing=False)
    for method in ("memory_reweaving", "reweave_control"):
        m, _, info = reweave_model(ReweaveConfig(method=method, seed=0))
        assert info["fingerprint"]["method"] == method and info["params"] == sum(p.numel() for p in m.reweaver.parameters())
        ids = torch.randint(5, 4000, (1, 64), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert (m(ids).logits - base(input_ids=ids).logits).abs().max() > 1e-4  # trained: no longer the identity
