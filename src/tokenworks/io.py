"""Files: the cache directory, the committed assets, safe output folders and atomic writes.

Everything tokenworks writes goes through a temporary file (or directory) in the same
folder and ``os.replace``, so a killed process never leaves a half-written checkpoint. The
temporaries are named ``.<target>.<pid>.<random>.tmp`` (``.old`` for a folder being
replaced); a later write to the same target removes those whose process is gone (and puts
back a folder that a killed swap had moved aside), so even SIGKILL leaves nothing behind for
long.

Nothing a user owns is overwritten. :func:`prepare_output` decides whether a folder may be
written: a new path, an empty folder, or a folder tokenworks wrote before (it holds
``tokenworks.json``, whose ``files`` list names what tokenworks wrote there) is fine; a file
is always refused; a non-empty folder that tokenworks did not write is refused unless the
caller passes ``overwrite=True``, and even then only the files tokenworks writes are added:
the others are kept, and a clash with one of them is refused. :func:`atomic_dir` applies the
same rule when it moves the finished folder into place and keeps every file it did not write.

Loading never runs code from a file: weights are safetensors, metadata is JSON, and both are
checked before a parser sees them (:class:`tokenworks.checks.FileFormatError` says what is
wrong with which file).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tokenworks.checks import ArgumentError, FileFormatError, check_key

__all__ = [
    "MARKER",
    "OutputError",
    "assets_dir",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "check_safetensors",
    "clean_stale",
    "inside",
    "is_ours",
    "load_json",
    "load_tensors",
    "prepare_output",
    "save_tensors",
]

MARKER = "tokenworks.json"


class OutputError(ArgumentError):
    """An output path that tokenworks refuses to write (it would lose something a user owns)."""


def inside(root: str | os.PathLike, path: str | os.PathLike, arg: str = "path") -> Path:
    """``path`` (resolved) if it lies inside ``root`` (resolved), else an ArgumentError."""
    r, p = Path(root).expanduser().resolve(), Path(path).expanduser().resolve()
    if p != r and r not in p.parents:
        raise ArgumentError(arg, f"must lie inside {r}, got {p}")
    return Path(path)


def cache_dir(*parts: str) -> Path:
    """``$TOKENWORKS_CACHE`` (default ``~/.cache/tokenworks``), joined with ``parts``.

    Every part is a cache key (plain names joined by ``/``): no empty part, no ``..``, so the
    result always lies inside the cache."""
    root = Path(os.environ.get("TOKENWORKS_CACHE") or str(Path.home() / ".cache" / "tokenworks")).expanduser()
    for p in parts:
        check_key("cache key", p)
    return inside(root, root.joinpath(*parts), "cache key")


def assets_dir() -> Path | None:
    """The committed checkpoints: ``$TOKENWORKS_ASSETS``, else ``assets/`` of the source
    checkout this package was installed from (editable install); None if neither exists."""
    env = os.environ.get("TOKENWORKS_ASSETS")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parents[2] / "assets"
    return here if here.is_dir() else None


# ---------------------------------------------------------------------------- temporaries
_STALE = re.compile(r"(\d+)\.[A-Za-z0-9_-]+\.(tmp|old)")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes that no longer run (SIGKILL).

    A folder moved aside by a swap that was killed half-way (``.<name>.<pid>.<x>.old``) is
    moved back when ``path`` is missing, so the last complete version is never lost."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for e in sorted(entries, key=lambda e: e.name.endswith(".tmp")):  # .old first: restore before cleaning
        if not e.name.startswith(prefix):
            continue
        m = _STALE.fullmatch(e.name[len(prefix):])
        if m is None or _alive(int(m.group(1))):
            continue
        if m.group(2) == "old" and not os.path.lexists(path):
            os.replace(e, path)
            continue
        _remove(e)
        removed.append(e)
    return removed


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise OutputError(str(path), "is a folder; expected a file path")
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path: str | os.PathLike, *, kind: type | None = None) -> Any:
    """The JSON value in ``path``; a file that is not UTF-8 JSON (or, with ``kind``, not a
    value of that type) raises FileFormatError naming the file. A missing file raises
    FileNotFoundError."""
    path = Path(path)
    if path.is_dir():
        raise FileFormatError(str(path), "is a folder, expected a JSON file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FileFormatError(str(path), "is not a UTF-8 text file (expected JSON)") from None
    except json.JSONDecodeError as e:
        raise FileFormatError(str(path), f"is not valid JSON ({e.msg} at line {e.lineno})") from None
    if kind is not None and not isinstance(value, kind):
        raise FileFormatError(str(path), f"must hold a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write a safetensors file atomically (tensors are made contiguous, moved to CPU;
    tensors that share storage, e.g. tied embeddings, are cloned)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        save_file(clean, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


_ST_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


def check_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a safetensors file, checked against the file's size before any parser
    reads it: a file that is not safetensors (or is truncated) raises FileFormatError."""
    path = Path(path)
    if path.is_dir():
        raise FileFormatError(str(path), "is a folder, expected a .safetensors file")
    size = path.stat().st_size
    bad = "is not a safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FileFormatError(str(path), f"{bad} (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > min(size - 8, 100_000_000):
            raise FileFormatError(str(path), f"{bad} (its header length does not fit the file)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise FileFormatError(str(path), f"{bad} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise FileFormatError(str(path), f"{bad} (its header is not a JSON object)")
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            b, e = t["data_offsets"]
            count = 1
            for d in t["shape"]:
                count *= int(d)
            ok = 0 <= b <= e and e - b == count * _ST_DTYPES[t["dtype"]]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise FileFormatError(str(path), f"{bad} (tensor {name!r} is described wrongly)")
        end = max(end, e)
    if end != size - 8 - n:
        raise FileFormatError(str(path), f"is truncated or padded: its tensors need {end} bytes, it holds {size - 8 - n}")
    return header


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    check_safetensors(path)
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors' own error types are not exceptions we can name
        raise FileFormatError(str(path), f"cannot be read as safetensors ({e})") from None


# ---------------------------------------------------------------------------- output folders
def _marker_files(path: Path) -> list[str] | None:
    """The names tokenworks wrote in ``path`` per its marker (None: no usable list)."""
    try:
        files = json.loads((path / MARKER).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else None


def _results_folder(path: Path) -> bool:
    """A benchmark results folder (``results.json`` with rows), which tokenworks wrote."""
    try:
        r = json.loads((path / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(r, dict) and isinstance(r.get("rows"), list)


def is_ours(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder tokenworks wrote (its marker, or a results folder)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and ((path / MARKER).is_file() or _results_folder(path))


def prepare_output(path: str | os.PathLike, *, overwrite: bool = False, arg: str = "--out", owned: bool = False) -> Path:
    """Check that the folder ``path`` may be written, before any work starts; returns it.

    Fine: a new path, an empty folder, a folder tokenworks wrote (``is_ours``), or any folder
    with ``owned`` (a path tokenworks chose inside its own cache, e.g. a checkpoint). A file
    is refused. A non-empty folder tokenworks did not write is refused unless ``overwrite``,
    and then only tokenworks' own files are added to it (the others are kept; see
    :func:`atomic_dir`). Stale temporaries of ``path`` are removed first."""
    path = Path(path)
    clean_stale(path)
    if path.is_symlink():
        raise OutputError(arg, f"{path} is a symbolic link; give the real folder (nothing was written)")
    if path.exists() and not path.is_dir():
        raise OutputError(
            arg, f"{path} is an existing file, expected a folder to write into; tokenworks keeps it, "
            "even with --overwrite (choose another path)"
        )  # fmt: skip
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(arg, f"{parent} is a file, so {path} cannot be a folder")
            break
    if not path.exists() or owned or is_ours(path) or not any(path.iterdir()):
        return path
    if overwrite:
        return path
    raise OutputError(
        arg, f"{path} is a folder that tokenworks did not write and it is not empty; choose a new path, "
        "or pass --overwrite to add tokenworks' files to it (files of the same name are never replaced)"
    )  # fmt: skip


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy where links fail) ``src`` to ``dst``, which must not exist."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_marker(tmp: Path, ours: list[str]) -> None:
    info: dict[str, Any] = {}
    if (tmp / MARKER).is_file():
        with contextlib.suppress(ValueError):
            info = load_json(tmp / MARKER, kind=dict)
    info["files"] = sorted(set(ours) | {MARKER})
    atomic_write_json(tmp / MARKER, info)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False, arg: str = "--out", owned: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it into place on success.

    ``path`` is first checked with :func:`prepare_output` (same arguments). The finished
    folder gets a ``tokenworks.json`` marker listing the files written. When ``path`` exists,
    the files in it that tokenworks did not write (all but those its marker lists; for an old
    marker without a list or ``owned``, those the new version does not replace) are kept:
    they are hard-linked into the new folder before the swap, so no moment of the swap, even
    a SIGKILL, loses them. A clash with a file tokenworks did not write is refused.
    """
    path = Path(path)
    prepare_output(path, overwrite=overwrite, arg=arg, owned=owned)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
    old = None
    try:
        yield tmp
        ours = [e.name for e in tmp.iterdir() if e.name != MARKER]
        if path.is_dir() and any(path.iterdir()):
            listed = _marker_files(path)
            if listed is not None:
                keep = [e for e in path.iterdir() if e.name not in listed and e.name != MARKER]
            elif owned or (path / MARKER).is_file():
                keep = [e for e in path.iterdir() if e.name not in ours and e.name != MARKER]
            else:  # a foreign folder, written into with overwrite=True
                keep = [e for e in path.iterdir()]
            clash = sorted(e.name for e in keep if e.name in ours or e.name == MARKER)
            if clash:
                raise OutputError(
                    arg, f"{path} holds {', '.join(clash)}, which tokenworks did not write; it would replace them, "
                    "so nothing was written (move them away, or choose a new path)"
                )  # fmt: skip
            _write_marker(tmp, ours)
            for e in keep:
                _link_tree(e, tmp / e.name)
            old = path.with_name(f"{_temp_prefix(path)}{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            _write_marker(tmp, ours)
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
        raise
