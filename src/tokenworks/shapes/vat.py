"""P06 VAT (Variational Tokenizer) in its own setting: 3D shapes as a few Gaussian tokens,
quantized over scales.

Mechanism: an unordered point cloud (B, P, 3) is encoded by a set encoder (a per-point MLP,
then ``num_tokens`` learned queries that cross-attend to the points, and a self-attention
layer among the queries: the in-context compression of VAT), giving ``num_tokens`` latent
tokens of ``latent_dim`` channels. The ``vat`` quantizer maps them to a Gaussian (KL to
N(0, I)) and quantizes it residually over 1D scales (``scales`` ending at ``num_tokens``; a
token set has no 2D layout). The decoder maps the codes back to ``width``, mixes them with
self-attention, and ``num_points`` learned point queries cross-attend to them and regress
xyz. Training minimises the squared Chamfer distance to the input cloud plus the quantizer's
KL and commitment terms. Rate: ``bits`` = indices x log2(codebook size), reported in bytes.

Any registered quantizer fits (``quantizer="vq"`` gives the single-scale VQ control at the same
bytes: as many tokens as VAT has indices, with the same codebook).

Deviations: VAT encodes points with their normals and features from a pretrained model, uses a
deep transformer and decodes a triplane to an occupancy field scored on meshes; here the encoder
sees xyz only, everything is a few layers at width 64 trained for minutes on CPU on ~110 CGAL
meshes, and the decoder emits points directly, scored by Chamfer distance and F-score against a
fresh surface sample of the mesh.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from tokenworks.checks import check_int
from tokenworks.io import atomic_dir, load_json, load_tensors, save_tensors
from tokenworks.metrics import chamfer_distance, distinct_codes_per_image, f_score, position_entropy, top_code_share

__all__ = ["PointCloudTokenizer", "evaluate_pointcloud_tokenizer", "train_pointcloud_tokenizer"]


class _CrossBlock(nn.Module):
    """Pre-norm cross-attention of queries to a context, then an MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.nq, self.nc, self.n2 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        c = self.nc(ctx)
        q = q + self.attn(self.nq(q), c, c, need_weights=False)[0]
        return q + self.mlp(self.n2(q))


def _self_block(width: int, heads: int) -> nn.Module:
    return nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


@dataclass(kw_only=True, eq=False, repr=False)
class PointCloudTokenizer(nn.Module):
    """Point cloud (B, P, 3) -> ``num_tokens`` quantized tokens -> ``num_points`` points."""

    num_tokens: int = 8
    latent_dim: int = 8
    width: int = 64
    heads: int = 4
    num_points: int = 256
    quantizer: str = "vat"
    quantizer_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        nn.Module.__init__(self)
        check_int("num_tokens", self.num_tokens, min=1)
        check_int("latent_dim", self.latent_dim, min=1)
        check_int("width", self.width, min=1)
        check_int("heads", self.heads, min=1)
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        check_int("num_points", self.num_points, min=1)
        from tokenworks.registry import get

        info = get(self.quantizer)
        if info.kind != "quantizer":
            raise ValueError(f"quantizer must name a registered quantizer, got {self.quantizer!r} ({info.kind})")
        w = self.width
        self.point_mlp = nn.Sequential(nn.Linear(3, w), nn.GELU(), nn.Linear(w, w))
        self.queries = nn.Parameter(torch.randn(self.num_tokens, w) * w**-0.5)
        self.enc_cross, self.enc_self = _CrossBlock(w, self.heads), _self_block(w, self.heads)
        self.to_latent = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, self.latent_dim))
        self.quant = info.create(dim=self.latent_dim, **self.quantizer_options)
        self.from_latent = nn.Linear(self.latent_dim, w)
        self.token_pos = nn.Parameter(torch.randn(self.num_tokens, w) * w**-0.5)
        self.dec_self = _self_block(w, self.heads)
        self.point_queries = nn.Parameter(torch.randn(self.num_points, w) * w**-0.5)
        self.dec_cross = _CrossBlock(w, self.heads)
        self.head = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, w), nn.GELU(), nn.Linear(w, 3))
        self.quant.index_shape(1, self.num_tokens)  # raises now if the quantizer cannot take num_tokens tokens

    # ---- pieces ---------------------------------------------------------------------------
    def encode_latents(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) -> (B, num_tokens, latent_dim), continuous."""
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must have shape (B, P, 3), got {tuple(points.shape)}")
        feats = self.point_mlp(points)
        q = self.enc_cross(self.queries.expand(points.shape[0], -1, -1), feats)
        return self.to_latent(self.enc_self(q))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """(B, num_tokens, latent_dim) codes -> (B, num_points, 3)."""
        t = self.dec_self(self.from_latent(z) + self.token_pos)
        return self.head(self.dec_cross(self.point_queries.expand(z.shape[0], -1, -1), t))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> reconstruction (B, num_points, 3), indices, aux loss."""
        quantized, ids, aux = self.quant(self.encode_latents(points))
        return self.decode_latents(quantized), ids, aux

    @torch.no_grad()
    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return self.quant(self.encode_latents(points))[1]

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Points from indices; ``levels=k`` (``vat`` only) decodes from the first k scales."""
        if levels is None:
            return self.decode_latents(self.quant.indices_to_codes(ids))
        if not hasattr(self.quant, "cells"):
            raise ValueError(f"levels needs a multi-scale quantizer ('vat'), got {self.quantizer!r}")
        return self.decode_latents(self.quant.decode_indices(ids.long(), levels=levels))

    @property
    def bits(self) -> float:
        return self.quant.sequence_bits(self.num_tokens)

    # ---- persistence ----------------------------------------------------------------------
    def config(self) -> dict:
        return {"method": "pointcloud-tokenizer", "options": {k: getattr(self, k) for k in self.__dataclass_fields__}}

    def save_pretrained(self, path: str | os.PathLike, *, half: bool = False) -> Path:
        path = Path(path)
        state = {k: v.half() if half and v.is_floating_point() else v for k, v in self.state_dict().items()}
        with atomic_dir(path) as tmp:
            save_tensors(tmp / "model.safetensors", state)
            (tmp / "config.json").write_text(json.dumps(self.config(), indent=1))
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu") -> PointCloudTokenizer:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no point-cloud tokenizer at {path} (config.json missing)")
        cfg = load_json(path / "config.json")
        if cfg.get("method") != "pointcloud-tokenizer":
            raise ValueError(f"{path} holds {cfg.get('method')!r}, not a point-cloud tokenizer")
        tok = cls(**cfg["options"])
        state = load_tensors(path / "model.safetensors", device)
        tok.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return tok.to(device).eval()


def train_pointcloud_tokenizer(tok: PointCloudTokenizer, pool: torch.Tensor, *, steps: int = 600, batch_size: int = 16,
                               points: int = 256, lr: float = 1e-3, seed: int = 0, ckpt_dir=None, device: str = "cpu"):  # fmt: skip
    """Train on random ``points``-subsets of the clouds in ``pool`` (M, Q, 3), a fresh subset of a
    random cloud every time (AdamW, warm-up 5% then cosine, the project's training loop)."""
    from tokenworks.train import TrainConfig, train

    check_int("points", points, min=1, max=pool.shape[1])

    def batch_fn(step: int, g: torch.Generator) -> torch.Tensor:
        which = torch.randint(0, pool.shape[0], (batch_size,), generator=g)
        sub = torch.rand(batch_size, pool.shape[1], generator=g).argsort(1)[:, :points]
        return pool[which[:, None], sub]

    def loss_fn(model: PointCloudTokenizer, x: torch.Tensor):
        recon, _, aux = model(x)
        d = torch.cdist(recon, x).pow(2)  # (B, P', P) float32: the training loss, not the reported metric
        cd = d.min(2).values.mean() + d.min(1).values.mean()
        return cd + aux, {"chamfer": float(cd.detach())}

    cfg = TrainConfig(steps=steps, lr=lr, warmup=max(1, steps // 20), seed=seed, device=device, desc="point-cloud tokenizer")
    return train(tok, loss_fn, batch_fn, cfg, ckpt_dir=ckpt_dir)


@torch.no_grad()
def evaluate_pointcloud_tokenizer(tok: PointCloudTokenizer, inputs: torch.Tensor, targets: torch.Tensor, *,
                                  threshold: float = 0.05, levels: int | None = None, device: str = "cpu") -> dict:  # fmt: skip
    """Encode ``inputs`` (B, P, 3), decode (from the first ``levels`` scales only, if given), and
    score against ``targets`` (B, M, 3) (fresh surface samples of the same shapes): Chamfer
    (squared L2, x1000), F-score at ``threshold``, bytes of the indices used."""
    tok = tok.to(device).eval()
    ids = tok.encode(inputs.to(device))
    recon = tok.decode(ids, levels).cpu()
    bits = tok.bits if levels is None else sum(tok.quant.cells[:levels]) * math.log2(tok.quant.codebook_size)
    return {
        "chamfer_x1000": 1000 * float(chamfer_distance(recon, targets).mean()),
        "f_score": float(f_score(recon, targets, threshold=threshold).mean()),
        "bytes": bits / 8,
        "indices": int(math.prod(tok.quant.index_shape(1, tok.num_tokens))),
        "distinct_codes_per_shape": distinct_codes_per_image(ids.cpu()),
        "position_entropy": position_entropy(ids.cpu()),
        "top_code_share": top_code_share(ids.cpu()),
    }
