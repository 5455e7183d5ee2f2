"""The benchmark harness and report: results are data; the report is made from them alone."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import tokenworks as tw  # noqa: E402
from bench import suites as registry  # noqa: E402
from bench.harness import Context, run_suites  # noqa: E402
from bench.report import make_report  # noqa: E402


class FakeSuite:
    NAME = "fake"
    DESCRIPTION = "A fake suite."

    def __init__(self, value):
        self.value = value

    def run(self, ctx):
        yield {"family": "VIS", "method": "fsq", "paper": None, "params": {"a": 1}, "budget": {"bits": 4}, "metrics": {"psnr": self.value}}


def test_results_merge_by_suite_and_report_is_regenerated(tmp_path, monkeypatch):
    ctx = Context(out_dir=tmp_path, quick=True)
    run_suites({"quantizers": FakeSuite(20.0)}, ctx)
    run_suites({"other": FakeSuite(1.0)}, ctx)
    run_suites({"quantizers": FakeSuite(21.5)}, ctx)  # replaces its own rows, keeps "other"
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"suite", "created", "machine", "rows"} <= set(res)
    assert sorted((r["suite"], r["metrics"]["psnr"]) for r in res["rows"]) == [("other", 1.0), ("quantizers", 21.5)]
    monkeypatch.setattr(registry.load("quantizers"), "plots", lambda rows, out: [])
    report = make_report(tmp_path / "results.json").read_text()
    assert "## quantizers" in report and "21.5" in report and "## other" in report
    assert "not FID" in report


def test_unchanged_inputs_reuse_rows_and_changed_inputs_measure_again(tmp_path, tmp_cache):
    """A warm re-run reuses a suite's rows only while its file (and the rest of its inputs) is
    unchanged; --fresh always measures; the report says when rows were reused."""
    import importlib.util

    src = tmp_path / "counting_suite.py"
    runs = tmp_path / "runs.txt"
    body = (
        "from pathlib import Path\n"
        "NAME = 'counting'\n"
        "def run(ctx):\n"
        f"    p = Path({str(runs)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "    yield {'family': 'VIS', 'method': 'fsq', 'paper': None, 'params': {}, 'budget': {}, 'metrics': {'v': VALUE}}\n"
    )

    def load(value):
        src.write_text(body.replace("VALUE", str(value)))
        spec = importlib.util.spec_from_file_location(f"counting_suite_{value}", src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    out = tmp_path / "out"

    def measured(mod, **kw):
        run_suites({"counting": mod}, Context(out_dir=out, quick=True, **kw))
        res = json.loads((out / "results.json").read_text())
        return len(runs.read_text()), res["rows"][0]["metrics"]["v"], res["suites"]["counting"]

    assert measured(load(1))[:2] == (1, 1)
    n, v, meta = measured(load(1))  # same inputs: reused, not run
    assert (n, v) == (1, 1) and meta["reused_from"] == meta["created"]
    assert measured(load(2))[:2] == (2, 2)  # the suite's code changed: measured again
    n, v, meta = measured(load(2), fresh=True)
    assert (n, v) == (3, 2) and "reused_from" not in meta
    run_suites({"counting": load(2)}, Context(out_dir=out, quick=False))
    assert len(runs.read_text()) == 4
    run_suites({"counting": load(2)}, Context(out_dir=out, quick=True))
    assert len(runs.read_text()) == 4  # the quick run's rows are still cached
    assert "Reused by a later run" in make_report(out / "results.json").read_text()


def test_rows_missing_fields_are_rejected(tmp_path):
    class Bad:
        def run(self, ctx):
            yield {"method": "x"}

    with pytest.raises(ValueError, match="without"):
        run_suites({"bad": Bad()}, Context(out_dir=tmp_path))


def test_quantizers_suite_has_a_budget_for_every_registered_quantizer():
    mod = registry.load("quantizers")
    for m in tw.methods(kind="quantizer"):
        for bits in (4, 8, 12):
            q = m.create(dim=16, **mod.quantizer_options(m.name, bits))
            per_token = q.sequence_bits(49) / 49
            assert abs(per_token - bits) <= 0.6, (m.name, bits, per_token)  # vat: 70 indices for 49 tokens


def test_report_plots_from_results(tmp_path):
    rows = [
        {"suite": "quantizers", "family": "VIS", "method": n, "paper": p, "params": {}, "budget": {"bits_per_token": b},
         "metrics": {"psnr": 15 + b + i, "ssim": 0.5, "fd_local": 1.0, "codebook_usage": 0.9, "bits_per_image": 49 * b}}
        for i, (n, p) in enumerate([("vq", None), ("binary", "P20")]) for b in (4, 8)
    ]
    (tmp_path / "results.json").write_text(json.dumps({"suite": "quantizers", "created": "now", "machine": {}, "rows": rows}))
    report = make_report(tmp_path / "results.json").read_text()
    assert "quantizers_rate_distortion.png" in report
    assert (tmp_path / "quantizers_rate_distortion.png").stat().st_size > 1000


def test_readme_method_table_is_up_to_date():
    from typer.testing import CliRunner

    from tokenworks.cli import app

    result = CliRunner().invoke(app, ["readme", "--check", "--readme", str(ROOT / "README.md"), "--results", str(ROOT / "reports/latest/results.json")])
    assert result.exit_code == 0, result.output
