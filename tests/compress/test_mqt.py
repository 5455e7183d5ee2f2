"""Token resamplers (tw.methods(kind="token_resampler")): P11 MQT's prefix property against a
plain loop over queries, masks, gradients, errors, and the training command (tiny)."""

import json
import math

import pytest
import torch

import tokenworks as tw

RESAMPLERS = [m.name for m in tw.methods(kind="token_resampler")]


def _make(name, **kw):
    torch.manual_seed(0)
    return tw.create(name, dim=16, max_queries=8, heads=2, **kw)


def _loop_reference(r, tokens, m):
    """Each query alone, attention written out: softmax(q k^T / sqrt(d)) v per head, then proj + MLP."""
    out = []
    kv = r.kv(r.norm_kv(tokens[0]))  # (N, 2 D)
    k, v = kv[:, :16], kv[:, 16:]
    for i in range(m):
        q0 = r.queries[i]
        q = r.q(r.norm_q(q0))
        heads = []
        for h in range(2):
            s = slice(8 * h, 8 * h + 8)
            w = torch.softmax(k[:, s] @ q[s] / math.sqrt(8), 0)
            heads.append(w @ v[:, s])
        x = q0 + r.proj(torch.cat(heads))
        out.append(x + r.mlp(r.norm_mlp(x)))
    return torch.stack(out)[None]


@pytest.mark.parametrize("name", RESAMPLERS)
def test_first_m_queries_are_a_prefix_and_match_a_loop(name):
    r = _make(name)
    x = torch.randn(1, 20, 16)
    full = r(x)
    assert full.shape == (1, 8, 16) and torch.isfinite(full).all()
    torch.testing.assert_close(r(x, 8), full, atol=0, rtol=0)  # m = M is the plain query transformer
    for m in (1, 3, 7):
        torch.testing.assert_close(r(x, m), full[:, :m], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(full, _loop_reference(r, x, 8), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", RESAMPLERS)
def test_padding_is_ignored_and_gradients_reach_every_parameter(name):
    r = _make(name)
    x = torch.randn(2, 12, 16)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    out = r(x, 5, mask)
    torch.testing.assert_close(out[1], r(x[1:, :9], 5)[0], atol=1e-6, rtol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in r.parameters())


@pytest.mark.parametrize("name", RESAMPLERS)
def test_bad_input_names_the_argument(name):
    r = _make(name)
    with pytest.raises(ValueError, match="m must be <= 8"):
        r(torch.randn(1, 4, 16), 9)
    with pytest.raises(ValueError, match="m must be >= 1"):
        r(torch.randn(1, 4, 16), 0)
    with pytest.raises(ValueError, match="tokens must have 16 features"):
        r(torch.randn(1, 4, 12))
    with pytest.raises(ValueError, match="heads"):
        tw.create(name, dim=16, heads=3)


def test_mqt_in_the_vit_runs_on_m_plus_one_tokens(tiny_vit, scenes):
    img, _ = scenes
    r = tw.create("mqt", dim=16, max_queries=8, heads=2)
    seen = []
    h2 = tiny_vit.blocks[2].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    h = r.attach(tiny_vit, 5, layer=1)
    assert torch.isfinite(tiny_vit(img)).all()
    h.remove()
    h2.remove()
    assert seen == [6]


def test_cli_trains_tiny_resamplers(tmp_cache, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import tokenworks.compress.scene_vit as sv
    from tokenworks.cli import app

    small = sv.SceneViT(sv.SceneViTConfig(dim=16, depth=3, heads=2)).eval()
    monkeypatch.setattr(sv, "scene_vit", lambda **k: small)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["train", "scene-mqt", "--tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["mqt-fixed-2", "mqt-fixed-4", "mqt-random"]
    info = json.loads((out / "mqt-random" / "tokenworks.json").read_text())
    assert info["fingerprint"]["fixed_m"] is None and info["fingerprint"]["max_queries"] == 4
