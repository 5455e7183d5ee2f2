"""``tokenworks train lm-variant``: the LM-variant checkpoints of the ``lm-tokens`` suite (P28, P47, P69)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import _digest, choice, console, device_option, fail, out_option, overwrite_option, train_app


def _presets():
    from tokenworks.text.variant_lm import PRESETS

    return PRESETS


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

    from tokenworks.io import atomic_dir, cache_dir, prepare_output
    from tokenworks.text.variant_lm import preset as get_preset
    from tokenworks.text.variant_lm import train_variant_lm, variant_lm

    config = get_preset(preset)
    if tiny:
        opts = dict(config.options, head_pretrain_steps=2) if config.variant == "caft" else config.options
        config = replace(config, options=opts, steps=2, warmup=0, batch_size=2, seq_len=32, train_bytes=None if config.data == "pcfg" else 20_000)
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    try:
        if out is None and not tiny:
            variant_lm(preset, train_if_missing=True, device=device)
            console.print(f"{preset} ready (cache or assets)")
            return
        target = out or cache_dir("models", "lm-tokens", preset + "-tiny")
        with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
            info = train_variant_lm(tmp, config, ckpt_dir=cache_dir("runs", f"lm-tokens-{preset}-{_digest(config)}"), device=device, fp16=fp16)
    except (FileNotFoundError, TypeError, ValueError) as e:
        fail(str(e))
    console.print(f"saved to {target}: final train loss {info['train_loss']:.3f}, {info['params']} parameters, {info['train_seconds']} s")
