"""The motion feature extractor: a small 1-D conv classifier on the clip labels, trained here.

Its pooled 64-d features define ``fd_local`` for motion (Frechet distance between Gaussians fitted
to features of generated and of real test motions; not FID, no pretrained motion encoder installs
offline) and its predictions the label accuracy of generated motions. Inputs are features
(B, T, 45) with a validity mask (frames past a motion's length are ignored by the pooling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from tokenworks.checks import check_int
from tokenworks.data.motion import FEATURES, LABELS

__all__ = ["ClassifierConfig", "MotionClassifier"]


@dataclass(kw_only=True)
class ClassifierConfig:
    width: int = 64
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    augmentations: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("width", self.width, min=4, max=1024)
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)


class MotionClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClassifierConfig()
        w = self.config.width
        self.net = nn.Sequential(nn.Conv1d(FEATURES, w, 5, padding=2), nn.GELU(), nn.Conv1d(w, w, 5, padding=2, stride=2), nn.GELU(),
                                 nn.Conv1d(w, w, 3, padding=1), nn.GELU())  # fmt: skip
        self.head = nn.Linear(w, len(LABELS))
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 45) -> (B, width) mean-pooled over the valid (downsampled) frames."""
        h = self.net(((x - self.mean) / self.std).transpose(1, 2))  # (B, w, T/2)
        if lengths is None:
            return h.mean(-1)
        valid = (torch.arange(h.shape[-1])[None] < (torch.as_tensor(lengths)[:, None] + 1) // 2).float()
        return (h * valid[:, None]).sum(-1) / valid.sum(-1, keepdim=True).clamp_min(1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, lengths))

    def save(self, out: str | Path) -> None:
        from tokenworks.motion.tokenizer import save_module

        save_module(self, out, asdict(self.config))

    @classmethod
    def load(cls, path: str | Path) -> MotionClassifier:
        from tokenworks.motion.tokenizer import load_module

        return load_module(cls, ClassifierConfig, path)
