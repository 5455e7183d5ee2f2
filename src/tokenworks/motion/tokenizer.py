"""The motion tokenizer (VIS over time): a 1-D conv encoder, a quantizer from
:mod:`tokenworks.quantize` and a 1-D conv decoder, 4x temporal downsampling.

    tok = MotionTokenizer(TokenizerConfig(quantizer="fsq", quantizer_options={"levels": [8, 5, 5, 5]}))
    ids = tok.encode(features)            # (B, T, 45) normalised-or-not features -> (B, T // 4)
    rec = tok.decode(ids)                 # (B, T, 45) features (de-normalised)

T2M-GPT / MMM's motion VQ-VAE shape in miniature: conv(3) + two [residual block, strided conv]
stages down, the mirror (nearest-neighbour upsampling + conv) up. Features are standardised
with the training set's per-channel mean and std (buffers saved with the weights). The default
quantizer is FSQ with 1,000 implicit codes (levels 8, 5, 5, 5) (no dead codes on a few hundred windows; the papers use
a learned 512-code VQ on HumanML3D, far more data). It is trained on random 16-frame crops with
random 16-frame slices of the windows (in the window's heading frame) with an L1 loss on features plus the mean joint distance on positions from :func:`features_to_positions` (MPJPE's
own space); fully convolutional, it encodes any length divisible by 4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from tokenworks.checks import check_int, check_tensor
from tokenworks.data.motion import FEATURES, features_to_positions

__all__ = ["DOWNSAMPLE", "MotionTokenizer", "TokenizerConfig", "load_module", "mpjpe", "save_module"]

DOWNSAMPLE = 4


def mpjpe(pred, target, lengths=None, *, relative: bool = False) -> torch.Tensor:
    """Mean per-joint position error (same unit as the positions) over valid frames; inputs are
    feature tensors (B, T, 45), turned into positions first (the root integrated from its
    velocities, so root drift counts). ``relative``: joints relative to the root (no drift)."""
    p, t = features_to_positions(pred.float()), features_to_positions(target.float())
    if relative:
        p, t = p - p[..., :1, :], t - t[..., :1, :]
    err = (p - t).norm(dim=-1).mean(-1)  # (B, T)
    if lengths is None:
        return err.mean()
    valid = torch.arange(err.shape[1])[None] < torch.as_tensor(lengths)[:, None]
    return err[valid].mean()


class _Res(nn.Module):
    def __init__(self, w: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.GELU(), nn.Conv1d(w, w, 3, padding=1), nn.GELU(), nn.Conv1d(w, w, 1))

    def forward(self, x):
        return x + self.net(x)


@dataclass(kw_only=True)
class TokenizerConfig:
    width: int = 64
    code_dim: int = 16
    quantizer: str = "fsq"
    quantizer_options: dict = field(default_factory=lambda: {"levels": [8, 5, 5, 5]})
    steps: int = 2500
    batch_size: int = 64
    crop: int = 16
    lr: float = 2e-3
    augmentations: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("width", self.width, min=4, max=1024)
        check_int("code_dim", self.code_dim, min=1, max=256)
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)
        check_int("crop", self.crop, min=DOWNSAMPLE)
        if self.crop % DOWNSAMPLE:
            raise ValueError(f"crop must be a multiple of {DOWNSAMPLE}, got {self.crop}")


class MotionTokenizer(nn.Module):
    """Conv encoder -> quantizer -> conv decoder over time (4 frames per token)."""

    kind = "motion_tokenizer"

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        super().__init__()
        from tokenworks.registry import create

        self.config = config or TokenizerConfig()
        w, d = self.config.width, self.config.code_dim
        self.encoder = nn.Sequential(nn.Conv1d(FEATURES, w, 3, padding=1), _Res(w), nn.Conv1d(w, w, 4, stride=2, padding=1),
                                     _Res(w), nn.Conv1d(w, w, 4, stride=2, padding=1), _Res(w), nn.Conv1d(w, d, 1))  # fmt: skip
        self.decoder = nn.Sequential(nn.Conv1d(d, w, 3, padding=1), _Res(w), nn.Upsample(scale_factor=2), nn.Conv1d(w, w, 3, padding=1),
                                     _Res(w), nn.Upsample(scale_factor=2), nn.Conv1d(w, w, 3, padding=1), _Res(w), nn.GELU(),
                                     nn.Conv1d(w, FEATURES, 3, padding=1))  # fmt: skip
        self.quantizer = create(self.config.quantizer, dim=d, **self.config.quantizer_options)
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def bits_per_second(self, fps: float) -> float:
        return fps / DOWNSAMPLE * math.log2(self.codebook_size)

    def _check(self, x: torch.Tensor) -> None:
        check_tensor("features", x, ndim=3, floating=True)
        if x.shape[-1] != FEATURES or x.shape[1] % DOWNSAMPLE or x.shape[1] == 0:
            raise ValueError(f"features must have shape (B, T, {FEATURES}) with T a positive multiple of {DOWNSAMPLE}, got {tuple(x.shape)}")

    def quantize(self, x: torch.Tensor):
        """features (B, T, 45) -> (quantized codes (B, T/4, D), indices (B, T/4), aux loss)."""
        self._check(x)
        z = self.encoder(((x - self.mean) / self.std).transpose(1, 2)).transpose(1, 2)
        return self.quantizer(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x)[1]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes.transpose(1, 2)).transpose(1, 2) * self.std + self.mean

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, N) -> features (B, 4N, 45)."""
        check_tensor("indices", indices, ndim=2, floating=False)
        return self.decode_codes(self.quantizer.indices_to_codes(indices))

    def forward(self, x: torch.Tensor):
        q, idx, aux = self.quantize(x)
        return self.decode_codes(q), idx, aux

    def save(self, out: str | Path) -> None:
        save_module(self, out, asdict(self.config))

    @classmethod
    def load(cls, path: str | Path) -> MotionTokenizer:
        return load_module(cls, TokenizerConfig, path)


def save_module(module: nn.Module, out: str | Path, config: dict) -> None:
    """float16 safetensors weights + ``config.json`` (the committed-asset format)."""
    from tokenworks.io import atomic_write_json, save_tensors

    save_tensors(Path(out) / "model.safetensors", {k: v.half() if v.is_floating_point() else v for k, v in module.state_dict().items()})
    atomic_write_json(Path(out) / "config.json", config)


def load_module(cls, config_cls, path: str | Path):
    """``cls(config_cls(**config.json))`` with the saved weights, float32, eval mode."""
    from tokenworks.io import load_json, load_tensors

    m = cls(config_cls(**load_json(Path(path) / "config.json", kind=dict)))
    m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_tensors(Path(path) / "model.safetensors").items()})
    return m.eval()
