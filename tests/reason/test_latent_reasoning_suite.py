"""The latent-reasoning suite on tiny models: every method's rows on both tasks with the
budget metrics, the verdict rows, the plots; its paired interval on made-up data."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
suite = pytest.importorskip("bench.suites.latent_reasoning")


def test_paired_interval_is_known_both_ways():
    a = [True] * 80 + [False] * 20
    b = [True] * 40 + [False] * 60
    d, lo, hi = suite._paired_ci(a, b, seed=0)
    assert d == pytest.approx(0.4) and 0 < lo < 0.4 < hi
    d, lo, hi = suite._paired_ci(b, a, seed=0)
    assert d == pytest.approx(-0.4) and lo < -0.4 < hi < 0
    d, lo, hi = suite._paired_ci(a, a, seed=0)
    assert d == lo == hi == 0


def _verdict_rows(seed_acc, positions):
    """Main rows and per-problem records as the suite makes them, for three methods on one task."""
    rows = [{"method": "chance", "params": {"task": "graph"}, "metrics": {"accuracy": 0.5}}]
    per_problem = {}
    names = {"coconut": "coconut-stage4", "cot": "cot", "icot": "icot-stage4"}
    for m, accs in seed_acc.items():
        p = {"task": "graph", "model": names[m], **({"stage": 4} if m == "coconut" else {})}
        rows.append({"method": m, "params": p, "metrics": {"accuracy": accs[0], "reasoning_positions": positions[m]}})
        k = round(accs[0] * 100)
        per_problem[("graph", m, names[m], None, None)] = [True] * k + [False] * (100 - k)
    return rows, per_problem


def test_verdicts_use_the_training_seeds():
    """Three seeds each: Coconut 0.80/0.82/0.81 vs CoT 0.60/0.62/0.61 is a gap of 0.20 against a
    spread of 0.02 + 0.02 (held); vs iCoT 0.79/0.80/0.83 a gap of 0.0033 within 0.02 + 0.04."""
    from bench.verdict import judge

    seed_acc = {"coconut": [0.80, 0.82, 0.81], "cot": [0.60, 0.62, 0.61], "icot": [0.79, 0.80, 0.83]}
    rows, per_problem = _verdict_rows(seed_acc, {"coconut": 3.0, "cot": 15.0, "icot": 1.0})
    got = {r["method"]: r["metrics"] for r in suite._coconut_verdict(rows, per_problem, {("graph", m): v for m, v in seed_acc.items()}, 4, judge, 0)}
    assert got["coconut-vs-cot"]["verdict_rule"].startswith("held") and got["coconut-vs-cot"]["seeds"] == 3
    assert got["coconut-vs-cot"]["seed_gap"] == pytest.approx(0.20) and got["coconut-vs-cot"]["seed_spread"] == pytest.approx(0.04)
    assert got["coconut-vs-icot"]["verdict_rule"] == "within seed spread"
    assert got["coconut-vs-icot"]["seed_gap"] == pytest.approx(0.81 - 2.42 / 3, abs=1e-5) and got["coconut-vs-icot"]["seed_spread"] == pytest.approx(0.06)
    # one seed: no verdict, whatever the gap
    one = {m: v[:1] for m, v in seed_acc.items()}
    got = {r["method"]: r["metrics"] for r in suite._coconut_verdict(rows, per_problem, {("graph", m): v for m, v in one.items()}, 4, judge, 0)}
    assert got["coconut-vs-cot"]["verdict_rule"] == got["coconut-vs-icot"]["verdict_rule"] == "too few seeds"


def test_quick_run_on_tiny_models(tmp_path, monkeypatch):
    from bench.harness import Context
    from tokenworks.reason.models import load_reason_models, model_names, tiny_config

    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TOKENWORKS_PROGRESS", "0")
    load_reason_models(tiny_config(), train_if_missing=True)
    monkeypatch.setattr(suite, "_config", tiny_config)
    monkeypatch.setattr(suite, "_sizes", lambda quick: dict(n=6, flops_n=2, max_new=4, cop_windows=4, lcm_pairs=12))
    rows = suite.run(Context(quick=True, out_dir=tmp_path))
    main = [r for r in rows if "length" not in r["params"] and "reasoning_positions" in r["metrics"]]
    for task in ("graph", "pronto", "arith"):
        got = {r["method"] for r in main if r["params"]["task"] == task}
        assert got == {"no_cot", "cot", "pause", "icot", "coconut", "colar", "hrpo", "grpo", "system15"}
        for r in main:
            m = r["metrics"]
            assert 0 <= m["accuracy"] <= 1 and m["flops_per_answer"] > 0 and m["forwards"] >= 1
    stages = sorted(r["params"]["stage"] for r in main if r["method"] == "coconut" and r["params"]["task"] == "graph")
    assert stages == list(range(1, tiny_config().max_stage + 2))
    assert sorted(r["params"]["c"] for r in main if r["method"] == "colar" and r["params"]["task"] == "graph") == [1, 2]
    assert {r["params"]["task"] for r in rows if r["method"] == "coconut-vs-cot"} == {"graph", "pronto", "arith"}
    assert {r["params"]["task"] for r in rows if r["method"] == "hrpo-vs-grpo"} == {"graph", "pronto", "arith"}
    assert {r["params"]["task"] for r in rows if r["method"] == "coconut-vs-icot"} == {"graph", "pronto", "arith"}
    for r in rows:
        if r["method"] in ("coconut-vs-cot", "coconut-vs-icot"):  # tiny recipe: 2 training seeds, so no verdict
            assert r["metrics"]["seeds"] == 2 and r["metrics"]["verdict_rule"] == "too few seeds"
            assert len(r["metrics"]["accuracy_by_seed_coconut"]) == 2
    s15 = [r for r in main if r["method"] == "system15" and r["params"]["shortcut"] == "depth"]
    assert all(0 < r["metrics"]["depth_layer_fraction"] <= 1 for r in s15)
    assert any(r["method"] == "coconut-probe" for r in rows)
    made = suite.plots(rows, tmp_path)
    assert len(made) >= 3 and all((tmp_path / f).is_file() for _, f in made)
    assert {r["method"] for r in rows} >= {"cache-aug", "lcm", "copy-last-sentence"}
    assert suite.headline("coconut", rows) and suite.headline("lcm", rows) and suite.headline("cache-aug", rows)
    assert suite.headline("system15", rows) and suite.headline("hrpo", rows)
    assert model_names(tiny_config())
