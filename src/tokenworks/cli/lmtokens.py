"""``tokenworks train lm-variant``, ``diffusion-lm``, ``reweaving`` and ``word-lm``: the checkpoints of the ``lm-tokens`` suite (P28, P47, P69, P61, P42, P44)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import _digest, choice, console, device_option, fail, out_option, overwrite_option, train_app


def _presets():
    from tokenworks.text.variant_lm import PRESETS

    return PRESETS


def _train_recipe(name: str, config, *, out, tiny: bool, overwrite: bool, ensure, train_fn, device: str, fp16: bool) -> None:
    """The shared body of the lm-tokens training commands: into the cache (``ensure()``) unless
    --out or --tiny, else ``train_fn(folder, config, ckpt_dir=..., device=..., fp16=...)``."""
    from tokenworks.io import atomic_dir, cache_dir, prepare_output

    if out is not None:
        prepare_output(out, overwrite=overwrite)
    try:
        if out is None and not tiny:
            ensure()
            console.print(f"{name} ready (cache or assets)")
            return
        target = out or cache_dir("models", "lm-tokens", name + "-tiny")
        with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
            info = train_fn(tmp, config, ckpt_dir=cache_dir("runs", f"lm-tokens-{name}-{_digest(config)}"), device=device, fp16=fp16)
    except (FileNotFoundError, TypeError, ValueError) as e:
        fail(str(e))
    console.print(f"saved to {target}: final train loss {info['train_loss']:.3f}, {info['params']} parameters, {info['train_seconds']} s")


@train_app.command("lm-variant")
def train_lm_variant(
    preset: Annotated[str, typer.Option(help="A named recipe (p28-lexinvariant-s0, p47-plain-s1, p69-caft-s2, ...)", parser=choice(_presets, "--preset"))],
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/lm-tokens/NAME)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default with --out, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train one LM-variant recipe (resumable). Without --out and --tiny: into the cache, where
    the lm-tokens suite finds it (`tokenworks publish lm-tokens/NAME` copies it to assets/)."""
    from dataclasses import replace

    from tokenworks.text.variant_lm import preset as get_preset
    from tokenworks.text.variant_lm import train_variant_lm, variant_lm

    config = get_preset(preset)
    if tiny:
        opts = dict(config.options, head_pretrain_steps=2) if config.variant == "caft" else config.options
        config = replace(config, options=opts, steps=2, warmup=0, batch_size=2, seq_len=32, train_bytes=None if config.data == "pcfg" else 20_000)
    _train_recipe(preset, config, out=out, tiny=tiny, overwrite=overwrite, ensure=lambda: variant_lm(preset, train_if_missing=True, device=device),
                  train_fn=train_variant_lm, device=device, fp16=fp16)  # fmt: skip


@train_app.command("diffusion-lm")
def train_diffusion_lm_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/lm-tokens/p61-mdlm)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Adapt the reference LM into the masked diffusion LM of the lm-tokens suite's P61 section
    (resumable). Without --out and --tiny: into the cache, where the suite finds it."""
    from dataclasses import replace

    from tokenworks.text.diffusion_lm import DLMTrainConfig, diffusion_lm, train_diffusion_lm

    config = DLMTrainConfig()
    if tiny:
        config = replace(config, steps=2, warmup=0, batch_size=2, seq_len=16, train_bytes=20_000)
    _train_recipe("p61-mdlm", config, out=out, tiny=tiny, overwrite=overwrite, ensure=lambda: diffusion_lm(config=config, train_if_missing=True, device=device),
                  train_fn=train_diffusion_lm, device=device, fp16=fp16)  # fmt: skip


@train_app.command("reweaving")
def train_reweaving_cmd(
    method: Annotated[str, typer.Option(help="memory_reweaving (P42) or its control reweave_control", parser=choice(lambda: ("memory_reweaving", "reweave_control"), "--method"))] = "memory_reweaving",
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Training seed")] = 0,
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/lm-tokens/p42-memory-reweaving-s0)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train a P42 reweaving module on the frozen KV task model (resumable). Without --out and
    --tiny: into the cache, where the lm-tokens suite finds it."""
    from dataclasses import replace

    from tokenworks.kvcache.reweave import ReweaveConfig, preset_name, reweave_model, train_reweaving

    config = ReweaveConfig(method=method, seed=seed)
    if tiny:
        config = replace(config, steps=2, warmup=0, batch_size=1, seq_len=64, max_gap=4)
    _train_recipe(preset_name(config), config, out=out, tiny=tiny, overwrite=overwrite, ensure=lambda: reweave_model(config, train_if_missing=True, device=device),
                  train_fn=train_reweaving, device=device, fp16=fp16)  # fmt: skip


@train_app.command("word-lm")
def train_word_lm_cmd(
    method: Annotated[str, typer.Option(help="word_pooled_lm (P44) or a baseline: byte_lm, subword_lm", parser=choice(lambda: ("word_pooled_lm", "byte_lm", "subword_lm"), "--method"))] = "word_pooled_lm",
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="Training seed")] = 0,
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/lm-tokens/p44-word-pooled-lm-s0)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train one P44 arm (word-pooled LM, byte LM or subword LM) on prose (resumable). Without
    --out and --tiny: into the cache, where the lm-tokens suite finds it."""
    from dataclasses import replace

    from tokenworks.text.word_pooled import WordLMConfig, preset_name, train_word_lm, word_lm

    config = WordLMConfig(method=method, seed=seed)
    if tiny:
        config = replace(config, steps=2, warmup=0, batch_size=2, words=8, train_bytes=20_000)
    _train_recipe(preset_name(config), config, out=out, tiny=tiny, overwrite=overwrite, ensure=lambda: word_lm(config, train_if_missing=True, device=device),
                  train_fn=train_word_lm, device=device, fp16=fp16)  # fmt: skip
