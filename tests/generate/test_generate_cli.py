"""`tokenworks train gen-<name> --tiny` (every reproduce command runs) and `tokenworks generate`
(a PNG grid from a trained generator; refuses a foreign folder; names a bad --model)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tokenworks.generate.train import GENERATORS


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))  # committed assets stay visible (the tokenizers)
    return tmp_path


@pytest.mark.parametrize("name", list(GENERATORS))
def test_reproduce_command_runs_tiny(name, cache):
    from tokenworks.cli import app
    from tokenworks.generate import ImageGenerator

    out = cache / name
    res = CliRunner().invoke(app, ["train", f"gen-{name}", "--tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    g = ImageGenerator.load(out)
    assert g.tokenizer and (out / "model.safetensors").is_file() and (out / "tokenworks.json").is_file()
    if name == "maskgit-patch2d":
        res = CliRunner().invoke(app, ["generate", "--model", str(out), "--out", str(cache / "grid"), "--per-class", "2", "--steps", "2"])
        assert res.exit_code == 0, res.output
        from PIL import Image

        img = Image.open(cache / "grid" / "grid.png")
        assert img.size[0] > img.size[1] / 10 * 2 and img.size[1] >= 10 * 28
        foreign = cache / "foreign"
        foreign.mkdir()
        (foreign / "mine.txt").write_text("x")
        res = CliRunner().invoke(app, ["generate", "--model", str(out), "--out", str(foreign), "--per-class", "1", "--steps", "1"])
        assert res.exit_code != 0 and "--out" in res.output and (foreign / "mine.txt").read_text() == "x"


def test_generate_names_a_bad_model(cache):
    from tokenworks.cli import app

    res = CliRunner().invoke(app, ["generate", "--model", str(cache / "nothing"), "--out", str(cache / "o")])
    assert res.exit_code != 0 and "--model" in res.output


def test_generate_lists_the_committed_names_for_an_unknown_one(cache):
    from tokenworks.cli import app

    res = CliRunner().invoke(app, ["generate", "--model", "no-such-generator", "--out", str(cache / "o")])
    assert res.exit_code != 0 and "maskgit-patch2d" in res.output and "no-such-generator" in res.output
    assert not (cache / "o").exists()
