"""The decoding family's large LM: growth keeps the function; the training command runs."""

import torch
from typer.testing import CliRunner

from tokenworks.cli import app
from tokenworks.decode.large_lm import grow_lm

from decode_models import tiny_lm


def test_grown_model_computes_exactly_the_small_models_function():
    small = tiny_lm(layers=3, seed=2)
    big = grow_lm(small, 7)
    assert big.config.num_hidden_layers == 7
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    x = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        assert torch.equal(big(x).logits, small(x).logits)


def test_train_command_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "large"
    run = CliRunner().invoke(app, ["train", "decode-large-lm", "--tiny", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert (out / "model.safetensors").is_file() and (out / "loss_curve.png").is_file()
    from tokenworks.io import load_json

    info = load_json(out / "tokenworks.json")
    assert len(info["history"]) == 2 and info["params"] > info["params_small"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user file")
    run = CliRunner().invoke(app, ["train", "decode-large-lm", "--tiny", "--out", str(tmp_path / "mine")])
    assert "--overwrite" in run.output and "did not write" in run.output and (tmp_path / "mine" / "notes.txt").is_file()
