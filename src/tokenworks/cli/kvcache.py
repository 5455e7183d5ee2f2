"""``tokenworks train kv-task-model`` and ``tokenworks kv-probe``: the KV-cache family's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import app, console, fail, train_app


@train_app.command("kv-task-model")
def train_kv_task_model(
    out: Annotated[Optional[Path], typer.Option(help="Write here instead of the cache (e.g. assets/kv/task-model)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Train the KV-cache benchmark's task model (resumable; checkpoints in the cache's runs/)."""
    from tokenworks.io import atomic_dir, cache_dir
    from tokenworks.kvcache.task_model import NAME, TaskModelConfig, task_model, tiny_config, train_task_model

    config = tiny_config() if tiny else TaskModelConfig()
    if out is None and not tiny:
        task_model(device=device)
        console.print("kv task model ready (cache or assets)")
        return
    target = out or cache_dir("models", NAME + ("-tiny" if tiny else ""))
    run = cache_dir("runs", NAME.replace("/", "-") + ("-tiny" if tiny else ""))
    try:
        with atomic_dir(target) as tmp:
            info = train_task_model(tmp, config, ckpt_dir=run, device=device, fp16=fp16)
    except (TypeError, ValueError) as e:
        fail(str(e))
    console.print(f"saved to {target}: retrieval probe {info['retrieval_probe']}, {info['params']} parameters")
