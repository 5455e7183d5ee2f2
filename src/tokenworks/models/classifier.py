"""A small image classifier trained here; its penultimate features define ``fd_local``.

``fd_local(real, generated)`` is the Frechet distance between Gaussians fitted to this
classifier's 128-d penultimate features of two image sets. It plays the role FID plays in the
papers, on data for which no Inception network is available offline. It is not FID and its
values are not comparable with FID.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_choice, check_int, check_tensor
from tokenworks.io import load_tensors, save_tensors

__all__ = ["ClassifierConfig", "ImageClassifier", "fd_local", "image_classifier", "train_image_classifier"]


@dataclass(kw_only=True)
class ClassifierConfig:
    dataset: str = "fashion-mnist"
    width: int = 32
    feature_dim: int = 128
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, ("fashion-mnist", "mnist5k"))
        check_int("width", self.width, min=1)
        check_int("feature_dim", self.feature_dim, min=2)
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)


class ImageClassifier(nn.Module):
    """Two conv layers -> 128-d features -> 10 classes, for (B, 1, 28, 28) images in [0, 1]."""

    def __init__(self, width: int = 32, feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Linear(2 * width * 49, feature_dim), nn.GELU(),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [0, 1] -> (B, feature_dim)."""
        check_tensor("x", x, ndim=4, floating=True)
        if tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"x must be (B, 1, 28, 28) images, got {tuple(x.shape)}")
        return self.body((x - 0.5) / 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_image_classifier(out: str | Path, config: ClassifierConfig | None = None, *, ckpt_dir=None, device: str = "cpu") -> dict:
    """Train the classifier on the training split and save it with its test accuracy."""
    from tokenworks.data import load_images
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or ClassifierConfig()
    torch.manual_seed(config.seed)
    model = ImageClassifier(config.width, config.feature_dim)
    data = load_images(config.dataset, "train")
    x_all, y_all = data.float(), data.labels

    def batch_fn(step, g):
        i = torch.randint(0, len(data), (config.batch_size,), generator=g)
        x = x_all[i]
        flip = torch.rand(config.batch_size, generator=g) < 0.5  # horizontal flips
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, y_all[i]

    def loss_fn(m, batch):
        x, y = batch
        return F.cross_entropy(m(x), y)

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(50, config.steps), seed=config.seed, device=device, desc=f"classifier ({config.dataset})")
    result = train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    model.to("cpu")
    acc = accuracy(model, config.dataset)
    out = Path(out)
    save_tensors(out / "model.safetensors", {k: v.half() for k, v in model.state_dict().items()})
    write_model_info(out, asdict(config), test_accuracy=acc, train_loss=result.final_loss, train_seconds=result.seconds)
    return {"test_accuracy": acc}


@torch.no_grad()
def accuracy(model: ImageClassifier, dataset: str) -> float:
    from tokenworks.data import load_images

    test = load_images(dataset, "test")
    pred = torch.cat([model(x).argmax(-1) for x in test.float().split(1000)])
    return float((pred == test.labels).float().mean())


@lru_cache(maxsize=2)
def _load(path: str, width: int, feature_dim: int) -> ImageClassifier:
    model = ImageClassifier(width, feature_dim)
    model.load_state_dict({k: v.float() for k, v in load_tensors(Path(path) / "model.safetensors").items()})
    return model.eval().requires_grad_(False)


def image_classifier(dataset: str = "fashion-mnist", *, config: ClassifierConfig | None = None, train_if_missing: bool = True) -> ImageClassifier:
    """The frozen feature classifier for ``dataset`` (cached / committed, trained if missing)."""
    from tokenworks.models.store import load_or_train

    config = config or ClassifierConfig(dataset=dataset)

    def _train(out: Path, run: Path) -> None:
        train_image_classifier(out, config, ckpt_dir=run)

    path = load_or_train(f"classifier-{config.dataset}", asdict(config), _train, train_if_missing=train_if_missing, command="tokenworks train classifier")
    return _load(str(path), config.width, config.feature_dim)


@torch.no_grad()
def fd_local(real: torch.Tensor, generated: torch.Tensor, *, dataset: str = "fashion-mnist", batch_size: int = 1000) -> float:
    """Frechet distance between classifier features of two image sets, (N, 1, 28, 28) in
    [0, 1] each. Lower is closer; 0 for identical sets. Not FID (see module docstring)."""
    from tokenworks.metrics.image import frechet_distance

    check_tensor("real", real, ndim=4, floating=True)
    check_tensor("generated", generated, ndim=4, floating=True)
    model = image_classifier(dataset)
    dev = next(model.parameters()).device
    feats = [torch.cat([model.features(b.to(dev)).cpu() for b in x.split(batch_size)]) for x in (real, generated)]
    return frechet_distance(*feats)
