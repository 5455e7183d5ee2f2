"""``tokenworks train motion-tokenizer | motion-classifier | motion-generator``: the motion models
behind the ``motion`` suite (committed under ``assets/motion/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.decode import _train_into
from tokenworks.cli.main import console, device_option, fail, out_option, overwrite_option, train_app

GENERATOR_NAMES = ("ar", "mmm", "bamm", "m2dm", "m2dm-uniform")


def _steps(config, steps: int | None, tiny: bool, tiny_config):
    from dataclasses import replace

    config = tiny_config if tiny else config
    return replace(config, steps=steps) if steps is not None else config


@train_app.command("motion-tokenizer")
def train_motion_tokenizer_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/motion/tokenizer)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's 1500; the tiny one's 2)", min=1, max=100_000)] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the motion tokenizer (conv over time, FSQ, 4x downsampling) on the CMU + DeepMimic clips."""
    from tokenworks.motion.tokenizer import TokenizerConfig
    from tokenworks.motion.train import _run, _tok_fingerprint, tiny_configs, train_motion_tokenizer

    config = _steps(TokenizerConfig(), steps, tiny, tiny_configs()[0])
    name = "motion/tokenizer" + ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
    target, info = _train_into(out, overwrite, name, lambda tmp, run: train_motion_tokenizer(tmp, config, ckpt_dir=_run(run, _tok_fingerprint(config)), device=device))
    console.print(f"saved to {target}: test MPJPE {1000 * info['test_mpjpe_m']:.1f} mm, {info['bits_per_second']:.1f} bits/s")


@train_app.command("motion-classifier")
def train_motion_classifier_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/motion/classifier)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's 800; the tiny one's 2)", min=1, max=100_000)] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the motion label classifier whose features define motion fd_local."""
    from tokenworks.motion.classifier import ClassifierConfig
    from tokenworks.motion.train import _clf_fingerprint, _run, tiny_configs, train_motion_classifier

    config = _steps(ClassifierConfig(), steps, tiny, tiny_configs()[1])
    name = "motion/classifier" + ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
    target, info = _train_into(out, overwrite, name, lambda tmp, run: train_motion_classifier(tmp, config, ckpt_dir=_run(run, _clf_fingerprint(config)), device=device))
    console.print(f"saved to {target}: test accuracy {info['test_accuracy']:.3f} on {info['test_windows']} windows")


@train_app.command("motion-generator")
def train_motion_generator_cmd(
    name: Annotated[str, typer.Option(help=f"Which generator: {', '.join(GENERATOR_NAMES)}")] = "mmm",
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/motion/mmm)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's 2000; the tiny one's 2)", min=1, max=100_000)] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train one generator over the motion tokens (needs the motion tokenizer; trains it if missing)."""
    from dataclasses import asdict

    from tokenworks.motion.train import GeneratorConfig, _run, tiny_configs, train_generator

    if name not in GENERATOR_NAMES:
        fail(f"must be one of {', '.join(GENERATOR_NAMES)}, got {name!r}", "--name")
    config = _steps(GeneratorConfig(), steps, tiny, tiny_configs()[2])
    tokenizer = tiny_configs()[0] if tiny else None  # the smoke test uses the tiny tokenizer too
    key = f"motion/{name}" + ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
    target, info = _train_into(out, overwrite, key, lambda tmp, run: train_generator(name, tmp, config, ckpt_dir=_run(run, {'name': name, 'config': asdict(config), 'tiny': tiny}), device=device, tokenizer=tokenizer))
    console.print(f"saved to {target}: held-out loss {info['held_out_loss']:.3f}, {info['params']} parameters")
