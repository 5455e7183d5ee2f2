"""The linear-PCA baseline against scikit-learn's PCA and its own quantizer's definition."""

from __future__ import annotations

import math

import pytest
import torch

from tokenworks.data import load_mnist5k
from tokenworks.vision import QuantizedPCA


@pytest.fixture(scope="module")
def x():
    return load_mnist5k("train").take(600).float()


def test_continuous_pca_matches_sklearn(x):
    from sklearn.decomposition import PCA

    train, test = x[:500], x[500:]
    pca = QuantizedPCA(20).fit(train)
    ref = PCA(20, svd_solver="full").fit(train.reshape(500, -1).double().numpy())
    rec_ref = ref.inverse_transform(ref.transform(test.reshape(100, -1).double().numpy()))
    rec_ref = torch.from_numpy(rec_ref).float().clamp(0, 1).reshape(test.shape)
    torch.testing.assert_close(pca.reconstruct(test), rec_ref, atol=1e-4, rtol=1e-4)
    assert math.isinf(pca.bits)


def test_quantized_bins_hold_equal_shares_and_bits_add_up(x):
    pca = QuantizedPCA(6, [4, 3]).fit(x)
    assert pca.bits == pytest.approx(3 * math.log2(4) + 3 * math.log2(3))
    codes = pca.encode(x)
    for i in range(6):
        n = 4 if i % 2 == 0 else 3
        counts = torch.bincount(codes[:, i], minlength=n).float() / len(x)
        assert codes[:, i].max() < n and (counts - 1 / n).abs().max() < 0.02  # equal-probability bins
    # the value of a bin is the mean of the training coefficients that fall in it
    coef = (x.reshape(len(x), -1).double() - pca.mean) @ pca.basis
    for j in range(4):
        assert float(pca.values[0][j]) == pytest.approx(float(coef[codes[:, 0] == j, 0].mean()))


def test_more_bits_reconstruct_better(x):
    train, test = x[:500], x[500:]
    err = [float(((QuantizedPCA(16, [lv]).fit(train).reconstruct(test) - test) ** 2).mean()) for lv in (2, 4, 16)]
    cont = float(((QuantizedPCA(16).fit(train).reconstruct(test) - test) ** 2).mean())
    assert err[0] > err[1] > err[2] > cont


def test_bad_options():
    with pytest.raises(ValueError, match="components must be >= 1"):
        QuantizedPCA(0)
    with pytest.raises(ValueError, match="levels must be"):
        QuantizedPCA(4, [1])
    with pytest.raises(RuntimeError, match="fit"):
        QuantizedPCA(4).encode(torch.zeros(1, 1, 28, 28))
