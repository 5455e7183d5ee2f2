"""The reproduce command of the lm-tokens checkpoints (tiny settings) and the suite's report side."""

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenworks.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", ["p28-lexinvariant-s0", "p47-metadata-s1", "p69-caft-s0"])
def test_reproduce_command_runs_tiny(preset, tmp_path, tmp_cache, monkeypatch):
    monkeypatch.setenv("TOKENWORKS_ASSETS", str(ROOT / "assets"))  # the reference LM / tokenizer
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["train", "lm-variant", "--preset", preset, "--tiny", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "model.safetensors").is_file() and (out / "tokenworks.json").is_file()
    from tokenworks.io import load_json

    info = load_json(out / "tokenworks.json", kind=dict)
    assert info["fingerprint"]["steps"] == 2 and len(info["history"]) == 2


def test_bad_preset_names_the_option():
    r = CliRunner().invoke(app, ["train", "lm-variant", "--preset", "p99-nothing"])
    assert r.exit_code == 2 and "--preset" in r.output


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(ROOT))
    from bench import suites

    return suites.load("lm-tokens")


def test_verdict_is_judged_against_the_seed_spread(suite):
    assert suite._verdict([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], higher_is_better=False)[0] == "held"
    assert suite._verdict([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], higher_is_better=False)[0] == "did not hold"
    assert suite._verdict([1.0, 1.5, 0.5], [1.2, 1.3, 1.1], higher_is_better=False)[0] == "within seed spread"
    assert suite._verdict([1.0], [2.0], higher_is_better=False)[0] == "too few seeds"


def _rows():
    rows = []
    for method, base in (("lexinvariant", 900.0), ("standard_lm", 200.0)):
        for s in (0, 1, 2):
            for lo, hi in ((0, 8), (128, 256)):
                rows.append(suite_row("p28", method, {"positions": f"{lo}-{hi}", "seed": s}, {"ppl": base / (1 + lo / 32) + s, "position_mid": (lo + hi) / 2}))
    for method in ("metadata_prefix", "standard_lm"):
        for meta in (False, True) if method == "metadata_prefix" else (False,):
            for s in (0, 1, 2):
                for L in (1, 8, 64):
                    rows.append(suite_row("p47", method, {"prompt_len": L, "seed": s, "metadata_at_test": meta}, {"loss": 2.5 - 0.1 * L**0.3, "probe_accuracy": 0.3 + L / 100}))
    for arm, method in (("reference", "reference_lm"), ("plain", "standard_lm"), ("caft", "caft")):
        for s in (0, 1, 2):
            rows.append(suite_row("p69", method, {"arm": arm, "seed": s}, {"concept_ppl": 3.0 + s, "concept_exact": 0.4, "ppl": 40.0}))
    rows.append(suite_row("p28", "lexinvariant", {"claim": "gap shrinks"}, {"shrink_nats": 0.5, "verdict": "held"}))
    return rows


def suite_row(section, method, params, metrics):
    return {"family": "TXT", "method": method, "paper": None, "params": {"section": section, **params}, "budget": {}, "metrics": metrics}


def test_plots_summary_headline(suite, tmp_path):
    rows = _rows()
    made = suite.plots(rows, tmp_path)
    assert len(made) == 3
    for _, fname in made:
        assert (tmp_path / fname).stat().st_size > 1000
    assert "gap shrinks" in suite.summary(rows) and "held" in suite.summary(rows)
    assert suite.headline("lexinvariant", rows) == "gap shrinks: held"
    assert suite.headline("caft", rows) is None


def test_paired_gains_are_signed_towards_the_method(suite):
    assert suite._paired([1.0, 2.0], [1.5, 1.0], higher_is_better=False) == {"paired_gain_min": -1.0, "paired_gain_max": 0.5}
    assert suite._paired([1.0, 2.0], [1.5, 1.0], higher_is_better=True) == {"paired_gain_min": -0.5, "paired_gain_max": 1.0}


def test_p61_and_p42_plots_from_made_up_rows(suite, tmp_path):
    rows = []
    for arm, sp, ppl in (("uncached", 1.0, 9.0), ("freecache", 2.4, 9.5), ("guided-freecache", 1.6, 7.3), ("ar-greedy", 2.8, 7.3)):
        rows.append(suite_row("p61", "freecache", {"arm": arm}, {"speedup_wall": sp, "speedup_positions": sp * 2 if arm != "ar-greedy" else float("nan"), "answer_ppl": ppl}))
    rows.append(suite_row("p61", "held_out_text", {"arm": "held-out continuation"}, {"answer_ppl": 80.0}))
    for arm in ("base", "reweave_control", "memory_reweaving"):
        for s in (0, 1, 2):
            rows.append(suite_row("p42", arm, {"arm": arm, "seed": s}, {"recall_dist_0_256": 0.9, "recall_dist_256_1024": 0.8 - 0.01 * s, "recall_dist_1024_4096": 0.5}))
    names = [f for _, f in suite.plots(rows, tmp_path)]
    assert names == ["lm_tokens_p42_recall_vs_distance.png", "lm_tokens_p61_quality_vs_speedup.png"] or set(names) == {"lm_tokens_p42_recall_vs_distance.png", "lm_tokens_p61_quality_vs_speedup.png"}
    for f in names:
        assert (tmp_path / f).stat().st_size > 1000
