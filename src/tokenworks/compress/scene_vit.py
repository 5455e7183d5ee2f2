"""The compression benchmark's ViT: a classifier of scenes (``tokenworks.data.scenes``), in
timm's VisionTransformer layout, trained here on CPU.

Task: a 2 x 2 scene (56 x 56 px) of Fashion-MNIST items, MNIST digits and empty cells; the
model predicts the class of every cell (21 classes: 10 garments, 10 digits, empty), so it must
keep what is where. Patches of 4 px give a 14 x 14 grid: 196 patch tokens + [CLS]. Output:
(B, cells, 21) logits from the [CLS] token (one linear head).

Layout (names as in ``timm.models.vision_transformer``): ``patch_embed.proj`` (strided conv)
with ``patch_embed.grid_size``, ``cls_token``, ``pos_embed``, ``blocks[i]`` = pre-norm
``norm1``/``attn`` (``qkv``, ``proj``, ``num_heads``, ``scale``, ``q_norm``/``k_norm``,
``forward(x, attn_mask=None)`` on sdpa) / ``norm2``/``mlp`` (``fc1``, GELU, ``fc2``), ``norm``,
``head``. Written here because timm cannot be installed beside this project's pinned CPU torch
(its torchvision dependency has no matching CPU wheel); :func:`tokenworks.compress.attach_vit`
takes a real timm model of the same layout.

Reproduce the committed checkpoint (assets/compress/scene-vit, fp16)::

    tokenworks train scene-vit --out assets/compress/scene-vit
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_float, check_int

__all__ = ["SceneViT", "SceneViTConfig", "scene_accuracy", "scene_vit", "train_scene_vit"]

NAME = "compress/scene-vit"


@dataclass(kw_only=True)
class SceneViTConfig:
    """Size and training recipe (the defaults make the committed model)."""

    grid: int = 2
    patch: int = 4
    dim: int = 48
    depth: int = 5
    heads: int = 4
    mlp_ratio: int = 2
    empty: float = 0.25
    steps: int = 2400
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("grid", self.grid, min=1, max=4)
        check_int("patch", self.patch, min=1, max=28)
        if 28 % self.patch:
            raise ValueError(f"patch must divide 28, got {self.patch}")
        check_int("dim", self.dim, min=4)
        check_int("depth", self.depth, min=2)
        check_int("heads", self.heads, min=1)
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        check_int("mlp_ratio", self.mlp_ratio, min=1)
        check_float("empty", self.empty, min=0.0, max=1.0)
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("seed", self.seed, min=0)

    def fingerprint(self) -> dict:
        return {"recipe": "scene-vit-v1", **asdict(self)}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, Dh)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask=attn_mask)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, size: int, patch: int, dim: int) -> None:
        super().__init__()
        self.grid_size = (size // patch, size // patch)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(1, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major grid


class SceneViT(nn.Module):
    """(B, 1, 28 g, 28 g) scenes in [0, 1] -> (B, g * g, 21) per-cell logits."""

    def __init__(self, config: SceneViTConfig) -> None:
        super().__init__()
        from tokenworks.data.scenes import SCENE_CLASSES

        c = config
        self.config, self.cells, self.num_classes = c, c.grid * c.grid, len(SCENE_CLASSES)
        self.patch_embed = PatchEmbed(28 * c.grid, c.patch, c.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.patch_embed.num_patches, c.dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, self.cells * self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed((x - 0.5) / 0.5)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0]).view(x.shape[0], self.cells, self.num_classes)


def train_scene_vit(out: str | Path, config: SceneViTConfig | None = None, *, ckpt_dir=None, device: str = "cpu",
                    fp16: bool = True, eval_scenes: int = 1000) -> dict:  # fmt: skip
    """Train on freshly drawn training scenes; save weights and the test accuracy."""
    from tokenworks.data.scenes import make_scenes
    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or SceneViTConfig()
    torch.manual_seed(config.seed)
    model = SceneViT(config)

    def batch_fn(step, g):
        return make_scenes(config.batch_size, split="train", grid=config.grid, empty=config.empty, generator=g)

    def loss_fn(m, batch):
        x, y = batch
        return F.cross_entropy(m(x).flatten(0, 1), y.flatten())

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(100, config.steps), weight_decay=0.05, seed=config.seed,
                     device=device, desc="scene ViT")  # fmt: skip
    result = train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    model.to("cpu").eval()
    acc = scene_accuracy(model, eval_scenes, grid=config.grid, empty=config.empty)
    out = Path(out)
    state = {k: (v.half() if fp16 else v) for k, v in model.state_dict().items()}
    save_tensors(out / "model.safetensors", state)
    params = sum(p.numel() for p in model.parameters())
    write_model_info(out, config.fingerprint(), test_cell_accuracy=acc, params=params, train_loss=result.final_loss,
                     train_seconds=round(result.seconds, 1))  # fmt: skip
    return {"test_cell_accuracy": acc, "params": params}


def test_scenes(n: int, *, grid: int = 2, empty: float = 0.25, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed held-out scenes (test-split items) the benchmark evaluates on."""
    from tokenworks.data.scenes import make_scenes

    return make_scenes(n, split="test", grid=grid, empty=empty, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def scene_accuracy(model: SceneViT, n: int = 1000, *, grid: int = 2, empty: float = 0.25, batch: int = 250) -> float:
    """Per-cell top-1 accuracy on ``n`` held-out test scenes."""
    x, y = test_scenes(n, grid=grid, empty=empty)
    pred = torch.cat([model(b).argmax(-1) for b in x.split(batch)])
    return float((pred == y).float().mean())


def scene_vit(config: SceneViTConfig | None = None, *, train_if_missing: bool = True) -> SceneViT:
    """The frozen benchmark ViT (cache or committed assets; trained if missing)."""
    from tokenworks.io import load_tensors
    from tokenworks.models.store import load_model

    config = config or SceneViTConfig()

    def load(path: Path) -> SceneViT:
        model = SceneViT(config)
        model.load_state_dict({k: v.float() for k, v in load_tensors(path / "model.safetensors").items()})
        return model.eval().requires_grad_(False)

    def train_fn(out: Path, run: Path) -> None:
        train_scene_vit(out, config, ckpt_dir=run)

    return load_model(NAME, config.fingerprint(), load, train_fn, train_if_missing=train_if_missing,
                      command="tokenworks train scene-vit")  # fmt: skip
