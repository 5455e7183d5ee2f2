"""``tokenworks train scene-vit`` / ``scene-vlm`` / ``scene-mqt`` and ``tokenworks compress vit``: the token-compression family's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import _seed_option, app, console, device_option, fail_options, float_option, method_choice, out_option, overwrite_option, parse_options, train_app

compress_app = typer.Typer(help="Token reducers (prune, merge, pool) inside a ViT: try one on the benchmark's model.", no_args_is_help=True)
app.add_typer(compress_app, name="compress")


@train_app.command("scene-vit")
def train_scene_vit_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/compress/scene-vit)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    seed: Annotated[Optional[int], _seed_option()] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the compression benchmark's scene ViT (resumable; checkpoints in the cache's runs/)."""
    from dataclasses import replace

    from tokenworks.compress.scene_vit import NAME, SceneViTConfig, scene_vit, train_scene_vit
    from tokenworks.io import atomic_dir, cache_dir, prepare_output

    config = SceneViTConfig(dim=16, depth=2, heads=2, steps=3, batch_size=4) if tiny else SceneViTConfig()
    if seed is not None:
        config = replace(config, seed=seed)
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    if out is None and not tiny and seed is None:
        scene_vit()
        console.print("scene ViT ready (cache or assets)")
        return
    target = out or cache_dir("models", NAME + ("-tiny" if tiny else ""))
    run = cache_dir("runs", NAME.replace("/", "-") + ("-tiny" if tiny else "") + (f"-seed{config.seed}" if seed is not None else ""))
    with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
        info = train_scene_vit(tmp, config, ckpt_dir=run, device=device, fp16=fp16, eval_scenes=50 if tiny else 1000)
    console.print(f"saved to {target}: per-cell test accuracy {info['test_cell_accuracy']:.3f}, {info['params']} parameters")


@compress_app.command("vit")
def compress_vit(
    reducer: Annotated[str, typer.Option(help="A registered token reducer", parser=method_choice("token_reducer", "--reducer"))] = "todre",
    budget: Annotated[float, float_option("Fraction of the patch tokens (0 < b <= 1) or, if > 1 and whole, a token count", min=0.0, max=1e6)] = 0.25,
    layer: Annotated[int, typer.Option(help="Reduce before this block (after `layer` blocks ran)", min=0, max=1000)] = 2,
    scenes: Annotated[int, typer.Option(help="Held-out test scenes to evaluate", min=1, max=100_000)] = 500,
    option: Annotated[Optional[list[str]], typer.Option(help="Reducer option key=value (JSON value), repeatable; e.g. seed=1")] = None,
) -> None:
    """Per-cell accuracy of the benchmark's scene ViT with and without a reducer, and the tokens kept."""
    import torch

    import tokenworks as tw
    from tokenworks.compress import attach_vit
    from tokenworks.compress.scene_vit import scene_vit, test_scenes

    if budget > 1 and not float(budget).is_integer():
        fail_options(ValueError(f"budget must be a fraction in (0, 1] or a whole token count, got {budget}"), "--budget")
    if budget == 0:
        fail_options(ValueError("budget must be a fraction in (0, 1] or a whole token count, got 0"), "--budget")
    b: float | int = int(budget) if budget > 1 else budget
    try:
        red = tw.create(reducer, budget=b, **parse_options(option, "--option"))
    except (TypeError, ValueError) as e:
        fail_options(e, "--option")
    model = scene_vit()
    x, y = test_scenes(scenes)
    with torch.no_grad():
        base = (model(x).argmax(-1) == y).float().mean().item()
        with attach_vit(model, red, layer=layer) as h:
            acc = (model(x).argmax(-1) == y).float().mean().item()
            kept = [k.float().mean().item() for k in h.kept]
    n = model.patch_embed.num_patches
    console.print(f"no reduction: {base:.3f} per-cell accuracy on {scenes} scenes ({n} patch tokens)")
    console.print(f"{reducer} (budget {b}, before block {layer}): {acc:.3f}; tokens held per stage: {', '.join(f'{k:.1f}' for k in kept)}")


@train_app.command("scene-vlm")
def train_scene_vlm_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/compress/scene-vlm)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the compression benchmark's scene VLM (HF Llava; projector + LM, vision tower from the scene ViT; resumable)."""
    from tokenworks.compress.scene_vlm import NAME, SceneVLMConfig, scene_vlm_dir, train_scene_vlm
    from tokenworks.io import atomic_dir, cache_dir, prepare_output

    config = SceneVLMConfig(lm_dim=16, lm_layers=2, lm_heads=2, lm_mlp=16, steps=4, batch_size=2, snapshots=2) if tiny else SceneVLMConfig()
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    if out is None and not tiny:
        scene_vlm_dir(config)
        console.print("scene VLM ready (cache or assets)")
        return
    target = out or cache_dir("models", NAME + "-tiny")
    run = cache_dir("runs", NAME.replace("/", "-") + ("-tiny" if tiny else ""))
    with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
        info = train_scene_vlm(tmp, config, ckpt_dir=run, device=device, fp16=fp16, eval_n=20 if tiny else 400, init_vision=not tiny)
    acc = info["test_accuracy"]
    console.print(f"saved to {target}: test accuracy {acc['all']:.3f} ({', '.join(f'{k} {v:.2f}' for k, v in acc.items() if k != 'all')})")


@train_app.command("scene-mqt")
def train_scene_mqt_cmd(
    out: Annotated[Optional[Path], out_option("Parent folder: writes mqt-random and mqt-fixed-M inside it (e.g. assets/compress)", parent=True)] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train P11's MQT resampler and the fixed-m controls inside the frozen scene ViT (resumable)."""
    from tokenworks.compress.mqt import _name, mqt_configs, train_mqt
    from tokenworks.compress.scene_vit import scene_vit
    from tokenworks.io import atomic_dir, cache_dir, prepare_output

    configs = mqt_configs((2, 4), steps=2, batch_size=4) if tiny else mqt_configs()
    vit = scene_vit()
    targets = [(c, (out / _name(c).split("/", 1)[1]) if out is not None else cache_dir("models", _name(c))) for c in configs]
    for _, t in targets:
        prepare_output(t, overwrite=overwrite)
    for c, t in targets:
        with atomic_dir(t, overwrite=overwrite, owned=out is None) as tmp:
            info = train_mqt(tmp, vit, c, ckpt_dir=cache_dir("runs", _name(c).replace("/", "-") + ("-tiny" if tiny else "")))
        console.print(f"saved to {t}: train loss {info['train_loss']:.3f}")
