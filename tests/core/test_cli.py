from typer.testing import CliRunner

import tokenworks as tw
from tokenworks.cli import app

runner = CliRunner()


def test_list_shows_every_method_with_paper_and_family():
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for m in tw.methods():
        assert m.name in result.output
    assert "P21" in result.output and "baseline" in result.output


def test_list_filters_and_rejects_unknown_family():
    result = runner.invoke(app, ["list", "--family", "vis"], terminal_width=200)
    assert result.exit_code == 0 and "robustok" in result.output
    result = runner.invoke(app, ["list", "--family", "nope"])
    assert result.exit_code == 2 and "family must be one of" in result.output


def test_bench_rejects_unknown_suite_and_device():
    result = runner.invoke(app, ["bench", "no-such-suite"])
    assert result.exit_code == 2 and "unknown suite" in result.output
    result = runner.invoke(app, ["bench", "--device", "tpu"])
    assert result.exit_code == 2 and "--device must be cpu or cuda" in result.output


def test_report_on_a_missing_results_file(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nothing.json")])
    assert result.exit_code == 2 and "no results file" in result.output
