"""P21 RobusTok's latent perturbation against brute-force references."""

import pytest
import torch

import tokenworks as tw


def trained(codebook_size=32, dim=8, cosine=True, **kw):
    torch.manual_seed(0)
    q = tw.create("robustok", dim=dim, codebook_size=codebook_size, cosine=cosine, **kw)
    q.train()
    q.vq(torch.randn(8, 40, dim))  # k-means init of the codebook (the VQ only, no perturbation step)
    return q.eval()


def brute_force_nearest_codes(latents, codebook, delta, cosine):
    """For every encoder output, the indices of its ``delta`` nearest codes, by an explicit loop."""
    out = []
    for z in latents.reshape(-1, latents.shape[-1]):
        z = z / z.norm() if cosine else z
        d = [(float(((z - c) ** 2).sum()), k) for k, c in enumerate(codebook)]
        out.append([k for _, k in sorted(d)[:delta]])
    return torch.tensor(out).reshape(*latents.shape[:-1], delta)


@pytest.mark.parametrize("cosine", [True, False])
def test_candidates_are_the_nearest_codes_of_the_encoder_output_true_code_first(cosine):
    q = trained(cosine=cosine)
    z = torch.randn(3, 11, 8)
    cand = q.candidates(z, 5)
    assert torch.equal(cand, brute_force_nearest_codes(z, q.codebook.detach(), 5, cosine))
    _, clean, _ = q(z)
    assert torch.equal(cand[..., 0], clean)  # the true code is among the candidates (the nearest)


def test_perturb_draws_among_the_encoder_output_neighbours_with_probability_rate():
    q = trained(codebook_size=64)
    z = torch.randn(40, 50, 8)
    _, clean, _ = q(z)
    ref = brute_force_nearest_codes(z, q.codebook.detach(), 6, True)
    new = q.perturb(clean, 0.6, latents=z, delta=6, generator=torch.Generator().manual_seed(1))
    # every token is one of its own 6 nearest codes
    assert (new[..., None] == ref).any(-1).all()
    # a token is redrawn with probability 0.6 and a draw keeps the true code 1 time in 6:
    # P(changed) = 0.6 * 5/6 = 0.5 (2000 tokens: standard error 0.011)
    assert (new != clean).float().mean().item() == pytest.approx(0.5, abs=0.04)
    # the draw is uniform over the 6 ranks
    rank = (new[..., None] == ref).float().argmax(-1)[new != clean]
    counts = torch.bincount(rank, minlength=6)[1:].float()
    torch.testing.assert_close(counts / counts.sum(), torch.full((5,), 0.2), atol=0.04, rtol=0)
    assert torch.equal(q.perturb(clean, 0.0, latents=z), clean)


def test_perturb_without_latents_uses_the_code_neighbourhood():
    q = trained(codebook_size=16)
    idx = torch.randint(0, 16, (4, 30))
    ref = brute_force_nearest_codes(q.codebook.detach()[idx], q.codebook.detach(), 3, True)
    assert torch.equal(ref[..., 0], idx)
    new = q.perturb(idx, 1.0, delta=3, generator=torch.Generator().manual_seed(0))
    assert (new[..., None] == ref).any(-1).all() and (new != idx).any()


def test_perturb_batch_perturbs_only_a_share_beta_of_the_images():
    q = trained(codebook_size=32)
    z = torch.randn(20, 30, 8)
    _, clean, _ = q(z)
    new = q.perturb_batch(clean, z, alpha=1.0, beta=0.25, delta=8, generator=torch.Generator().manual_seed(2))
    touched = (new != clean).any(1)
    assert int(touched.sum()) == 5  # floor(0.25 * 20) images, each with ~26 of 30 tokens redrawn
    assert ((new != clean).sum(1)[touched] >= 15).all()
    assert not q.perturb_batch(clean, z, alpha=1.0, beta=0.04, delta=8).ne(clean).any()  # floor(0.8) = 0


def test_training_forward_perturbs_and_anneals_alpha_and_delta():
    official = {0: 1.0, 10: 1.0, 30: 0.75, 50: 0.5, 51: 0.5, 500: 0.5}  # get_random_ratio(10, 50, 0.5, t)
    q = tw.create("robustok", dim=8, codebook_size=32, delta=8, anneal_start=10, anneal_end=50)
    for t, r in official.items():
        assert q.ratio(t) == pytest.approx(r)
    q.step.fill_(30)
    assert q.current_alpha() == pytest.approx(0.75) and q.current_delta() == 6
    # training forward: beta=1, alpha=1 -> most tokens differ from the clean assignment
    torch.manual_seed(0)
    q = tw.create("robustok", dim=8, codebook_size=32, beta=1.0, delta=8)
    x = torch.randn(4, 40, 8)
    q.train()
    q.vq(x)
    q.eval()
    _, clean, _ = q(x)
    q.train()
    quantized, perturbed, _ = q(x)
    assert int(q.step) == 1
    share = (perturbed != clean).float().mean().item()
    assert 0.6 < share < 0.98  # 7/8 expected, minus what the EMA update moves
    torch.testing.assert_close(quantized[perturbed != clean], q.indices_to_codes(perturbed)[perturbed != clean])
    # beta = 0: the training forward is the plain VQ's
    runs = []
    for name, opts in (("robustok", {"beta": 0.0}), ("vq", {})):
        torch.manual_seed(0)
        m = tw.create(name, dim=8, codebook_size=32, **opts).train()
        runs.append([m(x)[:2] for _ in range(3)])
    for (qa, ia), (qb, ib) in zip(*runs):
        assert torch.equal(ia, ib) and torch.equal(qa, qb)


def test_perturb_rejects_bad_arguments():
    q = trained()
    idx = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"rate must be in \[0"):
        q.perturb(idx, 1.5)
    with pytest.raises(ValueError, match="delta must be <= 32"):
        q.perturb(idx, 0.5, delta=33)
    with pytest.raises(ValueError, match="latents must have shape"):
        q.perturb(idx, 0.5, latents=torch.randn(2, 4, 8))


def test_default_delta_is_the_papers_share_of_the_codebook():
    """RobusTok perturbs among the 100 nearest of 4096 codes: about 2.4% of the codebook, at
    least the true code and one neighbour. A fixed 8 would be half of a 4-bit codebook."""
    expect = {16: 2, 64: 2, 256: 6, 1024: 25, 4096: 100}  # round(K * 100 / 4096), at least 2
    for k, d in expect.items():
        q = tw.create("robustok", dim=4, codebook_size=k)
        assert q.delta is None and q.neighbours == d and q.current_delta() == d
    assert tw.create("robustok", dim=4, codebook_size=16, delta=5).neighbours == 5
    with pytest.raises(ValueError, match="delta"):
        tw.create("robustok", dim=4, codebook_size=16, delta=17)
