"""``tokenworks list | bench | report | readme | train ...``"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

import tokenworks as tw

app = typer.Typer(
    help="tokenworks: tokenizers, quantizers, token compression, KV-cache policies and decoding, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train the reference models (cached; used by every family).", no_args_is_help=True)
app.add_typer(train_app, name="train")
console = Console()


def _digest(config) -> str:
    """A short, stable name for a training recipe (its run folder for resuming)."""
    import dataclasses
    import hashlib
    import json

    return hashlib.sha1(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:10]


def fail(msg: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {msg}")
    raise typer.Exit(2)


def parse_options(pairs: list[str] | None, flag: str) -> dict:
    """Repeated ``FLAG key=value`` options as a dict; values are JSON when they parse (numbers,
    bools, lists, dicts), else strings. A malformed pair fails naming ``flag``."""
    import json

    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            fail(f"{flag} expects key=value, got {p!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command("list")
def list_methods(
    family: Annotated[Optional[str], typer.Option(help=f"Only this family: {', '.join(tw.FAMILIES)}")] = None,
    kind: Annotated[Optional[str], typer.Option(help="Only this interface, e.g. quantizer")] = None,
) -> None:
    """Every registered method with its family, paper ID and title."""
    try:
        ms = tw.methods(family=family.upper() if family else None, kind=kind)
    except ValueError as e:
        fail(str(e))
    table = Table(title=f"{len(ms)} methods")
    for col in ("name", "family", "kind", "paper", "title / citation"):
        table.add_column(col)
    for m in ms:
        table.add_row(m.name, m.family, m.kind or "", m.paper or "baseline", m.title)
    console.print(table)


def bench_root(bench_dir: Path | None = None) -> Path:
    """The folder that holds ``bench/`` (the source checkout), added to ``sys.path``."""
    candidates = []
    if bench_dir is not None:
        candidates.append(Path(bench_dir).resolve().parent if Path(bench_dir).name == "bench" else Path(bench_dir).resolve())
    if os.environ.get("TOKENWORKS_BENCH"):
        candidates.append(Path(os.environ["TOKENWORKS_BENCH"]).resolve().parent)
    cwd = Path.cwd().resolve()
    candidates += [cwd, *cwd.parents, Path(tw.__file__).resolve().parents[2]]
    for c in candidates:
        if (c / "bench" / "suites" / "__init__.py").is_file():
            if str(c) not in sys.path:
                sys.path.insert(0, str(c))
            return c
    fail("cannot find the benchmark folder bench/ (run from the tokenworks checkout, or pass --bench-dir)")
    raise AssertionError


@app.command()
def bench(
    suites: Annotated[Optional[list[str]], typer.Argument(help="Suites to run (default: all)")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for results.json, report.md and plots")] = Path("reports/latest"),
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    quick: Annotated[bool, typer.Option("--quick", help="The small variant of each suite (used by `make bench`)")] = False,
    bench_dir: Annotated[Optional[Path], typer.Option(help="Folder holding bench/ (default: found from here)")] = None,
    list_suites: Annotated[bool, typer.Option("--list", help="List the suites and exit")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Measure again even when a suite's inputs (code, assets, libraries, machine) are unchanged since a cached run")] = False,
) -> None:
    """Run benchmark suites and write results.json + report.md + plots.

    A suite whose inputs are unchanged since a run on this machine reuses that run's rows (the
    report says so); --fresh measures again."""
    import torch

    bench_root(bench_dir)
    from bench import suites as registry
    from bench.harness import Context, run_suites
    from bench.report import make_report

    if list_suites:
        for name in registry.available():
            console.print(f"{name}: {getattr(registry.load(name), 'DESCRIPTION', '').strip().splitlines()[0]}")
        return
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        fail(f"--device must be cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail("--device cuda was asked for, but torch sees no CUDA device")
    names = suites or registry.available()
    unknown = [n for n in names if n not in registry.SUITE_MODULES]
    if unknown:
        fail(f"unknown suite(s) {unknown}; known: {', '.join(registry.SUITE_MODULES)}")
    ctx = Context(device=device, quick=quick, out_dir=out, fresh=fresh)
    run_suites({n: registry.load(n) for n in names}, ctx)
    path = make_report(out / "results.json")
    console.print(f"results: {out / 'results.json'}\nreport:  {path}")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A results.json (or its folder)")] = Path("reports/latest"),
    bench_dir: Annotated[Optional[Path], typer.Option()] = None,
) -> None:
    """Re-make report.md and the plots from a results.json alone."""
    bench_root(bench_dir)
    from bench.report import make_report

    path = results / "results.json" if results.is_dir() else results
    try:
        console.print(f"report: {make_report(path)}")
    except FileNotFoundError as e:
        fail(str(e))


@app.command()
def readme(
    readme_path: Annotated[Path, typer.Option("--readme")] = Path("README.md"),
    results: Annotated[Path, typer.Option()] = Path("reports/latest/results.json"),
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the README's table is out of date")] = False,
    bench_dir: Annotated[Optional[Path], typer.Option()] = None,
) -> None:
    """Regenerate the README's method table from the registry and the latest results."""
    root = bench_root(bench_dir)
    from bench.readme import BEGIN, END, method_table, update_readme
    from tokenworks.io import load_json

    readme_path = readme_path if readme_path.is_absolute() or readme_path.exists() else root / readme_path
    results = results if results.is_absolute() or results.exists() else root / results
    if check:
        import re

        text = readme_path.read_text(encoding="utf-8")
        m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, flags=re.S)
        want = method_table(load_json(results) if results.is_file() else None)
        if not m or m.group(1) != want:
            fail(f"{readme_path}'s method table is out of date: run `tokenworks readme`")
        console.print("README method table is up to date")
        return
    changed = update_readme(readme_path, results)
    console.print(f"{readme_path}: {'updated' if changed else 'already up to date'}")


@train_app.command("reference-tokenizer")
def train_reference_tokenizer(
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size")] = 4096,
) -> None:
    """Train (or load from cache) the byte-level BPE on the prose corpus."""
    from tokenworks.models import reference_tokenizer

    tok = reference_tokenizer(vocab_size)
    console.print(f"reference tokenizer: {len(tok)} tokens")


@train_app.command("reference-lm")
def train_reference_lm_cmd(
    out: Annotated[Optional[Path], typer.Option(help="Write here instead of the cache (e.g. assets/reference-lm)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the committed recipe)")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Save weights in float16 (for assets/)")] = False,
    device: Annotated[str, typer.Option()] = "cpu",
    train_bytes: Annotated[Optional[int], typer.Option(help="Train on the first N bytes of the corpus only (tiny runs)")] = None,
    eval_windows: Annotated[Optional[int], typer.Option(help="Evaluate on at most N held-out windows (tiny runs)")] = None,
) -> None:
    """Train the reference Llama LM on the prose corpus (resumable; reports held-out perplexity)."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir
    from tokenworks.models import LMTrainConfig, reference_lm, train_reference_lm

    config = LMTrainConfig()
    try:
        if steps is not None:
            config = replace(config, steps=steps, warmup=min(config.warmup, steps))
        if train_bytes is not None or eval_windows is not None:
            config = replace(config, train_bytes=train_bytes, eval_windows=eval_windows)
    except (TypeError, ValueError) as e:
        fail(str(e))
    if out is None and not fp16 and steps is None and train_bytes is None and eval_windows is None:
        reference_lm(device=device)
        console.print("reference LM ready (cache or assets)")
        return
    target = out or cache_dir("models", "reference-lm")
    with atomic_dir(target) as tmp:
        info = train_reference_lm(tmp, config, ckpt_dir=cache_dir("runs", f"reference-lm-{_digest(config)}"), device=device, fp16=fp16)
    console.print(f"saved to {target}: held-out {info['held_out']}")


@train_app.command("classifier")
def train_classifier_cmd(
    dataset: Annotated[str, typer.Option(help="fashion-mnist or mnist5k")] = "fashion-mnist",
    out: Annotated[Optional[Path], typer.Option(help="Write here instead of the cache (e.g. assets/classifier-fashion-mnist)")] = None,
    steps: Annotated[Optional[int], typer.Option()] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Train the image classifier whose features define fd_local."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir
    from tokenworks.models import ClassifierConfig, image_classifier, train_image_classifier

    try:
        config = ClassifierConfig(dataset=dataset)
        if steps is not None:
            config = replace(config, steps=steps)
    except (TypeError, ValueError) as e:
        fail(str(e))
    if out is None and steps is None:
        image_classifier(dataset)
        console.print(f"classifier for {dataset} ready (cache or assets)")
        return
    target = out or cache_dir("models", f"classifier-{dataset}")
    with atomic_dir(target) as tmp:
        info = train_image_classifier(tmp, config, ckpt_dir=cache_dir("runs", f"classifier-{dataset}-{_digest(config)}"), device=device)
    console.print(f"saved to {target}: {info}")


@app.command()
def publish(
    pattern: Annotated[str, typer.Argument(help="Model name or glob under the cache's models/ folder, e.g. 'quantizers/*'")],
    assets: Annotated[Optional[Path], typer.Option(help="Assets folder (default: the checkout's assets/)")] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="Keep float32 (default: float16, as committed assets are)")] = False,
) -> None:
    """Copy trained models from the cache into assets/ (float16 safetensors) so the benchmark starts warm."""
    import shutil

    from tokenworks.io import assets_dir, atomic_dir, cache_dir, load_tensors, save_tensors

    root = cache_dir("models")
    matches = sorted(p for p in root.glob(pattern) if (p / "tokenworks.json").is_file())
    if not matches:
        fail(f"no trained model matching {pattern!r} in {root}")
    target_root = assets or assets_dir() or Path("assets")
    for src in matches:
        dst = target_root / src.relative_to(root)
        with atomic_dir(dst) as tmp:
            for f in src.iterdir():
                if f.suffix == ".safetensors" and not fp32:
                    t = load_tensors(f)
                    save_tensors(tmp / f.name, {k: v.half() if v.is_floating_point() else v for k, v in t.items()})
                elif f.is_file():
                    shutil.copy2(f, tmp / f.name)
        size = sum(f.stat().st_size for f in dst.iterdir()) / 1e6
        console.print(f"{src} -> {dst} ({size:.2f} MB)")


# Family commands: every module cli/<family>.py attaches its commands to `app` on import.
for _mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _mod.name not in ("main", "__init__"):
        importlib.import_module(f"tokenworks.cli.{_mod.name}")
