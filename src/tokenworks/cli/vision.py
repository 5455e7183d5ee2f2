"""``tokenworks vision ...``: train, evaluate and inspect image tokenizers (VIS family)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import app, bench_root, console, fail, parse_options

vision_app = typer.Typer(help="Image tokenizers: train, evaluate, list the benchmark's presets.", no_args_is_help=True)
app.add_typer(vision_app, name="vision")


@vision_app.command("train")
def train_cmd(
    method: Annotated[str, typer.Argument(help="A registered image tokenizer (tokenworks list --kind image_tokenizer)")],
    name: Annotated[str, typer.Option(help="Name of the trained model (folder name under the cache or --out)")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Tokenizer option key=value (JSON values), repeatable")] = None,
    steps: Annotated[int, typer.Option()] = 1000,
    batch_size: Annotated[int, typer.Option()] = 64,
    lr: Annotated[float, typer.Option()] = 2e-3,
    warmup: Annotated[int, typer.Option()] = 50,
    seed: Annotated[int, typer.Option()] = 0,
    dataset: Annotated[str, typer.Option(help="fashion-mnist or mnist5k")] = "fashion-mnist",
    out: Annotated[Optional[Path], typer.Option(help="Parent folder (e.g. assets/vision); default: the cache")] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="Save float32 weights (default float16)")] = False,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Train a tokenizer (resumable) and save it with its recipe fingerprint."""
    import tokenworks as tw
    from tokenworks.io import atomic_dir, cache_dir
    from tokenworks.vision.store import train_and_save
    from tokenworks.vision.train import TokenizerTrainConfig

    options = parse_options(set_, "--set")
    try:
        info = tw.get(method)
        if info.kind != "image_tokenizer":
            fail(f"{method!r} is a {info.kind}, not an image tokenizer")
        config = TokenizerTrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=min(warmup, steps), seed=seed, device=device)
        tw.create(method, **options)  # validate the options before any training
    except (KeyError, TypeError, ValueError) as e:
        fail(str(e))
    target = (out / name) if out is not None else cache_dir("models", "vision", name)
    with atomic_dir(target) as tmp:
        train_and_save(tmp, method, options, config, dataset=dataset, ckpt_dir=cache_dir("runs", "vision", name), half=not fp32)
    console.print(f"saved {method} to {target}")


@vision_app.command("eval")
def eval_cmd(
    path: Annotated[Path, typer.Argument(help="A folder written by save_pretrained / vision train")],
    dataset: Annotated[str, typer.Option()] = "fashion-mnist",
    n: Annotated[int, typer.Option(help="Test images")] = 1000,
) -> None:
    """Reconstruction metrics of a saved tokenizer on the test split."""
    from tokenworks.data import load_images
    from tokenworks.vision import ImageTokenizer, evaluate_tokenizer

    try:
        tok = ImageTokenizer.from_pretrained(path)
        data = load_images(dataset, "test")
        data = data.take(min(n, len(data)))
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(str(e))
    m = evaluate_tokenizer(tok, data)
    console.print({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()})


@vision_app.command("presets")
def presets_cmd(
    train: Annotated[bool, typer.Option("--train", help="Train every preset that is not in the cache or --out yet")] = False,
    out: Annotated[Path, typer.Option(help="Where --train writes (the committed assets live in assets/vision)")] = Path("assets/vision"),
    only: Annotated[Optional[list[str]], typer.Option(help="Only these presets (all their seeds) or units (<preset>-s<seed>)")] = None,
    bench_dir: Annotated[Optional[Path], typer.Option()] = None,
) -> None:
    """The image-tokenizers suite's presets, each with the command that reproduces it; with
    --train, train the missing tokenizers and their token priors into --out (this is how
    assets/vision is made)."""
    bench_root(bench_dir)
    from bench.suites.image_tokenizers import preset_command, train_units, units

    try:
        chosen = units(only)
    except ValueError as e:
        fail(str(e))
    if not train:
        for unit, name, seed in chosen:
            console.print(f"{unit}: {preset_command(name, seed)}")
        return
    train_units([u for u, _, _ in chosen], out, log=console.print)
