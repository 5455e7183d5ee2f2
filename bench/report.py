"""Makes ``report.md`` and the PNG plots from a ``results.json`` alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tokenworks.io import atomic_write_text, load_json


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}" if abs(v) < 100 else f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in d.items())


def suite_table(rows: list[dict[str, Any]]) -> str:
    metric_keys: list[str] = []
    for r in rows:
        for k in r["metrics"]:
            if k not in metric_keys:
                metric_keys.append(k)
    head = ["method", "paper", "params", "budget", *metric_keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["paper"] or "baseline", _kv(r["params"]), _kv(r["budget"])]
        cells += [fmt(r["metrics"].get(k, "")) for k in metric_keys]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def make_report(results_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``report.md`` and plots next to ``results_path`` (or into ``out_dir``)."""
    from bench import suites as suite_registry

    results_path = Path(results_path)
    if not results_path.is_file():
        raise FileNotFoundError(f"no results file at {results_path}; run `tokenworks bench` first")
    results = load_json(results_path)
    out = Path(out_dir) if out_dir is not None else results_path.parent
    out.mkdir(parents=True, exist_ok=True)
    machine = results.get("machine", {})
    parts = [
        "# tokenworks benchmark report",
        "",
        f"Made from `results.json` (created {results.get('created', '?')}) on {machine.get('platform', '?')}, "
        f"Python {machine.get('python', '?')}, torch {machine.get('torch', '?')}, "
        f"{machine.get('cpu_count', '?')} CPUs, device `{machine.get('device', '?')}`.",
        "`fd_local` is a Frechet distance on features of a classifier trained here; it is not FID.",
        "",
    ]
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for r in results.get("rows", []):
        by_suite.setdefault(r["suite"], []).append(r)
    meta = results.get("suites", {})
    for name, rows in by_suite.items():
        m = meta.get(name, {})
        mod = None
        try:
            mod = suite_registry.load(name)
        except (KeyError, ModuleNotFoundError):
            pass
        parts += [f"## {name}", ""]
        if mod is not None and getattr(mod, "DESCRIPTION", None):
            parts += [mod.DESCRIPTION.strip(), ""]
        parts += [
            f"{len(rows)} rows, {'quick' if m.get('quick') else 'full'} run, {m.get('seconds', '?')} s, "
            f"created {m.get('created', '?')}."
            + (" Reused by a later run whose inputs were unchanged (`--fresh` measures again)." if m.get("reused_from") else ""),
            "",
        ]
        if mod is not None and hasattr(mod, "summary"):
            text = mod.summary(rows)
            if text:
                parts += [text.strip(), ""]
        parts += [suite_table(rows), ""]
        if mod is not None and hasattr(mod, "plots"):
            for caption, fname in mod.plots(rows, out):
                parts += [f"![{caption}]({fname})", "", f"*{caption}*", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
