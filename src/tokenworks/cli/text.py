"""TXT commands: ``tokenworks tokenizer train|eval`` and ``tokenworks train zett-hypernet``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

import tokenworks as tw
from tokenworks.cli.main import MAX_STEPS, app, console, device_option, fail, fail_options, float_option, method_choice, out_option, overwrite_option, parse_options, train_app

tokenizer_app = typer.Typer(help="Train a tokenizer from a folder of text files; evaluate one on a folder.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def train_tokenizer_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of UTF-8 text files", exists=True, file_okay=False)],
    out: Annotated[Path, out_option("Output folder (tokenizer.json + transformers files)")],
    recipe: Annotated[str, typer.Option(help="A registered recipe", parser=method_choice("text_tokenizer", "--recipe"))] = "kl3m_domain_bpe",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size (special and fixed tokens included)", min=1, max=1_000_000)] = 4096,
    option: Annotated[Optional[list[str]], typer.Option(help="Recipe option key=value (JSON value), repeatable; e.g. cased=false")] = None,
    pattern: Annotated[str, typer.Option(help="Which files of the folder to read (glob)")] = "**/*.txt",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train a tokenizer with a recipe on every text file of FOLDER and save it to --out."""
    from tokenworks.io import atomic_dir, prepare_output
    from tokenworks.text import read_text_folder

    _check_glob(pattern)
    try:
        r = tw.create(recipe, vocab_size=vocab_size, **parse_options(option, "--option"))
    except (TypeError, ValueError) as e:  # a bad or unknown option: name it
        fail_options(e, "--option")
    prepare_output(out, overwrite=overwrite)
    try:
        texts = read_text_folder(folder, pattern)
    except FileNotFoundError as e:
        fail(str(e), "FOLDER")
    except ValueError as e:
        fail(str(e), "FOLDER")
    tok = r.train(texts, show_progress=True)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        tok.save_pretrained(tmp)
        (tmp / "recipe.json").write_text(json.dumps({"recipe": recipe, "options": r.options(), "files": len(texts)}, indent=2) + "\n")
    console.print(f"{recipe}: {len(tok)} tokens from {len(texts)} file(s) -> {out}")


def _check_glob(pattern: str) -> str:
    from pathlib import PurePosixPath

    p = PurePosixPath(pattern)
    if not pattern.strip() or p.is_absolute() or ".." in p.parts:
        fail(f"must be a glob relative to the folder (e.g. '**/*.txt'), got {pattern!r}", "--pattern")
    return pattern


@tokenizer_app.command("eval")
def eval_tokenizer_cmd(
    tokenizer: Annotated[Path, typer.Argument(help="A tokenizer folder (or tokenizer.json)", exists=True)],
    folder: Annotated[Path, typer.Argument(help="Folder of UTF-8 text files", exists=True, file_okay=False)],
    noise_rate: Annotated[Optional[list[float]], float_option("OCR noise rates for boundary stability (repeatable)", min=0.0, max=1.0)] = None,
    pattern: Annotated[str, typer.Option(help="Which files of the folder to read (glob)")] = "**/*.txt",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON")] = False,
) -> None:
    """Bytes per token, fertility, vocabulary use and boundary stability of TOKENIZER on FOLDER."""
    from rich.table import Table

    from tokenworks.text import evaluate_tokenizer, load_tokenizer, read_text_folder

    from tokenworks.checks import FileFormatError
    from tokenworks.io import load_json

    _check_glob(pattern)
    tok_file = tokenizer / "tokenizer.json" if tokenizer.is_dir() else tokenizer
    if not tok_file.is_file():
        fail(f"no tokenizer at {str(tokenizer)!r}: expected a tokenizer.json file or a folder holding one", "TOKENIZER")
    spec = load_json(tok_file, kind=dict)
    if not isinstance(spec.get("model"), dict):
        raise FileFormatError(str(tok_file), "is not a Hugging Face tokenizer.json (no 'model' object)")
    try:
        tok = load_tokenizer(tokenizer)
    except Exception as e:  # the tokenizers library raises its own exception types for a bad file
        raise FileFormatError(str(tok_file), f"cannot be loaded as a tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    try:
        texts = read_text_folder(folder, pattern)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e), "FOLDER")
    metrics = evaluate_tokenizer(tok, texts, noise_rates=tuple(noise_rate or (0.02, 0.05, 0.1)))
    if as_json:
        console.print_json(json.dumps(metrics))
        return
    table = Table(title=f"{tokenizer} on {folder} ({len(texts)} files)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    console.print(table)


@train_app.command("zett-hypernet")
def train_zett_hypernet_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/text/zett-hypernet)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Main training steps (default: the committed recipe)", min=1, max=MAX_STEPS)] = None,
    identity_steps: Annotated[Optional[int], typer.Option(help="Identity warm-up steps (default: the committed recipe)", min=0, max=MAX_STEPS)] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Save weights in float16 (for assets/)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    seed: Annotated[Optional[int], typer.Option(help="Seeds the initialisation and the data order (default: the recipe's)", min=0, max=2**31 - 1)] = None,
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Training corpus, repeatable: prose, legal (default: both)")] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the ZeTT hypernetwork (P29) of the reference LM on prose + legal text (resumable).
    `--corpus prose` trains the control that never sees legal text (assets/text/zett-hypernet-prose)."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir, prepare_output
    from tokenworks.text.zett import REFERENCE_CORPORA, HypernetTrainConfig, _check_corpora, reference_hypernet, reference_name, train_reference_hypernet

    try:
        corpora = _check_corpora(corpus or REFERENCE_CORPORA)
    except (TypeError, ValueError) as e:
        fail(str(e), "--corpus")
    config = HypernetTrainConfig()
    if steps is not None:
        config = replace(config, steps=steps, warmup=min(config.warmup, steps))
    if identity_steps is not None:
        config = replace(config, identity_steps=identity_steps)
    if seed is not None:
        config = replace(config, seed=seed)
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    if out is None and not fp16 and steps is None and identity_steps is None and seed is None:
        reference_hypernet(device=device, corpora=corpora)
        console.print("ZeTT hypernetwork ready (cache or assets)")
        return
    name = reference_name(corpora).split("/")[-1]
    target = out or cache_dir("models", "text", name)
    run = f"{name}-{config.identity_steps}-{config.steps}" + (f"-seed{seed}" if seed is not None else "")
    with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
        info = train_reference_hypernet(
            tmp, config, ckpt_dir=cache_dir("runs", run), device=device, fp16=fp16, corpora=corpora
        )
    console.print(f"saved to {target}: {info}")
