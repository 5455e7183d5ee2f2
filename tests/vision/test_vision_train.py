"""Training entry points: train_tokenizer, the recipe store and `tokenworks vision train`."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import tokenworks as tw
from tokenworks.cli import app
from tokenworks.data import ImageSet, load_mnist5k
from tokenworks.io import load_json
from tokenworks.vision import ImageTokenizer, TokenizerTrainConfig, evaluate_tokenizer, train_tokenizer
from tokenworks.vision.store import pretrained_tokenizer, recipe

from vision_tiny import tiny, tiny_options


def _small_set(n: int = 64) -> ImageSet:
    d = load_mnist5k("test")
    return ImageSet("digits-subset", "test", d.images[:n], d.labels[:n], d.classes)  # no fd_local for this name


def test_train_tokenizer_lowers_the_loss_and_resumes(tmp_path):
    data = _small_set()
    cfg = TokenizerTrainConfig(steps=12, batch_size=16, lr=3e-3, warmup=2)
    a = tiny("titok")
    res = train_tokenizer(a, data, cfg, ckpt_dir=tmp_path / "run")
    assert res.history[-1][1] < res.history[0][1]
    b = tiny("titok")  # same init; resumes from the finished checkpoint and must end identical
    res_b = train_tokenizer(b, data, cfg, ckpt_dir=tmp_path / "run")
    assert res_b.resumed_from == 12
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


@pytest.mark.parametrize("source", ["attributes", "class"])
def test_conditional_training_gets_the_tokenizers_captions(monkeypatch, source):
    """Training batches carry the embedding of each image's own caption: class name + attribute
    words (default) or the class name alone."""
    seen = []
    tok = tiny("textok", caption_source=source)
    orig = type(tok).loss

    def spy(self, images, captions=None):
        seen.append((images, captions))
        return orig(self, images, captions)

    monkeypatch.setattr(type(tok), "loss", spy)
    data = _small_set(16)
    train_tokenizer(tok, data, TokenizerTrainConfig(steps=1, batch_size=4, warmup=0))
    images, caps = seen[0]
    assert caps is not None and caps.shape == (4, 384)
    from tokenworks.vision.captions import embed_captions

    x = data.float()
    for img, row in zip(images, caps):
        i = next(j for j in range(len(x)) if torch.equal(x[j], img))
        text = tok.captions_for(x[i : i + 1], data.labels[i : i + 1], list(data.classes))[0]
        assert (text == data.classes[int(data.labels[i])]) == (source == "class")
        torch.testing.assert_close(row, embed_captions([text])[0])


def test_evaluate_tokenizer_metrics():
    tok = tiny("patch2d")
    m = evaluate_tokenizer(tok, _small_set(20), return_outputs=True)
    assert m["tokens"] == 49 and m["bits_per_image"] == pytest.approx(tok.bits_per_image)
    assert 0 < m["codebook_usage"] <= 1 and m["psnr"] > 0 and m["ids"].shape == (20, 49)
    assert m["recon"].shape == (20, 1, 28, 28)


def test_bad_data():
    with pytest.raises(ValueError, match="do not fit the tokenizer"):
        train_tokenizer(tiny("titok", image_size=32, patch_size=4), _small_set(), TokenizerTrainConfig(steps=1, warmup=0))
    with pytest.raises(TypeError, match="data must be a tokenworks.data.ImageSet"):
        train_tokenizer(tiny("titok"), torch.rand(4, 1, 28, 28), TokenizerTrainConfig(steps=1, warmup=0))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TokenizerTrainConfig(steps=0)


def test_pretrained_tokenizer_trains_once_then_loads(tmp_cache):
    opts = tiny_options("titok")
    cfg = TokenizerTrainConfig(steps=2, batch_size=4, warmup=0)
    a = pretrained_tokenizer("tiny-titok", "titok", opts, cfg, dataset="mnist5k")
    info = load_json(tmp_cache / "models" / "vision" / "tiny-titok" / "tokenworks.json")
    assert info["fingerprint"] == recipe("titok", opts, cfg, "mnist5k")
    b = pretrained_tokenizer("tiny-titok", "titok", opts, cfg, dataset="mnist5k", train_if_missing=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="train it first"):
        pretrained_tokenizer("tiny-titok", "titok", opts, TokenizerTrainConfig(steps=3, batch_size=4, warmup=0),
                             dataset="mnist5k", train_if_missing=False)  # fmt: skip


def test_changed_options_never_resume_another_recipes_checkpoint(tmp_cache, tmp_path):
    """Two recipes that differ only in a quantizer option (same parameter shapes, same
    training config) share a run folder: the second must train, not load the first's weights
    (the training loop's resume check sees only its own config)."""
    from tokenworks.vision.store import train_and_save

    cfg = TokenizerTrainConfig(steps=2, batch_size=4, warmup=0)
    a = train_and_save(tmp_path / "a", "patch2d", tiny_options("patch2d", quantizer_options={"levels": [8, 5, 5, 5]}), cfg, dataset="mnist5k", ckpt_dir=tmp_path / "run")
    b = train_and_save(tmp_path / "b", "patch2d", tiny_options("patch2d", quantizer_options={"levels": [7, 5, 5, 5]}), cfg, dataset="mnist5k", ckpt_dir=tmp_path / "run")
    enc = "encoder.0.weight"
    assert not torch.equal(a.state_dict()[enc], b.state_dict()[enc])  # same init (seed 0), different training
    again = train_and_save(tmp_path / "c", "patch2d", tiny_options("patch2d", quantizer_options={"levels": [8, 5, 5, 5]}), cfg, dataset="mnist5k", ckpt_dir=tmp_path / "run")
    assert torch.equal(a.state_dict()[enc], again.state_dict()[enc])  # the same recipe resumes (and finds it finished)


def test_cli_vision_train_writes_a_loadable_asset(tmp_cache, tmp_path):
    runner = CliRunner()
    args = ["vision", "train", "titok", "--name", "t", "--steps", "2", "--batch-size", "4", "--dataset", "mnist5k",
            "--out", str(tmp_path / "assets"), "--set", "width=16", "--set", "depth=1", "--set", "heads=2", "--set", "num_latents=4"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    tok = ImageTokenizer.from_pretrained(tmp_path / "assets" / "t")
    assert tok.num_tokens == 4 and tok.width == 16
    fp = load_json(tmp_path / "assets" / "t" / "tokenworks.json")["fingerprint"]
    assert fp == recipe("titok", {"width": 16, "depth": 1, "heads": 2, "num_latents": 4}, TokenizerTrainConfig(steps=2, batch_size=4, warmup=2), "mnist5k")
    bad = runner.invoke(app, ["vision", "train", "titok", "--name", "x", "--set", "num_latents=0"])
    assert bad.exit_code == 2 and "num_latents must be >= 1" in bad.output
    bad = runner.invoke(app, ["vision", "train", "fsq", "--name", "x"])
    assert bad.exit_code == 2 and "not an image tokenizer" in bad.output
