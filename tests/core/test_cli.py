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
    assert result.exit_code == 2 and "family must be one of" in result.output and "'--family'" in result.output


def test_bench_rejects_unknown_suite_and_device():
    result = runner.invoke(app, ["bench", "no-such-suite"])
    assert result.exit_code == 2 and "unknown suite" in result.output
    result = runner.invoke(app, ["bench", "--device", "tpu"])
    assert result.exit_code == 2 and "'--device': must be cpu, cuda, cuda:N or mps, got 'tpu'" in result.output


def test_report_on_a_missing_results_file(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nothing.json")])
    assert result.exit_code == 2 and "does not exist" in result.output and "RESULTS" in result.output.upper()


def test_train_commands_reproduce_checkpoints_on_tiny_configs(tmp_cache, tmp_path, monkeypatch):
    import json

    import tokenworks.models.bpe as bpe
    from tokenworks.data import load_prose
    from tokenworks.models import train_byte_bpe
    from tokenworks.io import load_tensors

    tiny = train_byte_bpe(load_prose("test").documents[:3], 300)
    monkeypatch.setattr(bpe, "reference_tokenizer", lambda *a, **k: tiny)
    out = tmp_path / "lm"
    result = runner.invoke(app, ["train", "reference-lm", "--steps", "2", "--out", str(out), "--fp16", "--train-bytes", "20000", "--eval-windows", "2"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "tokenworks.json").read_text())
    assert info["fingerprint"]["steps"] == 2 and info["held_out"]["tokens"] == 2 * 256
    assert all(t.dtype.is_floating_point is False or t.dtype.itemsize == 2 for t in load_tensors(out / "model.safetensors").values())

    out = tmp_path / "clf"
    result = runner.invoke(app, ["train", "classifier", "--dataset", "mnist5k", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "tokenworks.json").read_text())["fingerprint"]["dataset"] == "mnist5k"
    result = runner.invoke(app, ["train", "classifier", "--dataset", "cifar"])
    assert result.exit_code == 2 and "'--dataset'" in result.output and "'cifar' is not one of 'fashion-mnist', 'mnist5k'" in result.output


def test_publish_copies_cached_models_as_float16(tmp_cache, tmp_path):
    import torch

    from tokenworks.io import load_tensors, save_tensors
    from tokenworks.models.store import write_model_info

    src = tmp_cache / "models" / "quantizers" / "x-4b"
    save_tensors(src / "model.safetensors", {"w": torch.randn(3), "i": torch.arange(3)})
    write_model_info(src, {"k": 1})
    result = runner.invoke(app, ["publish", "quantizers/*", "--assets", str(tmp_path / "assets")])
    assert result.exit_code == 0, result.output
    t = load_tensors(tmp_path / "assets" / "quantizers" / "x-4b" / "model.safetensors")
    assert t["w"].dtype == torch.float16 and t["i"].dtype == torch.int64
    assert (tmp_path / "assets" / "quantizers" / "x-4b" / "tokenworks.json").is_file()
    result = runner.invoke(app, ["publish", "nothing/*", "--assets", str(tmp_path / "assets")])
    assert result.exit_code == 2 and "no trained model" in result.output
