"""``tokenworks list | bench | report | readme | train ...``

Errors: every command runs inside one handler (:class:`SafeGroup`) that turns the project's
validation errors (:class:`tokenworks.checks.ArgumentError` and its ``FileFormatError`` /
``OutputError``, other ``ValueError``\\s, :class:`tokenworks.registry.UnknownMethodError`)
into ``Error: <argument>: <what was expected>`` with exit code 2, a missing or unreadable
file into ``Error: <path>: <reason>`` with exit code 1, and lets only real internal errors
show a traceback (``--debug`` shows one for every error). Options are typed so that bad
values are refused while the command line is parsed, before any work starts: numbers carry
their range (``min``/``max``, finite), paths say whether they must exist, choices list their
values, ``--device`` and ``--name`` are checked by callbacks.
"""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer._click.exceptions import ClickException
from typer.core import TyperArgument, TyperGroup

import tokenworks as tw
from tokenworks.checks import ArgumentError, FileFormatError, check_device, check_name
from tokenworks.registry import UnknownMethodError

DEBUG_ENV = "TOKENWORKS_DEBUG"


def _flag(ctx: Any, arg: str) -> str:
    """The command-line spelling of ``arg`` (a field name like ``vocab_size``) in ``ctx``'s command."""
    if ctx is None or not arg:
        return arg
    want = {arg, arg.replace("-", "_"), arg.lstrip("-").replace("-", "_")}
    for p in ctx.command.params:
        if p.name in want or arg in getattr(p, "opts", ()):
            return p.name.upper() if isinstance(p, TyperArgument) else max(p.opts, key=len)
    return arg


def _handle(e: BaseException, ctx: Any) -> None:
    """Turn a user-facing error into ``Error: ...`` and an exit code; re-raise the rest."""
    if isinstance(e, (typer.Exit, typer.Abort, ClickException)) or not isinstance(e, Exception):
        raise e
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0") or (ctx is not None and ctx.find_root().meta.get("tokenworks.debug"))
    if debug:
        raise e
    if isinstance(e, ArgumentError):
        flag = _flag(ctx, e.arg)
        if flag != e.arg:  # a field of this command's option: name the option, keep the field's message
            msg = f"{flag}: {e}"
        elif e.arg.startswith("-") or e.arg.isupper() or isinstance(e, FileFormatError) or "/" in e.arg:
            msg = f"{e.arg}: {e.expected}"  # already the option, the argument or the file
        else:
            msg = str(e)  # a field given inside --set/--option: "num_latents must be >= 1"
        code = 2
    elif isinstance(e, (UnknownMethodError, ValueError)):
        word = str(e).split(" ", 1)[0]  # "vocab_size must be ...": name the option when it is one
        flag = _flag(ctx, word)
        msg, code = (f"{flag}: {e}" if flag != word else str(e)), 2
    elif isinstance(e, OSError) and (e.filename is not None or isinstance(e, FileNotFoundError)):
        where = f"{e.filename}: " if e.filename is not None else ""
        msg, code = f"{where}{e.strerror or e}", 1
    else:
        raise e  # a real internal error: let its traceback show
    typer.echo(f"Error: {msg}", err=True)
    raise typer.Exit(code) from None


def _safe_command(cmd: Any) -> Any:
    """Wrap ``cmd.invoke`` (or a group's ``get_command``) once with :func:`_handle`."""
    if getattr(cmd, "_tokenworks_safe", False):
        return cmd
    if isinstance(cmd, TyperGroup):
        get = cmd.get_command

        def get_command(ctx: Any, name: str, _get=get):
            sub = _get(ctx, name)
            return _safe_command(sub) if sub is not None else None

        cmd.get_command = get_command  # type: ignore[method-assign]
    else:
        invoke = cmd.invoke

        def safe_invoke(ctx: Any, _invoke=invoke):
            try:
                return _invoke(ctx)
            except Exception as e:  # noqa: BLE001 - sorted out in _handle
                _handle(e, ctx)

        cmd.invoke = safe_invoke  # type: ignore[method-assign]
    cmd._tokenworks_safe = True  # type: ignore[attr-defined]
    return cmd


class SafeGroup(TyperGroup):
    """The root group: every sub-command it resolves runs inside :func:`_handle`."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        sub = super().get_command(ctx, cmd_name)
        return _safe_command(sub) if sub is not None else None


app = typer.Typer(
    cls=SafeGroup,
    help="tokenworks: tokenizers, quantizers, token compression, KV-cache policies and decoding, measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # errors stay one plain line: "Error: Invalid value for '--x': ..."
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of any error")] = False,
) -> None:
    ctx.meta["tokenworks.debug"] = debug


train_app = typer.Typer(help="Train the reference models (cached; used by every family).", no_args_is_help=True)
app.add_typer(train_app, name="train")
console = Console()


# ---------------------------------------------------------------------------- option types
def choice(values: Callable[[], Any], flag: str, explain: Callable[[str], str | None] | None = None) -> Callable[[str], str]:
    """A parser that accepts one of ``values()`` (called when first needed: the registry) and
    otherwise says ``<flag> must be one of [...]``."""

    def parse(value: str) -> str:
        allowed = list(values())
        if value not in allowed:
            why = explain(value) if explain is not None else None
            raise typer.BadParameter(why or f"{flag} must be one of {allowed}, got {value!r}")
        return value

    parse.tokenworks_choices = values  # type: ignore[attr-defined]
    return parse


def method_choice(kind: str, flag: str) -> Callable[[str], str]:
    """The registered methods of ``kind``; a method of another kind is named as such."""

    def explain(value: str) -> str | None:
        other = [m.kind for m in tw.methods() if m.name == value]
        return f"{value!r} is a {other[0]}, not an {kind.replace('_', ' ')}" if other else None

    return choice(lambda: [m.name for m in tw.methods(kind=kind)], flag, explain)


def output_dir(value: Any) -> Path:
    """Parser of a folder a command writes (checked again with ``prepare_output`` before work)."""
    if not str(value).strip():
        raise typer.BadParameter("must be a folder path, got ''")
    if os.path.lexists(value) and not os.path.isdir(value):
        raise typer.BadParameter(f"{value} is an existing file; a folder is written here and the file is kept (choose another path)")
    return Path(value)


output_dir.tokenworks_output = "folder"  # type: ignore[attr-defined]


def output_parent(value: Any) -> Path:
    """Parser of a parent folder a command writes new sub-folders into (``--out`` of ``vision train``)."""
    return output_dir(value)


output_parent.tokenworks_output = "parent"  # type: ignore[attr-defined]


def _check_device_cb(value: Any) -> Any:
    if value is None:
        return value
    try:
        return check_device("--device", value)
    except ArgumentError as e:
        raise typer.BadParameter(e.expected) from None


def _check_name_cb(value: Any) -> Any:
    if value is None:
        return value
    try:
        return check_name("--name", value)
    except ArgumentError as e:
        raise typer.BadParameter(e.expected) from None


def _finite_cb(value: Any) -> Any:
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if v is not None and not math.isfinite(v):
            raise typer.BadParameter(f"must be a finite number, got {v}")
    return value


def device_option(help: str = "cpu, cuda, cuda:N or mps") -> Any:
    return typer.Option(help=help, callback=_check_device_cb)


def name_option(help: str) -> Any:
    return typer.Option(help=help, callback=_check_name_cb)


def out_option(help: str, *names: str, parent: bool = False) -> Any:
    """A folder the command writes (``parent``: a folder it writes new sub-folders into)."""
    return typer.Option(*names, help=help, parser=output_parent if parent else output_dir, metavar="FOLDER")


def overwrite_option() -> Any:
    return typer.Option(
        "--overwrite", help="Write into an existing folder that tokenworks did not write (its other files are kept; a clash is refused)"
    )


def float_option(help: str | None = None, *, min: float | None = None, max: float | None = None, **kw: Any) -> Any:
    return typer.Option(help=help, min=min, max=max, callback=_finite_cb, **kw)


MAX_STEPS = 10_000_000


def _digest(config) -> str:
    """A short, stable name for a training recipe (its run folder for resuming)."""
    import dataclasses
    import hashlib
    import json

    return hashlib.sha1(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:10]


def fail_options(e: Exception, flag: str) -> None:
    """Report an error from building a method out of ``flag key=value`` options: it names the
    command's own option when the field is one (``vocab_size`` -> ``--vocab-size``), else ``flag``."""
    from typer._click.globals import get_current_context

    word = e.arg if isinstance(e, ArgumentError) else str(e).split(" ", 1)[0]
    own = _flag(get_current_context(silent=True), word)
    fail(str(e), own if own != word else flag)


def fail(msg: str, arg: str | None = None, code: int = 2) -> None:
    """Print ``Error: [<arg>: ]<msg>`` and exit with ``code`` (2: bad input)."""
    typer.echo(f"Error: {arg + ': ' if arg else ''}{msg}", err=True)
    raise typer.Exit(code)


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


def _kinds() -> list[str]:
    return sorted({m.kind for m in tw.methods() if m.kind})


@app.command("list")
def list_methods(
    family: Annotated[Optional[str], typer.Option(help=f"Only this family: {', '.join(tw.FAMILIES)}", parser=choice(lambda: [*tw.FAMILIES, *(f.lower() for f in tw.FAMILIES)], "family"))] = None,
    kind: Annotated[Optional[str], typer.Option(help="Only this interface, e.g. quantizer", parser=choice(_kinds, "--kind"))] = None,
) -> None:
    """Every registered method with its family, paper ID and title."""
    ms = tw.methods(family=family.upper() if family else None, kind=kind)
    table = Table(title=f"{len(ms)} methods")
    for col in ("name", "family", "kind", "paper", "title / citation"):
        table.add_column(col)
    for m in ms:
        table.add_row(m.name, m.family, m.kind or "", m.paper or "baseline", m.title)
    console.print(table)


def bench_root(bench_dir: Path | None = None, *, installed: bool = True) -> Path:
    """The folder that holds ``bench/`` (the source checkout), added to ``sys.path``.

    ``bench_dir`` (the folder holding ``bench/``, or ``bench/`` itself) wins and must hold it;
    else ``$TOKENWORKS_BENCH``, the current folder and its parents, and (with ``installed``)
    the checkout this package was installed from."""
    if bench_dir is not None:
        d = Path(bench_dir).resolve()
        candidates = [d.parent if d.name == "bench" else d]
        if not (candidates[0] / "bench" / "suites" / "__init__.py").is_file():
            fail(f"{bench_dir} holds no bench/suites/: expected a tokenworks checkout (or its bench/ folder)", "--bench-dir")
    else:
        candidates = []
        if os.environ.get("TOKENWORKS_BENCH"):
            candidates.append(Path(os.environ["TOKENWORKS_BENCH"]).resolve().parent)
        cwd = Path.cwd().resolve()
        candidates += [cwd, *cwd.parents]
        if installed:
            candidates.append(Path(tw.__file__).resolve().parents[2])
    for c in candidates:
        if (c / "bench" / "suites" / "__init__.py").is_file():
            if str(c) not in sys.path:
                sys.path.insert(0, str(c))
            return c
    fail("cannot find the benchmark folder bench/: run from the tokenworks checkout, or pass it", "--bench-dir")
    raise AssertionError


def _bench_dir_option() -> Any:
    return typer.Option(help="Folder holding bench/ (default: found from here)", exists=True, file_okay=False)


@app.command()
def bench(
    suites: Annotated[Optional[list[str]], typer.Argument(help="Suites to run (default: all; --list shows them)")] = None,
    out: Annotated[Path, out_option("Output folder for results.json, report.md and plots")] = Path("reports/latest"),
    device: Annotated[str, device_option()] = "cpu",
    quick: Annotated[bool, typer.Option("--quick", help="The small variant of each suite (used by `make bench`)")] = False,
    bench_dir: Annotated[Optional[Path], _bench_dir_option()] = None,
    list_suites: Annotated[bool, typer.Option("--list", help="List the suites and exit")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Measure again even when a suite's inputs (code, assets, libraries, machine) are unchanged since a cached run")] = False,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Run benchmark suites and write results.json + report.md + plots.

    A suite whose inputs are unchanged since a run on this machine reuses that run's rows (the
    report says so); --fresh measures again."""
    from tokenworks.io import prepare_output

    bench_root(bench_dir)
    from bench import suites as registry

    if list_suites:
        for name in registry.available():
            console.print(f"{name}: {getattr(registry.load(name), 'DESCRIPTION', '').strip().splitlines()[0]}")
        return
    names = suites or registry.available()
    unknown = [n for n in names if n not in registry.SUITE_MODULES]
    if unknown:
        fail(f"unknown suite(s) {unknown}; expected some of: {', '.join(registry.SUITE_MODULES)}", "SUITES")
    prepare_output(out, overwrite=overwrite, arg="--out")
    from bench.harness import Context, run_suites
    from bench.report import make_report

    ctx = Context(device=device, quick=quick, out_dir=out, fresh=fresh)
    run_suites({n: registry.load(n) for n in names}, ctx)
    path = make_report(out / "results.json")
    console.print(f"results: {out / 'results.json'}\nreport:  {path}")


def load_results(path: Path, arg: str) -> dict:
    """A benchmark ``results.json`` (or its folder), checked: JSON object with a list of row objects."""
    from tokenworks.checks import FileFormatError
    from tokenworks.io import load_json

    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(2, "no results.json here; run `tokenworks bench` first", str(path))
    results = load_json(path, kind=dict)
    rows = results.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise FileFormatError(str(path), "is not a tokenworks results file (expected an object with a list of 'rows')")
    if not rows:
        raise FileFormatError(str(path), "holds no result rows; run `tokenworks bench` first")
    if not isinstance(results.get("suites", {}), dict) or not isinstance(results.get("machine", {}), dict):
        raise FileFormatError(str(path), "is not a tokenworks results file ('suites' and 'machine' must be objects)")
    return results


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A results.json (or its folder)", exists=True)] = Path("reports/latest"),
    bench_dir: Annotated[Optional[Path], _bench_dir_option()] = None,
) -> None:
    """Re-make report.md and the plots from a results.json alone (written next to it)."""
    path = results / "results.json" if results.is_dir() else results
    load_results(path, "RESULTS")
    bench_root(bench_dir)
    from bench.report import make_report

    console.print(f"report: {make_report(path)}")


@app.command()
def readme(
    readme_path: Annotated[Optional[Path], typer.Option("--readme", help="The README to update (default: README.md of the checkout)", dir_okay=False)] = None,
    results: Annotated[Optional[Path], typer.Option(help="results.json (default: reports/latest/results.json of the checkout)", dir_okay=False)] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the README's table is out of date")] = False,
    bench_dir: Annotated[Optional[Path], _bench_dir_option()] = None,
) -> None:
    """Regenerate the README's method table from the registry and the latest results.

    Run it in a tokenworks checkout (or pass --bench-dir); it never edits the README of the
    checkout the package happens to be installed from."""
    import re

    root = bench_root(bench_dir, installed=False)
    from bench.readme import BEGIN, END, method_table, update_readme

    readme_path = readme_path if readme_path is not None else root / "README.md"
    if not readme_path.is_file():
        fail(f"{readme_path} does not exist", "--readme")
    text = readme_path.read_text(encoding="utf-8", errors="replace")
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, flags=re.S)
    if m is None:
        fail(f"{readme_path} has no generated block ({BEGIN} ... {END}); it is left as it is", "--readme")
    if results is not None and not results.is_file():
        fail(f"{results} does not exist", "--results")
    results = results if results is not None else root / "reports" / "latest" / "results.json"
    data = load_results(results, "--results") if results.is_file() else None
    if check:
        if m.group(1) != method_table(data):
            fail(f"{readme_path}'s method table is out of date: run `tokenworks readme`", code=1)
        console.print("README method table is up to date")
        return
    changed = update_readme(readme_path, results)
    console.print(f"{readme_path}: {'updated' if changed else 'already up to date'}")


def _seed_option() -> Any:
    return typer.Option(help="Seeds the initialisation and the data order (default: the committed recipe's)", min=0, max=2**31 - 1)


@train_app.command("reference-tokenizer")
def train_reference_tokenizer(
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size", min=258, max=1_000_000)] = 4096,
) -> None:
    """Train (or load from cache) the byte-level BPE on the prose corpus."""
    from tokenworks.models import reference_tokenizer

    tok = reference_tokenizer(vocab_size)
    console.print(f"reference tokenizer: {len(tok)} tokens")


@train_app.command("reference-lm")
def train_reference_lm_cmd(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/reference-lm)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the committed recipe)", min=1, max=MAX_STEPS)] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Save weights in float16 (for assets/)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    train_bytes: Annotated[Optional[int], typer.Option(help="Train on the first N bytes of the corpus only (tiny runs)", min=1, max=10**12)] = None,
    eval_windows: Annotated[Optional[int], typer.Option(help="Evaluate on at most N held-out windows (tiny runs)", min=1, max=10**9)] = None,
    seed: Annotated[Optional[int], _seed_option()] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the reference Llama LM on the prose corpus (resumable; reports held-out perplexity)."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir, prepare_output
    from tokenworks.models import LMTrainConfig, reference_lm, train_reference_lm

    config = LMTrainConfig()
    if steps is not None:
        config = replace(config, steps=steps, warmup=min(config.warmup, steps))
    if train_bytes is not None or eval_windows is not None:
        config = replace(config, train_bytes=train_bytes, eval_windows=eval_windows)
    if seed is not None:
        config = replace(config, seed=seed)
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    if out is None and not fp16 and steps is None and train_bytes is None and eval_windows is None and seed is None:
        reference_lm(device=device)
        console.print("reference LM ready (cache or assets)")
        return
    target = out or cache_dir("models", "reference-lm")
    with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
        info = train_reference_lm(tmp, config, ckpt_dir=cache_dir("runs", f"reference-lm-{_digest(config)}"), device=device, fp16=fp16)
    console.print(f"saved to {target}: held-out {info['held_out']}")


@train_app.command("classifier")
def train_classifier_cmd(
    dataset: Annotated[Literal["fashion-mnist", "mnist5k"], typer.Option(help="The image set")] = "fashion-mnist",
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/classifier-fashion-mnist)")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, max=MAX_STEPS)] = None,
    device: Annotated[str, device_option()] = "cpu",
    seed: Annotated[Optional[int], _seed_option()] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the image classifier whose features define fd_local."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir, prepare_output
    from tokenworks.models import ClassifierConfig, image_classifier, train_image_classifier

    config = ClassifierConfig(dataset=dataset)
    if steps is not None:
        config = replace(config, steps=steps)
    if seed is not None:
        config = replace(config, seed=seed)
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    if out is None and steps is None and seed is None:
        image_classifier(dataset)
        console.print(f"classifier for {dataset} ready (cache or assets)")
        return
    target = out or cache_dir("models", f"classifier-{dataset}")
    with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
        info = train_image_classifier(tmp, config, ckpt_dir=cache_dir("runs", f"classifier-{dataset}-{_digest(config)}"), device=device)
    console.print(f"saved to {target}: {info}")


def _check_pattern(pattern: str) -> str:
    from pathlib import PurePosixPath

    p = PurePosixPath(pattern)
    if not pattern.strip() or p.is_absolute() or ".." in p.parts or "\\" in pattern:
        fail(f"must be a name or glob under the cache's models/ folder (no '..', not absolute), got {pattern!r}", "PATTERN")
    return pattern


@app.command()
def publish(
    pattern: Annotated[str, typer.Argument(help="Model name or glob under the cache's models/ folder, e.g. 'quantizers/*'")],
    assets: Annotated[Optional[Path], out_option("Assets folder (default: the checkout's assets/)", parent=True)] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="Keep float32 (default: float16, as committed assets are)")] = False,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Copy trained models from the cache into assets/ (float16 safetensors) so the benchmark starts warm."""
    import shutil

    from tokenworks.io import MARKER, assets_dir, atomic_dir, cache_dir, inside, load_tensors, prepare_output, save_tensors

    _check_pattern(pattern)
    root = cache_dir("models")
    matches = sorted(p for p in root.glob(pattern) if (p / MARKER).is_file() and p != root)
    if not matches:
        fail(f"no trained model matching {pattern!r} in {root}", "PATTERN")
    target_root = assets or assets_dir() or Path("assets")
    dsts = [inside(target_root, target_root / src.relative_to(root), "--assets") for src in matches]
    for dst in dsts:
        prepare_output(dst, overwrite=overwrite, arg="--assets")
    for src, dst in zip(matches, dsts):
        with atomic_dir(dst, overwrite=overwrite, arg="--assets") as tmp:
            for f in src.iterdir():
                if f.suffix == ".safetensors" and not fp32:
                    t = load_tensors(f)
                    save_tensors(tmp / f.name, {k: v.half() if v.is_floating_point() else v for k, v in t.items()})
                elif f.is_file():
                    shutil.copy2(f, tmp / f.name)
        size = sum(f.stat().st_size for f in dst.iterdir() if f.is_file()) / 1e6
        console.print(f"{src} -> {dst} ({size:.2f} MB)")


# Family commands: every module cli/<family>.py attaches its commands to `app` on import.
for _mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if _mod.name not in ("main", "__init__"):
        importlib.import_module(f"tokenworks.cli.{_mod.name}")
