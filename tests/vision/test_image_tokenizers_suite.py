"""The `image-tokenizers` suite end to end on tiny presets: rows, plots, summary, headlines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.harness import Context, run_suites  # noqa: E402
from bench.report import make_report  # noqa: E402
from bench.suites import image_tokenizers as suite  # noqa: E402
from tokenworks.data import ImageSet, load_mnist5k  # noqa: E402
from tokenworks.models import ImageClassifier  # noqa: E402
from tokenworks.vision import PriorConfig  # noqa: E402

from vision_tiny import tiny_options  # noqa: E402


@pytest.fixture
def tiny_suite(monkeypatch, tmp_cache):
    import torch

    import tokenworks.models.classifier as clf

    torch.manual_seed(0)
    fake = ImageClassifier(width=4).eval().requires_grad_(False)
    monkeypatch.setattr(clf, "image_classifier", lambda *a, **k: fake)
    digits = load_mnist5k("train")

    def fake_load(split="train"):
        n = 300 if split == "train" else 40
        return ImageSet("fashion-mnist", split, digits.images[:n], digits.labels[:n], digits.classes)

    monkeypatch.setattr(suite, "load_fashion_mnist", fake_load)
    monkeypatch.setattr(suite, "PRIOR", PriorConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32, steps=3, batch_size=8, warmup=0))
    robust = {"codebook_size": 16, "beta": 0.5, "delta": 4, "anneal_end": 4}
    presets = {
        "titok-4": suite.Preset("titok", tiny_options("titok", num_latents=4), "titok", steps=3, grid=True),
        "flextok-4": suite.Preset("flextok", tiny_options("flextok", num_latents=4), "flextok", steps=3, extra=("prefix",)),
        "robustok-4": suite.Preset("titok", tiny_options("titok", num_latents=4, quantizer="robustok", quantizer_options=robust),
                                   "robustok", steps=3, extra=("perturb",), grid=True),  # fmt: skip
    }
    monkeypatch.setattr(suite, "PRESETS", presets)
    monkeypatch.setattr(suite, "HEADLINE_PRESET", {"titok": "titok-4", "robustok": "robustok-4"})
    return presets


def test_suite_rows_plots_and_report(tiny_suite, tmp_path):
    ctx = Context(out_dir=tmp_path, quick=True)
    results = run_suites({suite.NAME: suite}, ctx)
    rows = results["rows"]
    main = [r for r in rows if not r["params"].get("decoded_prefix")]
    assert [r["params"]["preset"] for r in main] == list(tiny_suite)
    for r in main:
        m = r["metrics"]
        assert {"psnr", "ssim", "fd_local", "codebook_usage", "bits_per_image", "prior_nll_bits"} <= set(m)
        assert m["prior_nll_bits"] > 0 and r["budget"]["tokens"] == 4
    assert {k for k in main[2]["metrics"] if k.startswith("perturbed")} == {f"perturbed_fd_local@{r:g}" for r in suite.PERTURB_RATES}
    prefix = [r["budget"]["tokens"] for r in rows if r["params"].get("decoded_prefix")]
    assert prefix == [1, 2, 4]
    made = suite.plots(rows, tmp_path)
    assert len(made) == 4 and all((tmp_path / f).is_file() for _, f in made)
    report = make_report(tmp_path / "results.json").read_text()
    assert "image_tokenizers_grid.png" in report and "Claims at this scale" in report
    assert suite.headline("titok", rows).startswith("PSNR ") and "at 4 tokens" in suite.headline("titok", rows)
    assert "perturbed fd_local@0.1" in suite.headline("robustok", rows)
    assert suite.headline("hita", rows) is None


def test_summary_verdicts_follow_the_numbers():
    def row(preset, psnr, nll, bits=100.0, **extra):
        return {"params": {"preset": preset}, "paper": "P04", "budget": {"tokens": 16}, "metrics": {"psnr": psnr, "prior_nll_bits": nll, "bits_per_image": bits, "fd_local": 1.0, **extra}}

    rows = [row("gigatok-16", 20.0, 100.0), row("titok-16", 20.5, 120.0), row("textok-16", 19.0, 1.0), row("vq-16", 1, 1, **{"perturbed_fd_local@0.1": 5.0}),
            row("robustok-16", 1, 1, **{"perturbed_fd_local@0.1": 3.0})]  # fmt: skip
    text = suite.summary(rows)
    assert "gigatok-16 vs titok-16: prior NLL 100.0 vs 120.0 bits/image, PSNR 20.00 vs 20.50 dB: held" in text
    assert "P10 TexTok at 16 tokens: PSNR 19.00 vs 20.50 dB" in text and "did not hold (caption" in text
    assert "rate 0.1: 3.00 vs 5.00 without perturbation training: held" in text
    assert "headline" not in text


def test_every_preset_has_a_reproducing_command():
    for name, p in suite.PRESETS.items():
        cmd = suite.preset_command(name)
        assert cmd.startswith(f"tokenworks vision train {p.method} --name {name} --out assets/vision")
        assert f"--steps {p.train.steps}" in cmd


def test_presets_train_writes_tokenizers_and_priors(tiny_suite, tmp_path):
    """`tokenworks vision presets --train` (the command that made assets/vision) on tiny presets."""
    from typer.testing import CliRunner

    from tokenworks.cli import app
    from tokenworks.io import load_json

    out = tmp_path / "assets"
    result = CliRunner().invoke(app, ["vision", "presets", "--train", "--out", str(out), "--only", "titok-4", "--bench-dir", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert "tokenworks vision train titok --name titok-4" in result.output
    tok_info = load_json(out / "titok-4" / "tokenworks.json")
    prior_info = load_json(out / "titok-4-prior" / "tokenworks.json")
    assert prior_info["fingerprint"]["tokenizer"] == tok_info["fingerprint"]
    assert (out / "titok-4-prior" / "model.safetensors").is_file() and (out / "titok-4" / "model.safetensors").is_file()
    again = CliRunner().invoke(app, ["vision", "presets", "--train", "--out", str(out), "--only", "titok-4", "--bench-dir", str(ROOT)])
    assert again.exit_code == 0 and load_json(out / "titok-4" / "tokenworks.json") == tok_info  # nothing retrained
