"""Errors raised by the data loaders."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class DataNotFoundError(FileNotFoundError):
    """A data set's package is not installed, or its files are not where they should be."""


def package_dir(package: str, pip_name: str, what: str) -> Path:
    """The directory of an installed Python package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"{what} needs the PyPI package {pip_name!r}, which is not installed: "
            f"run `pip install {pip_name}` (or `pip install 'tokenworks[data]'`)"
        )
    return Path(list(spec.submodule_search_locations)[0])
