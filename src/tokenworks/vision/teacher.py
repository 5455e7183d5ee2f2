"""The frozen feature encoder ("teacher") of the semantically regularized tokenizers.

GigaTok (P04) and VA-VAE (P46) align tokenizer features with a frozen pretrained vision
encoder (DINOv2 in the papers); DiGIT (P22) clusters such features into tokens. No such
encoder exists offline for 28x28 grey images, so the teacher here is the project's own
image classifier (:func:`tokenworks.models.image_classifier`, trained on the same data set):
its last convolutional feature map, (B, 2*width, 7, 7) for 28x28 inputs, is the feature grid.
This is a supervised classifier, not a self-supervised foundation model; every method that
uses it says so.

A tokenizer holds its teacher outside its ``state_dict`` (the teacher is a training signal,
not part of the tokenizer), set by ``set_teacher(model)`` or, in ``prepare(data)``, loaded
from the cache / committed assets for the data set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["TeacherMixin", "conv_trunk", "feature_grid"]


def conv_trunk(classifier: nn.Module) -> nn.Sequential:
    """The layers of ``classifier.body`` before its ``Flatten``: images -> (B, C, h, w)."""
    layers = []
    for layer in classifier.body:
        if isinstance(layer, nn.Flatten):
            break
        layers.append(layer)
    return nn.Sequential(*layers)


def feature_grid(trunk: nn.Module, images: torch.Tensor, grid: int) -> torch.Tensor:
    """Teacher features of images (B, C, H, W) in [0, 1] as (B, grid*grid, C); the map is
    average-pooled to ``grid`` x ``grid`` (unchanged when it already has that size)."""
    fmap = trunk((images - 0.5) / 0.5)  # the classifier's input normalization
    if fmap.shape[-1] != grid or fmap.shape[-2] != grid:
        fmap = F.adaptive_avg_pool2d(fmap, grid)
    return rearrange(fmap, "b c h w -> b (h w) c")


class TeacherMixin:
    """``set_teacher`` / ``teacher_features`` for tokenizers with a frozen feature teacher.

    The class sets ``teacher_dim`` (a dataclass field): the teacher's channel count.
    """

    teacher_dim: int

    def set_teacher(self, classifier: nn.Module) -> None:
        """Use ``classifier`` (an ImageClassifier) as the frozen teacher."""
        trunk = conv_trunk(classifier).eval().requires_grad_(False)
        probe = trunk(torch.zeros(1, self.channels, self.image_size, self.image_size, device=next(trunk.parameters()).device))
        if probe.shape[1] != self.teacher_dim:
            raise ValueError(f"teacher_dim ({self.teacher_dim}) must equal the teacher's feature channels ({probe.shape[1]})")
        self.__dict__["_teacher"] = trunk  # kept out of the state_dict on purpose

    @property
    def teacher(self) -> nn.Module:
        t = self.__dict__.get("_teacher")
        if t is None:
            raise RuntimeError(f"{self.registry_name} needs a teacher for training: call set_teacher(classifier) or train it with train_tokenizer (prepare loads one)")
        return t

    def prepare(self, data) -> None:
        if self.__dict__.get("_teacher") is None:
            from tokenworks.models import image_classifier

            self.set_teacher(image_classifier(data.name))

    @torch.no_grad()
    def teacher_features(self, images: torch.Tensor, grid: int) -> torch.Tensor:
        t = self.teacher
        t.to(images.device)
        return feature_grid(t, images, grid)
