"""The scene data, the scene ViT's training command (tiny) and the token-compression suite's machinery."""

import json
import sys
from pathlib import Path

import pytest
import torch

import tokenworks as tw
from tokenworks.compress.scene_vit import SceneViT, SceneViTConfig
from tokenworks.data.images import load_fashion_mnist, load_mnist5k
from tokenworks.data.scenes import EMPTY, make_scenes

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
suite = pytest.importorskip("bench.suites.token_compression")


def test_scenes_put_real_items_in_their_cells():
    x, y = make_scenes(5, split="test", grid=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 84, 84) and y.shape == (5, 9)
    f, d = load_fashion_mnist("test"), load_mnist5k("test")
    for i in range(5):
        for c in range(9):
            cell = x[i, 0, 28 * (c // 3) : 28 * (c // 3 + 1), 28 * (c % 3) : 28 * (c % 3 + 1)]
            lab = int(y[i, c])
            if lab == EMPTY:
                assert cell.abs().sum() == 0
                continue
            pool = f if lab < 10 else d
            hits = (pool.images[:, 0].float() / 255 - cell).abs().flatten(1).amax(1) < 1e-6
            assert hits.any() and (pool.labels[hits] == lab % 10).all()


def test_cli_trains_a_tiny_scene_vit_that_loads_back(tmp_cache, tmp_path):
    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.io import load_tensors

    out = tmp_path / "scene-vit"
    res = CliRunner().invoke(app, ["train", "scene-vit", "--tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "tokenworks.json").read_text())
    cfg = SceneViTConfig(**{k: v for k, v in info["fingerprint"].items() if k != "recipe"})
    model = SceneViT(cfg)
    model.load_state_dict({k: v.float() for k, v in load_tensors(out / "model.safetensors").items()})
    assert 0.0 <= info["test_cell_accuracy"] <= 1.0
    assert all(v.dtype == torch.float16 for v in load_tensors(out / "model.safetensors").values())


def test_cli_refuses_bad_values_before_work():
    from typer.testing import CliRunner

    from tokenworks.cli import app

    r = CliRunner().invoke(app, ["compress", "vit", "--budget", "0"])
    assert r.exit_code == 2 and "--budget" in r.output
    r = CliRunner().invoke(app, ["compress", "vit", "--reducer", "h2o"])
    assert r.exit_code == 2 and "--reducer" in r.output


def test_flop_count_includes_cpu_attention():
    q = torch.randn(2, 4, 50, 8)
    flops = suite.count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 4 * 2 * 4 * 50 * 50 * 8  # QK^T and AV, 2 FLOPs per multiply-add


def test_verdicts_read_the_control_curve():
    def row(method, keep, gflops, accs):
        return {"method": method, "budget": {"keep": keep}, "metrics": {"gflops": gflops, "tokens_kept": keep * 196}, "seeds": {"top1_vs_none": accs}}

    rows = [row("cls_attention", k, g, [a, a + 0.01, a - 0.01]) for k, g, a in ((0.5, 1.0, 0.8), (0.25, 0.5, 0.6), (0.11, 0.25, 0.4), (0.05, 0.12, 0.2))]
    rows += [row("todre-kcenter-only", 0.11, 0.3, [0.7, 0.71, 0.69]), row("todre-kcenter-only", 0.05, 0.2, [0.1, 0.11, 0.09])]
    got = {(c["method"], c["keep"]): c["verdict"].verdict for c in suite.claim_verdicts(rows) if c["control"] == "cls_attention" and c["x"] == "gflops"}
    assert got == {("todre-kcenter-only", 0.11): "held", ("todre-kcenter-only", 0.05): "did not hold"}


def test_committed_scene_vit_loads_and_scores_what_it_recorded():
    from tokenworks.compress.scene_vit import NAME, SceneViTConfig, scene_accuracy, scene_vit
    from tokenworks.models.store import find_model

    path = find_model(NAME, SceneViTConfig().fingerprint())
    if path is None:
        pytest.skip("no committed scene ViT here (assets/compress/scene-vit)")
    recorded = json.loads((path / "tokenworks.json").read_text())["test_cell_accuracy"]
    model = scene_vit(train_if_missing=False)
    assert abs(scene_accuracy(model, 1000) - recorded) < 0.01  # fp16 weights vs the fp32 model that was scored


def test_cli_compress_vit_runs_on_the_committed_model():
    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.compress.scene_vit import NAME, SceneViTConfig
    from tokenworks.models.store import find_model

    if find_model(NAME, SceneViTConfig().fingerprint()) is None:
        pytest.skip("no committed scene ViT here")
    r = CliRunner().invoke(app, ["compress", "vit", "--reducer", "tome", "--budget", "22", "--scenes", "20"])
    assert r.exit_code == 0, r.output
    assert "tokens held per stage: 22.0" in r.output
    r = CliRunner().invoke(app, ["compress", "vit", "--reducer", "tome", "--budget", "500", "--scenes", "5"])
    assert r.exit_code == 2 and "--budget" in r.output and "only 196" in r.output


def test_vlm_verdicts_read_the_control_curve_of_accuracy_change():
    def row(method, keep, gflops, accs, kept=None):
        return {"task": "vlm-scene-qa", "method": method, "budget": {"keep": keep},
                "metrics": {"gflops": gflops, "tokens_kept": kept or keep * 196}, "seeds": {"accuracy_vs_none": accs}}  # fmt: skip

    rows = [row("cls_attention", k, g, [a, a + 0.01, a - 0.01]) for k, g, a in ((0.5, 1.0, -0.0), (0.25, 0.5, -0.1), (0.11, 0.25, -0.3), (0.05, 0.12, -0.4))]
    rows += [row("todre", 0.11, 0.3, [-0.05, -0.04, -0.06]), row("todre", 0.05, 0.2, [-0.5, -0.49, -0.51])]
    rows += [row("token_correlation", 0.25, 0.5, [-0.1, -0.1, -0.1], kept=40), row("token_correlation-fixed", 0.5, 1.0, [0.0, 0.0, 0.0], kept=30),
             row("token_correlation-fixed", 0.25, 0.5, [-0.3, -0.3, -0.3], kept=50)]  # fmt: skip
    got = {(c["method"], c["control"], c["keep"]): c["verdict"].verdict for c in suite.vlm_claim_verdicts(rows)}
    # todre at 0.3 GFLOPs: control interpolated in log x between -0.3 (0.25) and -0.1 (0.5) -> about -0.25; -0.05 beats it
    assert got[("todre", "cls_attention", 0.11)] == "held"
    assert got[("todre", "cls_attention", 0.05)] == "did not hold"
    # P54 on tokens kept: the fixed curve goes from 0.0 at 30 tokens to -0.3 at 50; at 40 (log x) it is about -0.17, below -0.1 by more than the spread (0)
    assert got[("token_correlation", "token_correlation-fixed", 0.25)] == "held"
