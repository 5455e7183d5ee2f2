"""Test-wide settings: no progress bars, no network, deterministic CPU threads."""

import os

os.environ.setdefault("TOKENWORKS_PROGRESS", "0")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private, empty TOKENWORKS_CACHE (and no committed assets) for tests that train."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOKENWORKS_CACHE", str(cache))
    monkeypatch.setenv("TOKENWORKS_ASSETS", str(tmp_path / "no-assets"))
    return cache


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
