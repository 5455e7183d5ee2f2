"""Collapse-proof VQ and the public k-means, against references written differently."""

import pytest
import torch

import tokenworks as tw
from tokenworks.metrics import distinct_codes_per_image, top_code_share
from tokenworks.quantize import kmeans


def collapsed_encoder_output(b=8, n=16, d=8, offset=4.0, spread=0.05, seed=0):
    """Tokens that all sit far from the origin along one direction with a small per-position
    structure: the regime in which a random-init Euclidean codebook puts every token on one code."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    per_position = torch.randn(n, d, generator=g)  # each position has its own small offset
    per_image = torch.randn(b, 1, d, generator=g)
    return offset * direction + spread * (per_position + 0.5 * per_image)


def test_default_vq_is_l2_normalised_with_kmeans_init_and_restarts():
    q = tw.create("vq", dim=8, codebook_size=32)
    assert q.cosine and q.kmeans_init and q.dead_code_threshold > 0
    q.train()
    q(torch.randn(4, 20, 8))
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(32))


def test_default_vq_keeps_positions_apart_where_a_plain_codebook_collapses():
    x = collapsed_encoder_output()
    torch.manual_seed(0)
    plain = tw.create("vq", dim=8, codebook_size=64, cosine=False, kmeans_init=False, dead_code_threshold=0.0)
    _, idx_plain, _ = plain.eval()(x)
    assert distinct_codes_per_image(idx_plain) == 1.0  # the failure mode of issue 8
    torch.manual_seed(0)
    q = tw.create("vq", dim=8, codebook_size=64)
    q.train()
    q(x)  # k-means init on this batch
    _, idx, _ = q.eval()(x)
    assert distinct_codes_per_image(idx) >= 8
    assert top_code_share(idx) < 0.5


def test_vq_assigns_the_nearest_code_after_training():
    for name in ("vq", "vq_kmeans", "vq_cosine"):
        q = tw.create(name, dim=8, codebook_size=32)
        q.train()
        q(torch.randn(4, 20, 8))
        q.eval()
        x = torch.randn(2, 10, 8)
        _, idx, _ = q(x)
        xs = torch.nn.functional.normalize(x, dim=-1) if q.cosine else x
        cb = q.codebook.detach()
        expected = torch.tensor([[min(range(32), key=lambda k: float(((t - cb[k]) ** 2).sum())) for t in row] for row in xs])
        assert torch.equal(idx, expected)
        assert torch.equal(q.distances(x).argmin(-1), expected)


def lloyd_loop(x, init, iters, cosine):
    c = [row.clone() for row in init]
    for _ in range(iters):
        groups = [[] for _ in c]
        for row in x:
            scores = [float(row @ ck) if cosine else -float(((row - ck) ** 2).sum()) for ck in c]
            groups[max(range(len(c)), key=lambda k: scores[k])].append(row)
        for k, members in enumerate(groups):
            if members:
                m = torch.stack(members).mean(0)
                c[k] = m / m.norm() if cosine else m
    return torch.stack(c)


@pytest.mark.parametrize("cosine", [False, True])
def test_kmeans_matches_a_loop_lloyd_from_the_same_start(cosine):
    x = torch.randn(60, 3)
    xs = torch.nn.functional.normalize(x, dim=-1) if cosine else x
    init = xs[torch.randperm(60, generator=torch.Generator().manual_seed(3))[:5]]
    centroids, counts = kmeans(x, 5, iters=6, cosine=cosine, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(centroids, lloyd_loop(xs, init, 6, cosine), rtol=1e-5, atol=1e-5)
    assert int(counts.sum()) == 60


def test_kmeans_finds_separated_clusters_and_rejects_bad_input():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    best = min((kmeans(x, 3, iters=20, generator=torch.Generator().manual_seed(s)) for s in range(5)),
               key=lambda cc: float(torch.cdist(x, cc[0]).min(1).values.pow(2).sum()))  # fmt: skip
    found = sorted(best[0].round().tolist())
    assert found == sorted(centres.tolist())
    assert sorted(best[1].tolist()) == [50, 50, 50]
    with pytest.raises(ValueError, match="k must be <= 150"):
        kmeans(x, 151)
    with pytest.raises(ValueError, match="samples must have 2 dimensions"):
        kmeans(x[None], 3)


@pytest.mark.parametrize(("name", "straight_through"), [("vq_kmeans", True), ("vq", False)])
def test_gradient_estimator_straight_through_for_vq_kmeans(name, straight_through):
    """vq_kmeans passes the decoder's gradient to the token unchanged (VQ-VAE / Jukebox); the
    library's rotation trick (kept by ``vq``) rotates and rescales it by ||code|| / ||token||.
    Reference: for L = <w, q(x)> the straight-through gradient dL/dx is exactly w."""
    torch.manual_seed(0)
    q = tw.create(name, dim=6, codebook_size=8, commitment_weight=0.0)
    q.train()
    q(torch.randn(4, 10, 6))  # k-means init
    x = (3 * torch.randn(2, 5, 6)).requires_grad_(True)
    w = torch.randn(2, 5, 6)
    out, _, _ = q(x)
    (out * w).sum().backward()
    assert torch.allclose(x.grad, w, atol=1e-5) is straight_through
