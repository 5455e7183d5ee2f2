"""The benchmark suites, by name. A suite is listed here and lives in its own module."""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module; order is the order `make bench` runs them in.
SUITE_MODULES = {
    "quantizers": "bench.suites.quantizers",
}


def load(name: str) -> ModuleType:
    if name not in SUITE_MODULES:
        raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(SUITE_MODULES)}")
    return importlib.import_module(SUITE_MODULES[name])


def all_suites() -> dict[str, ModuleType]:
    return {name: load(name) for name in SUITE_MODULES}
