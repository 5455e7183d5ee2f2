"""Validation helpers for option dataclasses and inputs: every failure names the argument
and says what was expected.

Failures raise :class:`ArgumentError` (a ``ValueError``; :class:`ArgumentTypeError` is also a
``TypeError``), which carries the argument's name and the expectation separately so that the
command line can print ``Error: --vocab-size: must be >= 1, got 0`` for the field
``vocab_size``. :class:`FileFormatError` is the same for a file that is not what a loader
expects (not JSON, not safetensors, an empty folder, a wrong schema).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "FileFormatError",
    "check_choice",
    "check_device",
    "check_name",
    "check_key",
    "check_float",
    "check_int",
    "check_int_list",
    "check_tensor",
]


class ArgumentError(ValueError):
    """A bad value for ``arg``: ``str(e)`` is ``"<arg> <expected>"``."""

    def __init__(self, arg: str, expected: str) -> None:
        self.arg, self.expected = str(arg), expected
        super().__init__(f"{self.arg} {expected}")


class ArgumentTypeError(ArgumentError, TypeError):
    """A value of the wrong type for ``arg`` (also a ``TypeError``)."""


class FileFormatError(ArgumentError):
    """A file or folder that is not what its loader expects; ``arg`` is its path."""


def check_int(name: str, value: Any, *, min: int | None = None, max: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(name, f"must be an integer, got {value!r}")
    if min is not None and value < min:
        raise ArgumentError(name, f"must be >= {min}, got {value}")
    if max is not None and value > max:
        raise ArgumentError(name, f"must be <= {max}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ArgumentTypeError(name, f"must be a number, got {value!r}")
    lo = "(" if min_open else "["
    hi = ")" if max_open else "]"
    rng = f"{lo}{'-inf' if min is None else min}, {'inf' if max is None else max}{hi}"
    if min is not None and (value < min or (min_open and value == min)):
        raise ArgumentError(name, f"must be in {rng}, got {value}")
    if max is not None and (value > max or (max_open and value == max)):
        raise ArgumentError(name, f"must be in {rng}, got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ArgumentError(name, f"must be one of {choices}, got {value!r}")
    return value


def check_int_list(
    name: str, value: Any, *, min: int | None = None, min_len: int = 1
) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ArgumentTypeError(name, f"must be a list of integers, got {value!r}")
    if len(value) < min_len:
        raise ArgumentError(name, f"must have at least {min_len} entries, got {list(value)}")
    for i, v in enumerate(value):
        check_int(f"{name}[{i}]", v, min=min)
    return tuple(value)


def check_tensor(
    name: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool | None = None,
) -> torch.Tensor:
    """Check a tensor argument; ``shape`` entries of None match any size."""
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(name, f"must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ArgumentError(name, f"must have {want} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        ok = len(shape) == x.ndim and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ArgumentError(name, f"must have shape {want}, got {tuple(x.shape)}")
    if floating is True and not x.is_floating_point():
        raise ArgumentTypeError(name, f"must be a floating-point tensor, got {x.dtype}")
    if floating is False and x.is_floating_point():
        raise ArgumentTypeError(name, f"must be an integer tensor, got {x.dtype}")
    return x


NAME_MAX = 100
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=@-]*")


def check_name(name: str, value: Any, *, max_len: int = NAME_MAX) -> str:
    """A name that becomes one path component (a model, a run, a cache entry): non-empty, at
    most ``max_len`` characters of letters, digits and ``._+=@-``, not starting with a dot or
    a dash, no ``..``, no path separator."""
    if not isinstance(value, str):
        raise ArgumentTypeError(name, f"must be a name (a string), got {value!r}")
    if not value:
        raise ArgumentError(name, "must be a non-empty name, got ''")
    if len(value) > max_len:
        raise ArgumentError(name, f"must be a name of at most {max_len} characters, got {len(value)}")
    if "/" in value or "\\" in value or ".." in value or not _NAME.fullmatch(value):
        raise ArgumentError(
            name, f"must be a plain name (letters, digits, ._+=@-; no '/', no '..', not starting with '.' or '-'), got {value!r}"
        )
    return value


def check_key(name: str, value: Any, *, max_parts: int = 8) -> str:
    """A registry/cache key: one or more names joined by ``/`` (``vision/titok-16``)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(name, f"must be a key (a string), got {value!r}")
    parts = value.split("/")
    if len(parts) > max_parts:
        raise ArgumentError(name, f"must have at most {max_parts} '/'-separated parts, got {value!r}")
    for p in parts:
        try:
            check_name(name, p)
        except ArgumentError:
            raise ArgumentError(name, f"must be '/'-separated plain names (no empty part, no '..'), got {value!r}") from None
    return value


_DEVICE = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")


def check_device(name: str, value: Any) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine."""
    m = _DEVICE.fullmatch(value) if isinstance(value, str) else None
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise ArgumentError(name, f"must be cpu, cuda, cuda:N or mps, got {value!r}")
    if m.group(1) == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError(name, f"asks for {value!r}, but there is no CUDA device here (use cpu)")
        if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
            raise ArgumentError(name, f"asks for {value!r}, but there are only {torch.cuda.device_count()} CUDA device(s) here")
    if m.group(1) == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ArgumentError(name, f"asks for {value!r}, but there is no MPS device here (use cpu)")
    return value
