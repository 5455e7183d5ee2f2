"""The `generator-compression` suite's own logic: FIT's group schedule, the cost slopes, the text
module hook (P58/P27 rows are appended when ``bench.suites.generator_compression_text`` exists),
and plots/verdicts on made-up rows."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest

from bench.suites import generator_compression as suite


@pytest.mark.parametrize("L", suite.LENGTHS)
def test_fit_groups_divide_the_grid_and_grow_like_the_cube_root(L):
    side = math.isqrt(L)
    gh, gw = suite.fit_group(L)
    assert side % gh == 0 and side % gw == 0
    target = 49 * (L / 196) ** (1 / 3)
    divs = [k for k in range(1, side + 1) if side % k == 0]
    best = min(abs(math.log(a * b / target)) for a in divs for b in divs)  # brute force over all rectangles
    assert abs(math.log(gh * gw / target)) == pytest.approx(best)


def test_slope_recovers_a_power_law():
    L = np.array([196, 784, 3136])
    assert suite._slope(L, 3.0 * L ** (4 / 3)) == pytest.approx(4 / 3)
    assert suite._slope(L, 0.5 * L**2) == pytest.approx(2.0)


def _rows():
    rows = []
    for gen, f0, fd in (("dit-full-196", 1.0, 100.0), ("dit-fit-196", 0.4, 102.0), ("dit-ptdit-196", 0.6, 150.0)):
        for steps in (4, 8):
            seeds = [fd + steps + d for d in (-1.0, 0.0, 1.0)]
            rows.append({"method": "x", "params": {"task": "quality", "generator": gen, "steps": steps, "tokens": 196},
                         "metrics": {"fd_local": float(np.mean(seeds)), "fd_local_seeds": seeds, "class_accuracy": 0.8,
                                     "gflops_per_image": f0 * steps}})  # fmt: skip
    for name, p in (("full-attention", 2.0), ("fit", 4 / 3)):
        for L in (196, 784, 3136):
            rows.append({"method": name, "params": {"task": "cost", "variant": name, "tokens": L},
                         "metrics": {"attention_gflops": 1e-6 * L**p, "total_gflops": 2e-6 * L**p, "ms_per_forward": 1e-3 * L**p}})  # fmt: skip
        rows.append({"method": name, "params": {"task": "cost-exponent", "variant": name, "tokens": [196, 784, 3136]},
                     "metrics": {"attention_flops_exponent": p, "total_flops_exponent": p, "time_exponent": p,
                                 "time_exponent_repeats": [p - 0.01, p, p + 0.01]}})  # fmt: skip
    return rows


def test_verdicts_on_made_up_rows(tmp_path):
    text = "\n".join(suite.verdicts(_rows()))
    assert "dit-ptdit-196 vs dit-full-196 at 4 steps" in text and "did not hold" in text  # 50 worse, spread 4
    assert "dit-fit-196 vs dit-full-196 at 4 steps" in text and "within seed spread" in text  # 2 worse, spread 4
    assert "attention FLOPs 1.33 vs full attention 2.00" in text
    assert "time 1.33 vs 2.00: held" in text
    made = suite.plots(_rows(), tmp_path)
    assert {f for _, f in made} >= {"gencomp_fd_vs_flops.png", "gencomp_cost_vs_tokens.png"}
    assert all((tmp_path / f).is_file() for _, f in made)


def test_run_appends_the_text_modules_rows(monkeypatch, tmp_path):
    from bench.harness import Context

    fake = types.ModuleType(suite.TEXT_MODULE)
    fake.__spec__ = types.SimpleNamespace(name=suite.TEXT_MODULE)
    fake.shuffle_rows = lambda ctx: [{"method": "token-shuffle"}]
    fake.text_rows = lambda ctx: [{"method": "follow-the-flow"}]
    monkeypatch.setitem(sys.modules, suite.TEXT_MODULE, fake)
    monkeypatch.setattr(suite, "quality_rows", lambda ctx, sizes: ([{"method": "q"}], {}))
    monkeypatch.setattr(suite, "cost_rows", lambda ctx, sizes: [{"method": "c"}])
    rows = list(suite.run(Context(out_dir=tmp_path, quick=True)))
    assert [r["method"] for r in rows] == ["q", "c", "token-shuffle", "follow-the-flow"]


def test_held_out_loss_row_is_the_flow_matching_loss_by_hand():
    """The ``dit`` row: the mean over seeded draws of |v(x_t, t) - (x1 - x0)|^2 with x_t = (1 - t) x0 + t x1,
    written here without the flow_matching path object; a perfect field would score 0."""
    import torch

    from tokenworks.generate.train import GENERATORS, image_generator, token_data

    gen = image_generator("dit-full-49", train_if_missing=False)
    row = suite._held_out_loss_row(gen, "dit-full-49", GENERATORS["dit-full-49"][2])
    lat, lab = token_data(gen.tokenizer, True, "test", suite.HELD_OUT)
    ref = []
    with torch.no_grad():
        for draw in range(suite.LOSS_DRAWS):
            torch.manual_seed(draw)
            x1 = lat.float()
            x0 = torch.randn_like(x1)
            t = torch.rand(x1.shape[0])
            xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * x1
            ref.append(float((gen.velocity(xt, t, lab) - (x1 - x0)).pow(2).mean()))
    assert row["method"] == "dit" and row["params"]["task"] == "held-out-loss"
    assert row["metrics"]["flow_matching_loss_draws"] == pytest.approx(ref, rel=1e-5)
    # a trained field beats predicting zero velocity (loss = E|x1 - x0|^2)
    assert row["metrics"]["flow_matching_loss"] < float((lat.float() - torch.randn_like(lat.float())).pow(2).mean())
