"""Validation helpers for option dataclasses and inputs: every failure names the argument
and says what was expected."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "check_choice",
    "check_float",
    "check_int",
    "check_int_list",
    "check_tensor",
]


def check_int(name: str, value: Any, *, min: int | None = None, max: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if min is not None and value < min:
        raise ValueError(f"{name} must be >= {min}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be <= {max}, got {value}")
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
        raise TypeError(f"{name} must be a number, got {value!r}")
    lo = "(" if min_open else "["
    hi = ")" if max_open else "]"
    rng = f"{lo}{'-inf' if min is None else min}, {'inf' if max is None else max}{hi}"
    if min is not None and (value < min or (min_open and value == min)):
        raise ValueError(f"{name} must be in {rng}, got {value}")
    if max is not None and (value > max or (max_open and value == max)):
        raise ValueError(f"{name} must be in {rng}, got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_int_list(
    name: str, value: Any, *, min: int | None = None, min_len: int = 1
) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of integers, got {value!r}")
    if len(value) < min_len:
        raise ValueError(f"{name} must have at least {min_len} entries, got {list(value)}")
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
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        ok = len(shape) == x.ndim and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if floating is True and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if floating is False and x.is_floating_point():
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    return x
