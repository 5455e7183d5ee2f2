"""The attachment on a real timm VisionTransformer (skipped where timm cannot be imported: on the
project's CPU machines timm's torchvision has no wheel for the pinned CPU torch)."""

import pytest
import torch

import tokenworks as tw
from tokenworks.compress import attach_vit

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=56, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=3, num_heads=2).eval()


@pytest.mark.parametrize("name", ["tome", "todre", "spatial_pool", "token_correlation"])
def test_timm_vit_keep_all_is_identical_and_rows_equal_rows_alone(vit, name):
    x = torch.rand(3, 1, 56, 56)
    with torch.no_grad():
        ref = vit(x)
        keep_all = tw.create(name, budget=1.0, **({"adaptive": False} if name == "token_correlation" else {}))
        with attach_vit(vit, keep_all, layer=1):
            assert torch.equal(vit(x), ref)
        with attach_vit(vit, tw.create(name, budget=0.11), layer=1) as h:
            batch = vit(x)
            alone = torch.cat([vit(x[i : i + 1]) for i in range(3)])
    assert (h.kept[0] < 196).all()
    torch.testing.assert_close(batch, alone, atol=2e-5, rtol=1e-4)
