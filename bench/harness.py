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
"""

from __future__ import annotations

import datetime as _dt
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

from tokenworks.io import atomic_write_json, load_json

REQUIRED = ("family", "method", "paper", "params", "budget", "metrics")


@dataclass
class Context:
    """What a suite gets: where to run, how much, and helpers for progress and logging."""

    device: str = "cpu"
    quick: bool = False
    out_dir: Path = Path("reports/latest")
    seed: int = 0
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
        t0 = time.perf_counter()
        new = [validate_row(r, name) for r in mod.run(ctx)]
        seconds = time.perf_counter() - t0
        rows.extend(new)
        meta[name] = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "quick": ctx.quick,
            "seconds": round(seconds, 1),
            "rows": len(new),
            "device": ctx.device,
        }
        ctx.log(f"suite {name}: {len(new)} rows in {seconds:.0f} s")
        results = {
            "suite": ",".join(sorted(meta)),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(ctx.device),
            "suites": meta,
            "rows": rows,
        }
        atomic_write_json(path, results)  # after each suite, so a later failure keeps it
    return results
