"""``tokenworks train reason-models``: the latent-reasoning family's models (assets/reason)."""

from __future__ import annotations

import json

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import console, device_option, out_option, overwrite_option, train_app


@train_app.command("reason-models")
def train_reason_models_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/reason)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Retrain only these parts (repeatable: cot, no_cot, pause, "
                    "coconut, icot, colar, hrpo, system15, cache_aug, lcm, seeds) inside an existing --out folder made with the same recipe; "
                    "its other files are kept")] = None,
) -> None:
    """Train the CoT, no-CoT, pause, Coconut (by stage), iCoT, CoLaR, HRPO and GRPO models on the
    graph, ProntoQA-style and arithmetic tasks, System-1.5's shortcuts, the P33 cache coprocessor
    and the P50 concept models (resumable; checkpoints in the cache's runs/)."""
    from dataclasses import asdict

    import shutil

    from tokenworks.io import atomic_dir, cache_dir, load_json, prepare_output
    from tokenworks.models.store import write_model_info
    from tokenworks.reason.models import NAME, ReasonModelConfig, tiny_config, train_reason_models

    config = tiny_config() if tiny else ReasonModelConfig()
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    target = out or cache_dir("models", NAME + ("-tiny" if tiny else ""))
    run = cache_dir("runs", NAME + ("-tiny" if tiny else ""))
    parts = ("cot", "no_cot", "pause", "coconut", "icot", "colar", "hrpo", "system15", "cache_aug", "lcm", "seeds")
    old = None
    if only:
        for part in only:
            if part not in parts:
                raise typer.BadParameter(f"expected one of {', '.join(parts)}, got {part!r}", param_hint="--only")
        info_path = target / "tokenworks.json"
        if not info_path.is_file():
            raise typer.BadParameter(f"{target} holds no trained models (no tokenworks.json); train them all first", param_hint="--only")
        old = load_json(info_path, kind=dict)
        if old.get("fingerprint") != json.loads(json.dumps(asdict(config))):
            raise typer.BadParameter(f"{target} was trained with another recipe; retrain all parts", param_hint="--only")
    with atomic_dir(target, overwrite=overwrite or bool(only), owned=out is None) as tmp:
        if old is not None:  # start from the existing models; the retrained parts replace their files
            shutil.copytree(target, tmp, dirs_exist_ok=True)
        info = train_reason_models(tmp, config, run_dir=run, fp16=fp16, device=device, only=tuple(only) if only else None)
        if old is not None:
            info["losses"] = {**old.get("losses", {}), **info["losses"]}
        write_model_info(tmp, asdict(config), **info)
    console.print(f"saved {len(info['models'])} models to {target} ({info['params']} parameters each)")
