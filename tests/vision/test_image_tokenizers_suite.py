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
    monkeypatch.setattr(suite, "PCA_POINTS", ((2, [8, 5, 5, 5]), (4, [8, 5, 5, 5]), (4, [3, 3, 3, 3])))
    presets = {
        "titok-4": suite.Preset("titok", tiny_options("titok", num_latents=4), "titok", steps=3, grid=True, seeds=(0, 1)),
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
    pca = [r for r in rows if r["method"] == "pca"]
    assert [r["budget"]["latent_scalars"] for r in pca] == [8, 16, 16] and pca[0]["metrics"]["psnr"] < pca[1]["metrics"]["psnr"]
    main = [r for r in rows if not r["params"].get("decoded_prefix") and r["method"] != "pca"]
    assert [r["params"]["preset"] for r in main] == list(tiny_suite)
    for r in main:
        m = r["metrics"]
        assert {"psnr", "ssim", "fd_local", "codebook_usage", "bits_per_image", "prior_nll_bits", "distinct_codes_per_image",
                "position_entropy", "top_code_share", "psnr_minus_pca", "psnr_spread"} <= set(m)  # fmt: skip
        assert m["prior_nll_bits"] > 0 and r["budget"]["tokens"] == 4 and r["budget"]["latent_scalars"] > 0
    seeds = main[0]["seeds"]["psnr"]
    assert len(seeds) == 2 and main[0]["params"]["seeds"] == 2
    assert main[0]["metrics"]["psnr"] == pytest.approx(sum(seeds) / 2) and main[0]["metrics"]["psnr_spread"] == pytest.approx(max(seeds) - min(seeds))
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


def _row(preset, psnr, nll, bits, seeds=3, spread=0.1, **extra):
    ps = [psnr - spread / 2, psnr, psnr + spread / 2][:seeds] if seeds > 1 else [psnr]
    ns = [nll - spread / 2, nll, nll + spread / 2][:seeds] if seeds > 1 else [nll]
    m = {"psnr": sum(ps) / len(ps), "prior_nll_bits": sum(ns) / len(ns), "bits_per_image": bits, "fd_local": 1.0, "ssim": 0.5,
         "distinct_codes_per_image": 10.0, "top_code_share": 0.05, "psnr_minus_pca": 1.0, **extra}  # fmt: skip
    return {"params": {"preset": preset, "seeds": seeds}, "paper": "P", "method": preset.split("-")[0], "budget": {"tokens": 16},
            "metrics": m, "seeds": {"psnr": ps, "prior_nll_bits": ns, "ssim": [0.5] * len(ps), "fd_local": [1.0] * len(ps)}}  # fmt: skip


def test_summary_verdicts_are_computed_on_the_control_curve():
    rows = [
        _row("titok-8", 17.0, 60.0, 80.0), _row("titok-16", 19.0, 100.0, 160.0), _row("titok-32", 20.0, 160.0, 320.0),
        _row("textok-16", 20.0, 110.0, 160.0),  # 1 dB above TiTok-16, spread 0.2 -> held
        _row("gigatok-16", 18.0, 120.0, 160.0),  # NLL 120 vs the curve's 80 at 18 dB -> did not hold
        _row("digit-16", 18.5, 80.0, 160.0, spread=40.0),  # curve 80 at 18.5 dB: within the seed spread
        _row("binary-16", 30.0, 1.0, 160.0, seeds=1),  # one seed -> too few seeds
        _row("hita-16", 19.0, 90.0, 160.0, distinct_codes_per_image=1.0),  # collapsed: named
        _row("hita-patch-16", 19.0, 100.0, 160.0, psnr_minus_pca=-0.5),  # below PCA: named
    ]  # fmt: skip
    text = suite.summary(rows)
    line = {k: next(ln for ln in text.splitlines() if f" {k} (" in ln) for k in ("textok-16", "gigatok-16", "digit-16", "binary-16")}
    assert line["textok-16"].startswith("- P10 ") and "**held (gap +1.00 dB" in line["textok-16"]
    assert "**did not hold (gap -40.00 bits" in line["gigatok-16"]
    assert "**within seed spread" in line["digit-16"]
    assert "**too few seeds (gap +11.00 dB" in line["binary-16"]
    assert "no, below: hita-patch-16 (-0.50 dB)" in text and "Positional collapse (distinct codes per image <= 1 or > 50% of tokens on one code): hita-16." in text


def test_every_preset_has_a_reproducing_command():
    for unit, name, seed in suite.units():
        p = suite.PRESETS[name]
        cmd = suite.preset_command(name, seed)
        assert cmd.startswith(f"tokenworks vision train {p.method} --name {unit} --out assets/vision")
        assert f"--steps {p.train.steps}" in cmd and cmd.endswith(f"--seed {seed}")
    assert suite.units(["titok-16-s2"]) == [("titok-16-s2", "titok-16", 2)]
    with pytest.raises(ValueError, match="unknown preset 'titok-99'"):
        suite.units(["titok-99"])


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
    assert (out / "learning_curves.png").is_file()  # the command that makes the assets redraws their curves
    again = CliRunner().invoke(app, ["vision", "presets", "--train", "--out", str(out), "--only", "titok-4", "--bench-dir", str(ROOT)])
    assert again.exit_code == 0 and load_json(out / "titok-4" / "tokenworks.json") == tok_info  # nothing retrained


def test_learning_curves_plot_and_flatness(tiny_suite, tmp_path):
    """Flatness on made-up curves with a known answer; the plot reads every committed unit."""
    import json
    import math

    flat = [[10 * i, 1.0] for i in range(1, 51)]
    assert suite.curve_flatness(flat) == 0.0
    # loss 2 over steps 60-80% and 1 over 80-100%: (2 - 1) / 1
    step = [[10 * i, 2.0 if i <= 40 else 1.0] for i in range(1, 51)]
    assert suite.curve_flatness(step) == pytest.approx(1.0)
    assert math.isnan(suite.curve_flatness(flat[:2]))  # too short to tell
    for unit in ("titok-4", "titok-4-s1", "flextok-4"):
        (tmp_path / unit).mkdir()
        (tmp_path / unit / "tokenworks.json").write_text(json.dumps({"loss_curve": flat if unit != "titok-4-s1" else step}))
    got = suite.plot_learning_curves(tmp_path, tmp_path / "curves.png")
    assert got == {"titok-4": 0.0, "titok-4-s1": pytest.approx(1.0), "flextok-4": 0.0}
    assert (tmp_path / "curves.png").stat().st_size > 1000
