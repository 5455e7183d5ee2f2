"""The point-cloud tokenizer around P06 VAT: shapes, rate, persistence, and that training lowers Chamfer."""

import pytest
import torch

from tokenworks.metrics import chamfer_distance
from tokenworks.shapes import PointCloudTokenizer, train_pointcloud_tokenizer

VAT = {"num_tokens": 4, "latent_dim": 4, "width": 16, "heads": 2, "num_points": 32, "quantizer": "vat",
       "quantizer_options": {"scales": [1, 2, 4], "layout": "1d", "codebook_size": 16}}  # fmt: skip


def clouds(n=6, p=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, 3, generator=g)
    return x / x.norm(dim=-1, keepdim=True) * torch.rand(n, 1, 1, generator=g).add(0.5)  # spheres of random radius


def test_shapes_rate_and_indices_roundtrip():
    torch.manual_seed(0)
    tok = PointCloudTokenizer(**VAT)
    x = clouds()
    recon, ids, aux = tok(x)
    assert recon.shape == (6, 32, 3) and ids.shape == (6, 7) and aux.shape == ()
    assert tok.bits == 7 * 4  # 1 + 2 + 4 indices of 4 bits
    tok.eval()
    ids = tok.encode(x)
    torch.testing.assert_close(tok.decode(ids), tok.decode_latents(tok.quant(tok.encode_latents(x))[0]))


def test_encoder_is_invariant_to_the_order_of_the_points():
    torch.manual_seed(0)
    tok = PointCloudTokenizer(**VAT).eval()
    x = clouds()
    perm = torch.randperm(64)
    torch.testing.assert_close(tok.encode_latents(x), tok.encode_latents(x[:, perm]), rtol=1e-4, atol=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    tok = PointCloudTokenizer(**VAT)
    tok.train()
    tok(clouds())  # k-means init
    tok.eval()
    tok.save_pretrained(tmp_path / "m")
    back = PointCloudTokenizer.from_pretrained(tmp_path / "m")
    x = clouds(seed=1)
    assert torch.equal(back.encode(x), tok.encode(x))
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        PointCloudTokenizer.from_pretrained(tmp_path / "nothing")


def test_training_lowers_the_chamfer_distance():
    torch.manual_seed(0)
    tok = PointCloudTokenizer(**VAT)
    pool = clouds(n=16, p=128)
    x = pool[:, :32]
    tok.eval()
    before = float(chamfer_distance(tok.decode(tok.encode(x)), x).mean())
    train_pointcloud_tokenizer(tok, pool, steps=60, batch_size=8, points=32, lr=3e-3)
    tok.eval()
    after = float(chamfer_distance(tok.decode(tok.encode(x)), x).mean())
    assert after < 0.5 * before


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="x must hold 4 tokens"):
        PointCloudTokenizer(**{**VAT, "num_tokens": 5})
    with pytest.raises(ValueError, match="heads"):
        PointCloudTokenizer(**{**VAT, "heads": 3})
    with pytest.raises(ValueError, match="points must have shape"):
        PointCloudTokenizer(**VAT).encode_latents(torch.zeros(2, 5, 2))


def test_prefix_decoding_uses_fewer_bytes():
    from tokenworks.shapes import evaluate_pointcloud_tokenizer

    torch.manual_seed(0)
    tok = PointCloudTokenizer(**VAT)
    tok.train()
    tok(clouds())
    x = clouds(seed=3)
    full = evaluate_pointcloud_tokenizer(tok, x[:, :32], x)
    first = evaluate_pointcloud_tokenizer(tok, x[:, :32], x, levels=1)
    assert full["bytes"] == 7 * 4 / 8 and first["bytes"] == 1 * 4 / 8
    with pytest.raises(ValueError, match="multi-scale"):
        PointCloudTokenizer(**{**VAT, "num_tokens": 7, "quantizer": "vq", "quantizer_options": {"codebook_size": 16}}).decode(torch.zeros(1, 7, dtype=torch.long), 1)
