"""Where trained models live: the cache, the committed assets, and how they are (re)made.

A model directory holds its weights (safetensors) and ``tokenworks.json`` with the
``fingerprint`` (the training config that made it) and measured results. A directory is used
only when its fingerprint equals the one the code asks for, so a change of recipe never
silently loads a stale model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenworks.io import assets_dir, atomic_dir, atomic_write_json, cache_dir, load_json

__all__ = ["find_model", "load_or_train", "write_model_info"]

INFO = "tokenworks.json"


def _matches(path: Path, fingerprint: dict[str, Any]) -> bool:
    info = path / INFO
    if not info.is_file():
        return False
    try:
        return load_json(info).get("fingerprint") == fingerprint
    except ValueError:
        return False


def find_model(name: str, fingerprint: dict[str, Any]) -> Path | None:
    """The cached or committed directory of model ``name`` made with ``fingerprint``."""
    candidates = [cache_dir("models", name)]
    assets = assets_dir()
    if assets is not None:
        candidates.append(assets / name)
    for c in candidates:
        if _matches(c, fingerprint):
            return c
    return None


def write_model_info(path: str | os.PathLike, fingerprint: dict[str, Any], **results: Any) -> None:
    atomic_write_json(Path(path) / INFO, {"fingerprint": fingerprint, **results})


def load_or_train(
    name: str,
    fingerprint: dict[str, Any],
    train_fn: Callable[[Path, Path], None],
    *,
    train_if_missing: bool = True,
    command: str | None = None,
) -> Path:
    """Return the directory of model ``name``; train it into the cache if none matches.

    ``train_fn(out_dir, run_dir)`` writes the model into ``out_dir`` (a temporary directory
    moved into place when it returns) and keeps its resumable checkpoints in ``run_dir``.
    """
    found = find_model(name, fingerprint)
    if found is not None:
        return found
    if not train_if_missing:
        how = f" (`{command}`)" if command else ""
        raise FileNotFoundError(
            f"no trained {name!r} matching this configuration in {cache_dir('models')} or the "
            f"committed assets; train it first{how}"
        )
    final = cache_dir("models", name)
    run_dir = cache_dir("runs", name)
    with atomic_dir(final) as tmp:
        train_fn(tmp, run_dir)
        if not (tmp / INFO).is_file():
            write_model_info(tmp, fingerprint)
    return final
