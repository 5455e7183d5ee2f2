"""``tokenworks vision ...``: train, evaluate and inspect image tokenizers (VIS family)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from tokenworks.cli.main import MAX_STEPS, app, bench_root, console, device_option, fail, fail_options, float_option, method_choice, name_option, out_option, overwrite_option, parse_options

DATASETS = Literal["fashion-mnist", "mnist5k"]

vision_app = typer.Typer(help="Image tokenizers: train, evaluate, list the benchmark's presets.", no_args_is_help=True)
app.add_typer(vision_app, name="vision")


@vision_app.command("train")
def train_cmd(
    method: Annotated[str, typer.Argument(help="A registered image tokenizer", parser=method_choice("image_tokenizer", "METHOD"))],
    name: Annotated[str, name_option("Name of the trained model (folder name under the cache or --out)")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Tokenizer option key=value (JSON values), repeatable")] = None,
    steps: Annotated[int, typer.Option(min=1, max=MAX_STEPS)] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, max=65_536)] = 64,
    lr: Annotated[float, float_option(min=0.0, max=10.0)] = 2e-3,
    warmup: Annotated[int, typer.Option(min=0, max=MAX_STEPS)] = 50,
    seed: Annotated[int, typer.Option(help="Seeds the initialisation and the data order", min=0, max=2**31 - 1)] = 0,
    dataset: Annotated[DATASETS, typer.Option(help="The image set")] = "fashion-mnist",
    out: Annotated[Optional[Path], out_option("Parent folder (e.g. assets/vision); default: the cache", parent=True)] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="Save float32 weights (default float16)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train a tokenizer (resumable) and save it with its recipe fingerprint."""
    import tokenworks as tw
    from tokenworks.io import atomic_dir, cache_dir, prepare_output
    from tokenworks.vision.store import train_and_save
    from tokenworks.vision.train import TokenizerTrainConfig

    options = parse_options(set_, "--set")
    config = TokenizerTrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=min(warmup, steps), seed=seed, device=device)
    try:
        tw.create(method, **options)  # validate the options before any training
    except (TypeError, ValueError) as e:  # a bad or unknown option: name it
        fail_options(e, "--set")
    target = (out / name) if out is not None else cache_dir("models", "vision", name)
    prepare_output(target, overwrite=overwrite, arg="--out" if out is not None else "--name")
    with atomic_dir(target, overwrite=overwrite, arg="--out" if out is not None else "--name") as tmp:
        train_and_save(tmp, method, options, config, dataset=dataset, ckpt_dir=cache_dir("runs", "vision", name), half=not fp32)
    console.print(f"saved {method} to {target}")


@vision_app.command("eval")
def eval_cmd(
    path: Annotated[Path, typer.Argument(help="A folder written by save_pretrained / vision train", exists=True, file_okay=False)],
    dataset: Annotated[DATASETS, typer.Option(help="The image set")] = "fashion-mnist",
    n: Annotated[int, typer.Option(help="Test images", min=1, max=10_000_000)] = 1000,
) -> None:
    """Reconstruction metrics of a saved tokenizer on the test split."""
    from tokenworks.data import load_images
    from tokenworks.vision import evaluate_tokenizer
    from tokenworks.vision.store import load_tokenizer_dir

    tok = load_tokenizer_dir(path, arg="PATH")
    data = load_images(dataset, "test")
    data = data.take(min(n, len(data)))
    m = evaluate_tokenizer(tok, data)
    console.print({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()})


@vision_app.command("presets")
def presets_cmd(
    train: Annotated[bool, typer.Option("--train", help="Train every preset that is not in the cache or --out yet")] = False,
    out: Annotated[Path, out_option("Where --train writes (the committed assets live in assets/vision)", parent=True)] = Path("assets/vision"),
    only: Annotated[Optional[list[str]], typer.Option(help="Only these presets (all their seeds) or units (<preset>-s<seed>)")] = None,
    bench_dir: Annotated[Optional[Path], typer.Option(help="Folder holding bench/ (default: found from here)", exists=True, file_okay=False)] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """The image-tokenizers suite's presets, each with the command that reproduces it; with
    --train, train the missing tokenizers and their token priors into --out (this is how
    assets/vision is made)."""
    bench_root(bench_dir)
    from bench.suites.image_tokenizers import preset_command, train_units, units

    from tokenworks.io import prepare_output

    try:
        chosen = units(only)
    except ValueError as e:
        fail(str(e), "--only")
    if not train:
        for unit, name, seed in chosen:
            console.print(f"{unit}: {preset_command(name, seed)}")
        return
    for unit, _, _ in chosen:  # a bad --out is refused before any training starts
        for sub in (unit, f"{unit}-prior"):
            prepare_output(out / sub, overwrite=overwrite)
    train_units([u for u, _, _ in chosen], out, log=console.print, overwrite=overwrite)
