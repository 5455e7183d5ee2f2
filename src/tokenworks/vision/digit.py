"""P22 DiGIT: Stabilize the Latent Space for Image Autoregressive Modeling (k-means tokens).

Mechanism: tokens are not learned through reconstruction at all. A frozen feature encoder
maps the image to a grid of features; k-means over those features of the training images
gives the codebook, and each grid cell's token is its nearest centroid. Only then is a pixel
decoder trained to map the (fixed) tokens back to images. The token space is thus as stable
as the feature space (similar images share tokens), which the paper argues makes it easier
for an autoregressive prior than a reconstruction-trained VQ space.

Here: the encoder is the frozen teacher's conv trunk (see :mod:`tokenworks.vision.teacher`),
its 7x7 map average-pooled to ``grid`` x ``grid`` cells (4x4 = 16 tokens by default). The
codebook is the ``vq`` quantizer's, filled by ``prepare(data)`` with k-means centroids (the
Lloyd k-means of ``vector-quantize-pytorch``, random-sample init under a fixed seed) of up to
``kmeans_samples`` cell features of the training images and then frozen (no EMA update, no
commitment loss; the encoder gets no gradient). The pixel decoder is TiTok's ViT decoder, trained with MSE.

Deviations from the paper:
- the feature encoder is the project's supervised Fashion-MNIST classifier, not a
  self-supervised DINOv2/ViT (no such model offline); its weights are copied into the
  tokenizer so that saved tokenizers are self-contained;
- DiGIT trains its pixel decoder by recovering VQGAN tokens from the k-means tokens and
  decodes those with the VQGAN decoder; here the decoder maps tokens to pixels directly;
- the grid is pooled to 4x4 for equal token counts with the 1D tokenizers (DiGIT uses every
  patch of the encoder); CPU-sized widths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tokenworks.checks import check_int
from tokenworks.registry import register
from tokenworks.vision.base import ImageTokenizer
from tokenworks.vision.teacher import conv_trunk, feature_grid
from tokenworks.vision.vit import LatentDecoder, check_vit_options

__all__ = ["DiGIT"]


@register("digit", paper="P22")
@dataclass(kw_only=True, eq=False, repr=False)
class DiGIT(ImageTokenizer):
    """P22 tokens = k-means clusters of frozen encoder features; a pixel decoder is trained."""

    image_size: int = 28
    channels: int = 1
    latent_dim: int = 64
    quantizer: str = "vq"
    quantizer_options: dict = field(default_factory=lambda: {"codebook_size": 1024, "commitment_weight": 0.0})
    grid: int = 4
    teacher_width: int = 32
    kmeans_samples: int = 50_000
    kmeans_iters: int = 25
    seed: int = 0
    patch_size: int = 7
    width: int = 64
    depth: int = 2
    heads: int = 4
    decoder_width: int = 64
    decoder_depth: int = 2
    decoder_patch: int = 4

    def validate(self) -> None:
        if self.quantizer != "vq":
            raise ValueError(f"quantizer must be 'vq' for DiGIT (its codebook holds the k-means centroids), got {self.quantizer!r}")
        # a Euclidean codebook written by fit_codebook: no cosine assignment, no k-means init or restarts of its own
        self.quantizer_options = {"cosine": False, "kmeans_init": False, "dead_code_threshold": 0.0, **self.quantizer_options}
        if (self.image_size, self.channels) != (28, 1):
            raise ValueError(f"DiGIT's feature encoder is the 28x28 grey classifier: image_size must be 28 and channels 1, got {self.image_size} and {self.channels}")
        check_int("teacher_width", self.teacher_width, min=1)
        if self.latent_dim != 2 * self.teacher_width:
            raise ValueError(f"latent_dim must equal the encoder's feature channels 2 * teacher_width = {2 * self.teacher_width}, got {self.latent_dim}")
        check_int("grid", self.grid, min=1, max=7)
        check_int("kmeans_samples", self.kmeans_samples, min=2)
        check_int("kmeans_iters", self.kmeans_iters, min=1)
        check_int("seed", self.seed, min=0)
        check_vit_options(image_size=self.image_size, patch_size=self.patch_size, width=self.width, depth=self.depth, heads=self.heads,
                          decoder_width=self.decoder_width, decoder_depth=self.decoder_depth, decoder_patch=self.decoder_patch)  # fmt: skip

    def build(self) -> None:
        from tokenworks.models import ImageClassifier

        self.encoder = conv_trunk(ImageClassifier(self.teacher_width)).requires_grad_(False)
        self.decoder = LatentDecoder(image_size=self.image_size, channels=self.channels, width=self.decoder_width, depth=self.decoder_depth,
                                     heads=self.heads, num_latents=self.num_tokens, in_dim=self.latent_dim, decoder_patch=self.decoder_patch)  # fmt: skip
        self.quant.vq.freeze_codebook = True  # the codebook is k-means', never updated by training
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def num_tokens(self) -> int:
        return self.grid**2

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen, whatever the mode
        return self

    def encode_latents(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return feature_grid(self.encoder, images, self.grid)  # (B, grid^2, latent_dim)

    def decode_latents(self, tokens: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(tokens)

    def set_teacher(self, classifier: nn.Module) -> None:
        """Copy the conv trunk of ``classifier`` into the (frozen) encoder."""
        self.encoder.load_state_dict(conv_trunk(classifier).state_dict())
        self.__dict__["_teacher_set"] = True

    @torch.no_grad()
    def fit_codebook(self, images: torch.Tensor) -> None:
        """k-means over the encoder features of ``images`` (N, C, H, W) in [0, 1] -> codebook."""
        from vector_quantize_pytorch.vector_quantize_pytorch import kmeans

        k = self.codebook_size
        feats = torch.cat([self.encode_latents(b) for b in images.split(500)]).reshape(-1, self.latent_dim)
        if feats.shape[0] < k:
            raise ValueError(f"k-means needs at least codebook_size={k} feature vectors, got {feats.shape[0]} ({images.shape[0]} images)")
        g = torch.Generator().manual_seed(self.seed)
        take = torch.randperm(feats.shape[0], generator=g)[: self.kmeans_samples]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            centroids, _ = kmeans(feats[take][None].float(), k, num_iters=self.kmeans_iters)  # (1, k, D)
        self.quant.vq.codebook = centroids[0]
        self.fitted.fill_(True)

    def prepare(self, data) -> None:
        """Load the trained classifier's trunk (unless ``set_teacher`` was called) and fit k-means."""
        if bool(self.fitted):
            return
        if self.__dict__.get("_teacher_set") is None:
            from tokenworks.models import image_classifier

            self.set_teacher(image_classifier(data.name))
        n = min(len(data), -(-self.kmeans_samples // self.num_tokens))  # enough images for kmeans_samples cells
        self.fit_codebook(data.float()[:n])
