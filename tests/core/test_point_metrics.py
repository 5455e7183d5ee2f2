"""Chamfer distance and F-score against scipy's cKDTree; the point-cloud loader on real meshes."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from tokenworks.data import DataNotFoundError
from tokenworks.data.pointclouds import read_off, sample_surface
from tokenworks.metrics import chamfer_distance, f_score


def kdtree_reference(pred, target, tau):
    d_pt, _ = cKDTree(target).query(pred)  # each pred point -> nearest target
    d_tp, _ = cKDTree(pred).query(target)
    cd2 = (d_pt**2).mean() + (d_tp**2).mean()
    cd1 = d_pt.mean() + d_tp.mean()
    p, r = (d_pt <= tau).mean(), (d_tp <= tau).mean()
    f = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return cd2, cd1, f


@pytest.mark.parametrize("n,m,tau", [(50, 80, 0.1), (200, 30, 0.3), (1, 5, 0.5), (64, 64, 1e-3)])
def test_chamfer_and_f_score_match_a_kdtree(n, m, tau):
    g = torch.Generator().manual_seed(n + m)
    pred, target = torch.rand(3, n, 3, generator=g), torch.rand(3, m, 3, generator=g)
    cd2, cd1, f = chamfer_distance(pred, target), chamfer_distance(pred, target, squared=False), f_score(pred, target, threshold=tau)
    for b in range(3):
        r2, r1, rf = kdtree_reference(pred[b].numpy().astype(np.float64), target[b].numpy().astype(np.float64), tau)
        assert cd2[b].item() == pytest.approx(r2, rel=1e-5)
        assert cd1[b].item() == pytest.approx(r1, rel=1e-5)
        assert f[b].item() == pytest.approx(rf, abs=1e-6)


def test_identical_clouds_score_perfectly_and_bad_input_is_named():
    x = torch.rand(2, 40, 3)
    assert torch.equal(chamfer_distance(x, x), torch.zeros(2)) and torch.equal(f_score(x, x), torch.ones(2))
    with pytest.raises(ValueError, match="same B and D"):
        chamfer_distance(x, torch.rand(3, 40, 3))
    with pytest.raises(ValueError, match="threshold must be"):
        f_score(x, x, threshold=0.0)


def test_read_off_parses_and_validates(tmp_path):
    good = tmp_path / "quad.off"
    good.write_text("OFF\n# a unit square as one quad\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    verts, faces = read_off(good)
    assert verts.shape == (4, 3) and faces.tolist() == [[0, 1, 2], [0, 2, 3]]  # fan triangulation
    pts = sample_surface(verts, faces, 4000, np.random.default_rng(0))
    assert pts[:, 2].max() == 0 and 0 <= pts[:, :2].min() and pts[:, :2].max() <= 1
    assert abs(pts[:, 0].mean() - 0.5) < 0.02 and abs(pts[:, 1].mean() - 0.5) < 0.02  # uniform on the square
    for text, match in [("PLY\n", "not an OFF file"), ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "face indices"),
                        ("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "zero area"), ("OFF\n5 2 0\n0 0 0\n", "file has")]:  # fmt: skip
        bad = tmp_path / "bad.off"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_off(bad)


def test_real_meshes_load_when_installed():
    from tokenworks.data import load_meshes, load_pointclouds

    try:
        meshes, rejected = load_meshes()
    except DataNotFoundError:
        pytest.skip("no OFF meshes installed (scripts/install-system-data.sh)")
    assert len(meshes) >= 100 and all(np.abs(m.vertices[np.unique(m.faces)]).max() <= 1 + 1e-9 for m in meshes)
    test = load_pointclouds("test", points=64)
    train = load_pointclouds("train", points=64)
    assert not set(test.names) & set(train.names) and len(test) + len(train) == len(meshes)
    assert torch.equal(load_pointclouds("test", points=64).points, test.points)  # seeded by name
