"""The benchmark suites, by name. A suite is listed here and lives in its own module."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# name -> module; order is the order `make bench` runs them in.
SUITE_MODULES = {
    "quantizers": "bench.suites.quantizers",
    "image-tokenizers": "bench.suites.image_tokenizers",
    "vat-3d": "bench.suites.vat_3d",
    "text-tokenizers": "bench.suites.text_tokenizers",
    "kv-cache": "bench.suites.kv_cache",
    "speculative": "bench.suites.speculative",
    "token-compression": "bench.suites.token_compression",
    "latent-reasoning": "bench.suites.latent_reasoning",
    "lm-tokens": "bench.suites.lm_tokens",
    "motion": "bench.suites.motion",
    "image-generation": "bench.suites.image_generation",
    "generator-compression": "bench.suites.generator_compression",
}


def available() -> list[str]:
    """Suites whose module exists (all of them once every family has landed)."""
    return [n for n, m in SUITE_MODULES.items() if importlib.util.find_spec(m) is not None]


def load(name: str) -> ModuleType:
    if name not in SUITE_MODULES:
        raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(SUITE_MODULES)}")
    return importlib.import_module(SUITE_MODULES[name])


def all_suites() -> dict[str, ModuleType]:
    return {name: load(name) for name in available()}
