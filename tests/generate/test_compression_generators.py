"""The generators of issue 13's P58 / P27 rows: each `tokenworks train gen-<name> --tiny` runs, and
the committed ones sample their condition far above chance (scene items by class; captions by
class)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tokenworks.generate.train import COMPRESSION_GENERATORS


@pytest.mark.parametrize("name", list(COMPRESSION_GENERATORS))
def test_reproduce_command_runs_tiny(name, tmp_path, monkeypatch):
    from tokenworks.cli import app
    from tokenworks.generate import ImageGenerator

    monkeypatch.setenv("TOKENWORKS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / name
    res = CliRunner().invoke(app, ["train", f"gen-{name}", "--tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    g = ImageGenerator.load(out)
    method, tok, options = COMPRESSION_GENERATORS[name]
    assert g.registry_name == method and g.tokenizer == tok and all(getattr(g, k) == v for k, v in options.items())
    assert (out / "tokenworks.json").is_file()
    if tok.endswith("-2x2"):
        assert g.num_tokens == 196


def _committed(name):
    from tokenworks.generate.train import image_generator

    try:
        return image_generator(name, train_if_missing=False)
    except FileNotFoundError as e:
        pytest.skip(f"{name} not committed: {e}")


@pytest.mark.parametrize("name", ["ar-patch2d-2x2", "shuffle2-patch2d-2x2"])
def test_committed_scene_generators_sample_their_class(name):
    from tokenworks.generate.scenes import scene_items
    from tokenworks.generate.train import load_tokenizer
    from tokenworks.models.classifier import image_classifier

    g = _committed(name)
    g.cfg = 2.0
    labels = torch.arange(10).repeat(2)
    scenes = g.decode(g.generate(labels, steps=1, seed=0).tokens, load_tokenizer(g.tokenizer))
    assert scenes.shape == (20, 1, 56, 56)
    pred = image_classifier("fashion-mnist")(scene_items(scenes)).argmax(-1)
    assert (pred == labels.repeat_interleave(4)).float().mean() > 0.3  # chance is 0.1


def test_committed_text_generator_samples_the_caption_class():
    from tokenworks.generate.text_cond import CaptionData
    from tokenworks.generate.train import load_tokenizer
    from tokenworks.models.classifier import image_classifier

    g = _committed("maskgit-text")
    g.cfg = 2.0
    data = CaptionData("test", 40)
    imgs = load_tokenizer(g.tokenizer).decode(g.generate(data.context(torch.arange(40)), steps=8, seed=0).tokens)
    assert (image_classifier("fashion-mnist")(imgs).argmax(-1) == data.labels).float().mean() > 0.3
