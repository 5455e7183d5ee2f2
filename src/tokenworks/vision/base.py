"""The image-tokenizer interface shared by every VIS tokenizer.

    ids = tok.encode(images)          # images (B, C, H, W) in [0, 1] -> ids, shape tok.index_shape(B)
    images = tok.decode(ids)          # -> (B, C, H, W) in [0, 1]
    recon, aux_loss = tok(images)     # training forward (straight-through quantizer)
    tok.num_tokens, tok.bits_per_image
    tok.save_pretrained(dir); ImageTokenizer.from_pretrained(dir)

A tokenizer is ``@dataclass(kw_only=True, eq=False, repr=False)``: its fields are its options,
it builds its layers in ``build()`` and implements two hooks, ``encode_latents`` (images ->
continuous tokens (B, N, D)) and ``decode_latents`` (tokens -> images). The base class does the
rest: input checks, the quantizer (any registered quantizer, by name), losses, saving and
loading. ``ids`` are the quantizer's indices: (B, N) for one code per token, (B, N, G) for
grouped codes (binary bits, residual levels).

Caption conditioning (P10 TexTok): a tokenizer with ``conditional = True`` takes
``captions=`` in ``encode``/``decode``/``forward``/``loss``: a list of B strings or a float
tensor (B, E) of caption embeddings. ``condition(captions, batch)`` turns them into the
tensor that the hooks receive as ``cond`` (None when no caption is given). Every other
tokenizer rejects captions with a clear error, and its hooks always get ``cond=None``.

Variable length (P43 FlexTok): a tokenizer with ``variable_length = True`` decodes any prefix
``ids[:, :k]`` with 1 <= k <= num_tokens; ``decode_latents`` then receives (B, k, D).

Data-dependent set-up (k-means codebooks, frozen teachers): ``prepare(data)`` is called by
``train_tokenizer`` once before training; it is a no-op by default.
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_int, check_tensor
from tokenworks.io import atomic_dir, load_json, load_tensors, save_tensors

__all__ = ["ImageTokenizer"]


class ImageTokenizer(nn.Module):
    kind: ClassVar[str] = "image_tokenizer"
    conditional: ClassVar[bool] = False
    variable_length: ClassVar[bool] = False

    image_size: int
    channels: int
    latent_dim: int
    quantizer: str
    quantizer_options: dict

    def __post_init__(self) -> None:
        nn.Module.__init__(self)
        check_int("image_size", self.image_size, min=4)
        check_int("channels", self.channels, min=1)
        check_int("latent_dim", self.latent_dim, min=1)
        if not isinstance(self.quantizer_options, dict):
            raise TypeError(f"quantizer_options must be a dict, got {self.quantizer_options!r}")
        self.validate()
        from tokenworks.registry import get

        info = get(self.quantizer)
        if info.kind != "quantizer":
            raise ValueError(f"quantizer must name a registered quantizer, got {self.quantizer!r} ({info.kind})")
        self.quant = info.create(dim=self.latent_dim, **self.quantizer_options)
        self.build()

    # ---- hooks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Check option fields (raise naming the field)."""

    @abstractmethod
    def build(self) -> None:
        """Create encoder and decoder layers."""

    @property
    @abstractmethod
    def num_tokens(self) -> int:
        """Tokens per image."""

    @abstractmethod
    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> continuous tokens (B, num_tokens, latent_dim)."""

    @abstractmethod
    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, num_tokens, latent_dim) -> images (B, C, H, W) in [0, 1]."""

    def extra_loss(self, images: torch.Tensor, latents: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Method-specific training terms (semantic alignment, ...); zero by default."""
        return images.new_zeros(())

    def prepare(self, data: Any) -> None:
        """Data-dependent set-up before training (``data``: an ImageSet); no-op by default."""

    def captions_for(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> list[str]:
        """The training/evaluation caption of each image (conditional tokenizers): its class name by default."""
        return [str(classes[int(y)]) for y in labels]

    def condition(self, captions: Any, batch: int) -> torch.Tensor | None:
        """Captions -> the ``cond`` tensor given to the hooks (conditional tokenizers only)."""
        if captions is not None:
            raise ValueError(f"captions: {self.registry_name} is not caption-conditioned; pass captions=None")
        return None

    # ---- mechanics ----------------------------------------------------------------------
    def check_images(self, images: Any) -> torch.Tensor:
        check_tensor("images", images, ndim=4, floating=True)
        want = (self.channels, self.image_size, self.image_size)
        if tuple(images.shape[1:]) != want:
            raise ValueError(f"images must have shape (B, {want[0]}, {want[1]}, {want[2]}), got {tuple(images.shape)}")
        if images.shape[0] < 1:
            raise ValueError(f"images must hold at least one image, got shape {tuple(images.shape)}")
        return images

    def index_shape(self, batch: int, tokens: int | None = None) -> tuple[int, ...]:
        return self.quant.index_shape(batch, self.num_tokens if tokens is None else tokens)

    @property
    def codebook_size(self) -> int:
        """How many values each entry of ``ids`` takes."""
        return self.quant.codebook_size

    @property
    def bits_per_image(self) -> float:
        return self.quant.sequence_bits(self.num_tokens)

    def _tokens(self, images: torch.Tensor, cond: torch.Tensor | None):
        latents = self.encode_latents(images, cond)
        quantized, ids, aux = self.quant(latents)
        return latents, quantized, ids, aux

    def forward(self, images: torch.Tensor, captions: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward: (reconstruction in [0, 1], scalar aux loss)."""
        images = self.check_images(images)
        cond = self.condition(captions, images.shape[0])
        _, quantized, _, aux = self._tokens(images, cond)
        return self.decode_latents(quantized, cond), aux

    def loss(self, images: torch.Tensor, captions: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction MSE + quantizer aux loss + method terms."""
        images = self.check_images(images)
        cond = self.condition(captions, images.shape[0])
        latents, quantized, _, aux = self._tokens(images, cond)
        recon = self.decode_latents(quantized, cond)
        mse = F.mse_loss(recon, images)
        extra = self.extra_loss(images, latents, recon)
        return mse + aux + extra, {"mse": mse.item(), "aux": aux.item(), "extra": extra.item()}

    @torch.no_grad()
    def encode(self, images: torch.Tensor, captions: Any = None) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] -> token ids (see ``index_shape``)."""
        images = self.check_images(images)
        cond = self.condition(captions, images.shape[0])
        was = self.training
        self.eval()
        try:
            _, _, ids, _ = self._tokens(images, cond)
        finally:
            self.train(was)
        return ids

    def check_ids(self, ids: Any) -> torch.Tensor:
        """Validate ids: shape ``index_shape(B)`` (or a prefix for variable-length tokenizers)
        and values in [0, codebook_size)."""
        check_tensor("ids", ids, floating=False)
        if ids.ndim < 2 or ids.shape[0] < 1:
            raise ValueError(f"ids must have shape {self.index_shape(1)[1:]} per image with a batch dimension first, got {tuple(ids.shape)}")
        b, n = ids.shape[0], ids.shape[1]
        if self.variable_length:
            if not 1 <= n <= self.num_tokens:
                raise ValueError(f"ids must hold between 1 and num_tokens={self.num_tokens} tokens, got {n} (shape {tuple(ids.shape)})")
            want = self.index_shape(b, n)
        else:
            want = self.index_shape(b)
        if tuple(ids.shape) != want:
            raise ValueError(f"ids must have shape {want} (B={b}), got {tuple(ids.shape)}")
        k = self.codebook_size
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"ids must be in [0, {k}) (the codebook of quantizer {self.quantizer!r}), got values in [{lo}, {hi}]")
        return ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, captions: Any = None) -> torch.Tensor:
        """Token ids -> images (B, C, H, W) in [0, 1]."""
        ids = self.check_ids(ids)
        cond = self.condition(captions, ids.shape[0])
        was = self.training
        self.eval()
        try:
            return self.decode_latents(self.quant.indices_to_codes(ids), cond).clamp(0, 1)
        finally:
            self.train(was)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, captions: Any = None) -> torch.Tensor:
        return self.decode(self.encode(images, captions), captions)

    # ---- persistence --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"method": self.registry_name, "options": {f.name: getattr(self, f.name) for f in fields(self)}}

    def save_pretrained(self, path: str | os.PathLike, *, half: bool = False, **extra_info: Any) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``path`` atomically
        (``half=True`` stores floating-point weights as float16, e.g. for ``assets/``)."""
        path = Path(path)
        state = {k: v.half() if half and v.is_floating_point() else v for k, v in self.state_dict().items()}
        with atomic_dir(path) as tmp:
            save_tensors(tmp / "model.safetensors", state)
            (tmp / "config.json").write_text(json.dumps({**self.config(), **extra_info}, indent=1))
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu") -> ImageTokenizer:
        """Load any registered tokenizer from a directory written by ``save_pretrained``."""
        from tokenworks.registry import get

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no tokenizer at {path} (config.json missing)")
        cfg = load_json(path / "config.json")
        info = get(cfg["method"])
        if not (isinstance(info.obj, type) and issubclass(info.obj, ImageTokenizer)):
            raise ValueError(f"{path} holds {cfg['method']!r}, which is not an image tokenizer")
        if cls is not ImageTokenizer and not issubclass(info.obj, cls):
            raise ValueError(f"{path} holds {cfg['method']!r}, not a {cls.__name__}")
        tok = info.obj(**cfg["options"])
        state = load_tensors(path / "model.safetensors", device)
        tok.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return tok.to(device).eval()
