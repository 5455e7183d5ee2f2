"""Where trained models live: the cache, the committed assets, and how they are (re)made.

A model directory holds its weights (safetensors) and ``tokenworks.json`` with the
``fingerprint`` (the training config that made it) and measured results. A directory is used
only when its fingerprint equals the one the code asks for, so a change of recipe never
silently loads a stale model.

A directory whose files are damaged (a ``tokenworks.json`` or ``config.json`` that is not
JSON, a truncated or garbage ``.safetensors``) is reported with a warning and skipped: the
committed asset is used instead, or the model is retrained into the cache (replacing the
damaged entry, which tokenworks wrote). :func:`load_model` goes one step further and also
skips a directory whose loader fails, so one bad cache entry never crashes every later run.
Model names are cache keys (``vision/titok-16``): plain names joined by ``/``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tokenworks.checks import FileFormatError, check_key
from tokenworks.io import MARKER, assets_dir, atomic_dir, atomic_write_json, cache_dir, check_safetensors, inside, load_json

__all__ = ["check_model_dir", "find_model", "load_causal_lm", "load_model", "load_or_train", "write_model_info"]

INFO = MARKER
T = TypeVar("T")


class ModelLoadWarning(UserWarning):
    """A saved model that could not be used (it is skipped)."""


def check_model_dir(path: str | os.PathLike) -> Path:
    """Check the files of a model directory before any loader reads them: every ``*.json``
    parses, every ``*.safetensors`` has a valid header that fits its size. FileFormatError
    names the first bad file."""
    path = Path(path)
    if not path.is_dir():
        raise FileFormatError(str(path), "is not a folder")
    for f in sorted(path.iterdir()):
        if f.suffix == ".json" and f.is_file():
            load_json(f)
        elif f.suffix == ".safetensors" and f.is_file():
            check_safetensors(f)
    return path


def _matches(path: Path, fingerprint: dict[str, Any]) -> bool:
    info = path / INFO
    if not info.is_file():
        return False
    try:
        found = load_json(info, kind=dict).get("fingerprint")
    except ValueError as e:
        warnings.warn(f"skipping the saved model {path}: {e}", ModelLoadWarning, stacklevel=3)
        return False
    if found != fingerprint:
        return False
    try:
        check_model_dir(path)
    except (OSError, ValueError) as e:
        warnings.warn(f"skipping the saved model {path}: {e}", ModelLoadWarning, stacklevel=3)
        return False
    return True


def _candidates(name: str) -> list[Path]:
    check_key("model name", name)
    out = [cache_dir("models", name)]
    assets = assets_dir()
    if assets is not None:
        out.append(inside(assets, assets / name, "model name"))
    return out


def find_model(name: str, fingerprint: dict[str, Any]) -> Path | None:
    """The cached or committed directory of model ``name`` made with ``fingerprint`` whose
    files are intact (a damaged one is reported with a warning and skipped)."""
    for c in _candidates(name):
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
    with atomic_dir(final, arg="model name", owned=(final / INFO).is_file()) as tmp:
        train_fn(tmp, run_dir)
        if not (tmp / INFO).is_file():
            write_model_info(tmp, fingerprint)
    return final


def load_model(
    name: str,
    fingerprint: dict[str, Any],
    load_fn: Callable[[Path], T],
    train_fn: Callable[[Path, Path], None],
    *,
    train_if_missing: bool = True,
    command: str | None = None,
) -> T:
    """``load_fn`` of the directory of model ``name`` (cache, then committed assets, then
    trained now into the cache). A directory whose ``load_fn`` fails is reported with a
    warning and the next one is tried; a fresh training replaces a broken cache entry."""
    for c in _candidates(name):
        if not _matches(c, fingerprint):
            continue
        try:
            return load_fn(c)
        except Exception as e:  # noqa: BLE001 - any failure to load a saved file means "skip it"
            warnings.warn(f"skipping the saved model {c}: it does not load ({type(e).__name__}: {e})", ModelLoadWarning, stacklevel=2)
    if not train_if_missing:
        how = f" (`{command}`)" if command else ""
        raise FileNotFoundError(
            f"no usable trained {name!r} matching this configuration in {cache_dir('models')} or the "
            f"committed assets; train it first{how}"
        )
    final = cache_dir("models", name)
    with atomic_dir(final, arg="model name", owned=(final / INFO).is_file()) as tmp:
        train_fn(tmp, cache_dir("runs", name))
        if not (tmp / INFO).is_file():
            write_model_info(tmp, fingerprint)
    return load_fn(final)


def load_causal_lm(path: str | os.PathLike, *, device: str = "cpu", arg: str = "MODEL"):
    """``(model, tokenizer)`` from a local Hugging Face causal-LM folder, its files checked
    first (a folder, ``config.json`` with a ``model_type``, weights, tokenizer files); never
    downloads, never unpickles (``.bin`` weights are refused). FileFormatError says what is
    missing or broken."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenworks.models.lm import quiet_loading

    path = Path(path)
    if not path.is_dir():
        raise FileFormatError(arg, f"must be a local model folder or 'task-model', got {str(path)!r} (nothing is downloaded)")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise FileFormatError(arg, f"{path} holds no config.json: expected a Hugging Face model folder")
    if not isinstance(load_json(cfg, kind=dict).get("model_type"), str):
        raise FileFormatError(arg, f"{cfg} has no 'model_type': expected a Hugging Face model config")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in path.glob("*.bin")]
        more = f" ({', '.join(pickles)} are pickles, which tokenworks does not load)" if pickles else ""
        raise FileFormatError(arg, f"{path} holds no .safetensors weights{more}")
    for w in weights:
        check_safetensors(w)
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file()):
        raise FileFormatError(arg, f"{path} holds no tokenizer (tokenizer.json or tokenizer_config.json)")
    check_model_dir(path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        with quiet_loading():
            lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad folder
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FileFormatError(arg, f"cannot load a causal LM from {path}: {first}") from None
    return lm.to(device).eval(), tok
