"""TXT commands: ``tokenworks tokenizer train|eval`` and ``tokenworks train zett-hypernet``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

import tokenworks as tw
from tokenworks.cli.main import app, console, fail, parse_options, train_app

tokenizer_app = typer.Typer(help="Train a tokenizer from a folder of text files; evaluate one on a folder.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def train_tokenizer_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of UTF-8 text files")],
    out: Annotated[Path, typer.Option(help="Output folder (tokenizer.json + transformers files)")],
    recipe: Annotated[str, typer.Option(help="A registered recipe: byte_bpe, kl3m_domain_bpe, kl3m_char_bpe")] = "kl3m_domain_bpe",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size (special and fixed tokens included)")] = 4096,
    option: Annotated[Optional[list[str]], typer.Option(help="Recipe option key=value (JSON value), repeatable; e.g. cased=false")] = None,
    pattern: Annotated[str, typer.Option(help="Which files of the folder to read (glob)")] = "**/*.txt",
) -> None:
    """Train a tokenizer with a recipe on every text file of FOLDER and save it to --out."""
    from tokenworks.io import atomic_dir
    from tokenworks.text import read_text_folder

    names = [m.name for m in tw.methods(kind="text_tokenizer")]
    if recipe not in names:
        fail(f"--recipe must be one of {names}, got {recipe!r}")
    try:
        r = tw.create(recipe, vocab_size=vocab_size, **parse_options(option, "--option"))
        texts = read_text_folder(folder, pattern)
    except (TypeError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    tok = r.train(texts, show_progress=True)
    with atomic_dir(out) as tmp:
        tok.save_pretrained(tmp)
        (tmp / "recipe.json").write_text(json.dumps({"recipe": recipe, "options": r.options(), "files": len(texts)}, indent=2) + "\n")
    console.print(f"{recipe}: {len(tok)} tokens from {len(texts)} file(s) -> {out}")


@tokenizer_app.command("eval")
def eval_tokenizer_cmd(
    tokenizer: Annotated[Path, typer.Argument(help="A tokenizer folder (or tokenizer.json)")],
    folder: Annotated[Path, typer.Argument(help="Folder of UTF-8 text files")],
    noise_rate: Annotated[Optional[list[float]], typer.Option(help="OCR noise rates for boundary stability (repeatable)")] = None,
    pattern: Annotated[str, typer.Option(help="Which files of the folder to read (glob)")] = "**/*.txt",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON")] = False,
) -> None:
    """Bytes per token, fertility, vocabulary use and boundary stability of TOKENIZER on FOLDER."""
    from rich.table import Table

    from tokenworks.text import evaluate_tokenizer, load_tokenizer, read_text_folder

    try:
        tok = load_tokenizer(tokenizer)
        texts = read_text_folder(folder, pattern)
        metrics = evaluate_tokenizer(tok, texts, noise_rates=tuple(noise_rate or (0.02, 0.05, 0.1)))
    except (TypeError, ValueError, FileNotFoundError) as e:
        fail(str(e))
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
    out: Annotated[Optional[Path], typer.Option(help="Write here instead of the cache (e.g. assets/text/zett-hypernet)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Main training steps (default: the committed recipe)")] = None,
    identity_steps: Annotated[Optional[int], typer.Option(help="Identity warm-up steps (default: the committed recipe)")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Save weights in float16 (for assets/)")] = False,
    device: Annotated[str, typer.Option()] = "cpu",
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Training corpus, repeatable: prose, legal (default: both)")] = None,
) -> None:
    """Train the ZeTT hypernetwork (P29) of the reference LM on prose + legal text (resumable).
    `--corpus prose` trains the control that never sees legal text (assets/text/zett-hypernet-prose)."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir
    from tokenworks.text.zett import REFERENCE_CORPORA, HypernetTrainConfig, _check_corpora, reference_hypernet, reference_name, train_reference_hypernet

    config = HypernetTrainConfig()
    try:
        corpora = _check_corpora(corpus or REFERENCE_CORPORA)
        if steps is not None:
            config = replace(config, steps=steps, warmup=min(config.warmup, steps))
        if identity_steps is not None:
            config = replace(config, identity_steps=identity_steps)
    except (TypeError, ValueError) as e:
        fail(str(e))
    if out is None and not fp16 and steps is None and identity_steps is None:
        reference_hypernet(device=device, corpora=corpora)
        console.print("ZeTT hypernetwork ready (cache or assets)")
        return
    name = reference_name(corpora).split("/")[-1]
    target = out or cache_dir("models", "text", name)
    with atomic_dir(target) as tmp:
        info = train_reference_hypernet(
            tmp, config, ckpt_dir=cache_dir("runs", f"{name}-{config.identity_steps}-{config.steps}"), device=device, fp16=fp16, corpora=corpora
        )
    console.print(f"saved to {target}: {info}")
