"""One registry: method name -> class (or factory), family, paper ID, citation.

The registry drives the command line (`tokenworks list`), the registry-wide contract tests,
the benchmark suites and the method table in the README. Register a method where it is
defined::

    @register("fsq", paper=None, family="VIS", cite="Mentzer et al. 2023, FSQ")
    @dataclass(kw_only=True)
    class FSQ(Quantizer): ...

A method introduced by one of the project's papers names its ID (``paper="P21"``) and takes
its family from the paper index; a baseline that no paper introduces gives ``paper=None``, a
``family`` and a ``cite`` string. The ``kind`` says which family interface the object
implements (``"quantizer"``, ``"image_tokenizer"``, ...); it defaults to the ``kind`` class
attribute of the family's base class.
"""

from __future__ import annotations

import difflib
import importlib
import json
import pkgutil
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Callable

FAMILIES = ("TXT", "VIS", "GEN", "CMP", "KV", "SPEC", "LAT", "ANA")

__all__ = [
    "FAMILIES",
    "MethodInfo",
    "UnknownMethodError",
    "create",
    "get",
    "methods",
    "papers",
    "register",
]


class UnknownMethodError(KeyError):
    """Raised for a method name that is not registered (the message lists close matches)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@cache
def papers() -> dict[str, dict[str, str]]:
    """The paper index: ``{"P01": {"title", "family", "show"}, ...}`` (from INDEX.md)."""
    text = resources.files("tokenworks").joinpath("papers.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about one method."""

    name: str
    obj: Any
    family: str
    paper: str | None
    cite: str | None
    kind: str | None

    @property
    def is_baseline(self) -> bool:
        return self.paper is None

    @property
    def title(self) -> str:
        """The paper's short title, or the baseline's citation."""
        if self.paper is not None:
            return papers()[self.paper]["title"]
        return self.cite or ""

    def create(self, **options: Any) -> Any:
        return self.obj(**options)


_REGISTRY: dict[str, MethodInfo] = {}


def register(
    name: str,
    *,
    paper: str | None = None,
    family: str | None = None,
    cite: str | None = None,
    kind: str | None = None,
) -> Callable[[Any], Any]:
    """Class/function decorator that adds a method to the registry under ``name``."""
    if not isinstance(name, str) or not name or name != name.strip() or " " in name:
        raise ValueError(f"register: name must be a non-empty identifier-like string, got {name!r}")
    if paper is not None:
        index = papers()
        if paper not in index:
            raise ValueError(f"register({name!r}): paper must be one of P01..P69, got {paper!r}")
        paper_family = index[paper]["family"]
        if family is not None and family != paper_family:
            raise ValueError(
                f"register({name!r}): family {family!r} disagrees with paper {paper}'s family "
                f"{paper_family!r}"
            )
        family = paper_family
    else:
        if family is None:
            raise ValueError(f"register({name!r}): a baseline (paper=None) needs family=...")
        if not cite:
            raise ValueError(f"register({name!r}): a baseline (paper=None) needs cite='...'")
    if family not in FAMILIES:
        raise ValueError(f"register({name!r}): family must be one of {FAMILIES}, got {family!r}")

    def decorate(obj: Any) -> Any:
        if name in _REGISTRY and _REGISTRY[name].obj is not obj:
            existing = _REGISTRY[name].obj
            # Re-importing the same module (e.g. importlib.reload) replaces the entry.
            if getattr(existing, "__qualname__", None) != getattr(obj, "__qualname__", None):
                raise ValueError(f"register: name {name!r} is already taken by {existing!r}")
        _REGISTRY[name] = MethodInfo(
            name=name,
            obj=obj,
            family=family,
            paper=paper,
            cite=cite,
            kind=kind if kind is not None else getattr(obj, "kind", None),
        )
        obj.registry_name = name
        return obj

    return decorate


_SKIP = {"cli"}


@cache
def _load_all() -> None:
    """Import every subpackage of tokenworks so that all methods are registered."""
    import tokenworks

    for mod in pkgutil.iter_modules(tokenworks.__path__):
        if mod.ispkg and mod.name not in _SKIP:
            importlib.import_module(f"tokenworks.{mod.name}")


def methods(family: str | None = None, kind: str | None = None) -> list[MethodInfo]:
    """All registered methods, sorted by family, paper and name; optionally filtered."""
    _load_all()
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    out = [
        m
        for m in _REGISTRY.values()
        if (family is None or m.family == family) and (kind is None or m.kind == kind)
    ]
    return sorted(out, key=lambda m: (FAMILIES.index(m.family), m.paper or "P99", m.name))


def get(name: str) -> MethodInfo:
    """The registry entry for ``name``; an unknown name raises with the closest matches."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownMethodError(
            f"unknown method {name!r}{hint} (`tokenworks list` shows all {len(_REGISTRY)})"
        ) from None


def create(name: str, **options: Any) -> Any:
    """Build a registered method by name: ``create("fsq", levels=[8, 5, 5, 5])``."""
    return get(name).create(**options)
