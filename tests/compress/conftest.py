import pytest
import torch

from tokenworks.compress.scene_vit import SceneViT, SceneViTConfig


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    return SceneViT(SceneViTConfig(dim=16, depth=3, heads=2)).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def scenes():
    from tokenworks.data.scenes import make_scenes

    return make_scenes(6, split="test", generator=torch.Generator().manual_seed(3))
